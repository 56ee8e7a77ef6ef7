"""Assets shared by the DAGs: the ingestion DAG produces them, the model DAG is scheduled on them."""

from airflow.sdk import Asset

# The clean, face-scored image table (``faces/`` in the lake).
FACES = Asset(name="deeploc_faces", uri="deeploc://lake/faces", group="deeploc")
