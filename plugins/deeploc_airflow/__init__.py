"""Airflow glue for DeepLocations: the two lanes' operators, the run parameters, and where settings come from.

Airflow puts ``plugins/`` on ``sys.path``, so DAG files import ``deeploc_airflow`` directly. Nothing
here imports Spark, TensorFlow or the stages at module level: DAG parsing stays fast.
"""
