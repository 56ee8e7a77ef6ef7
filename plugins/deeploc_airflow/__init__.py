"""Airflow glue for DeepLocations: the operator that runs a stage, and where its settings come from.

Airflow puts ``plugins/`` on ``sys.path``, so DAG files import ``deeploc_airflow`` directly. Nothing
here imports Spark, TensorFlow or the stages at module level: DAG parsing stays fast.
"""
