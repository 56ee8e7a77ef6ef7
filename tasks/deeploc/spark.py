"""The Spark session every Spark stage uses: local by default, the cluster's when run by spark-submit."""

from __future__ import annotations

import logging
import os
import sys

# Hadoop's "file:" file system with permissions set in-process (tasks/deeploc/jvm; ./dev builds the jar
# when a JDK is there). Without it every file a local job writes costs a forked chmod process.
LOCALFS_CLASS = "deeploc.hadoop.NioLocalFileSystem"


def localfs_jar() -> str | None:
    jar = os.environ.get("DEEPLOC_LOCALFS_JAR") or os.path.join(sys.prefix, "deeploc-localfs.jar")
    return jar if os.path.isfile(jar) else None


def session(app: str = "deeploc"):
    from pyspark.sql import SparkSession

    # py4j logs every connection at INFO, including at interpreter exit after streams are closed.
    logging.getLogger("py4j").setLevel(logging.WARNING)

    # Folder columns (upload_month=2010-01, source=<hex id>) stay strings: inference could read an id
    # of digits as a number.
    # Timestamps as microseconds since the epoch, UTC: the type Iceberg tables hold (Spark's default,
    # INT96, is not one).
    builder = (SparkSession.builder.appName(app).config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
               .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
               .config("spark.sql.debug.maxToStringFields", "1000"))  # our wide tables: no "truncated plan" warning
    # Under spark-submit (an EMR step) the launcher chose the master and the resources: keep them.
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        master = os.environ.get("DEEPLOC_SPARK_MASTER", "local[2]")
        # Python workers must run the interpreter that runs deeploc (its venv), not the python3 on PATH:
        # PySpark reads the environment for UDF workers, the JVM the conf for data sources.
        os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
        builder = (
            builder.master(master)
            .config("spark.pyspark.python", sys.executable)
            .config("spark.pyspark.driver.python", sys.executable)
            .config("spark.driver.memory", os.environ.get("DEEPLOC_SPARK_DRIVER_MEMORY", "3g"))
            .config("spark.sql.shuffle.partitions", os.environ.get("DEEPLOC_SPARK_SHUFFLE_PARTITIONS", "8"))
            # List input folders on the driver: a distributed listing job only costs time on one machine.
            .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
        )
        jar = localfs_jar()
        if jar and master.startswith("local"):  # executors elsewhere would not have the class
            builder = builder.config("spark.driver.extraClassPath", jar).config("spark.hadoop.fs.file.impl", LOCALFS_CLASS)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("DEEPLOC_SPARK_LOG_LEVEL", "WARN"))
    return spark
