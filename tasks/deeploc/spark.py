"""The Spark session every Spark stage uses: local by default, the cluster's when run by spark-submit."""

from __future__ import annotations

import logging
import os


def session(app: str = "deeploc"):
    from pyspark.sql import SparkSession

    # py4j logs every connection at INFO, including at interpreter exit after streams are closed.
    logging.getLogger("py4j").setLevel(logging.WARNING)

    builder = SparkSession.builder.appName(app).config("spark.sql.session.timeZone", "UTC")
    # Under spark-submit (an EMR step) the launcher chose the master and the resources: keep them.
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = (
            builder.master(os.environ.get("DEEPLOC_SPARK_MASTER", "local[2]"))
            .config("spark.driver.memory", os.environ.get("DEEPLOC_SPARK_DRIVER_MEMORY", "3g"))
            .config("spark.sql.shuffle.partitions", os.environ.get("DEEPLOC_SPARK_SHUFFLE_PARTITIONS", "8"))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("DEEPLOC_SPARK_LOG_LEVEL", "WARN"))
    return spark
