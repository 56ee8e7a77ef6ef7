"""The measured part of the metadata benchmark, in one process and one Spark session (start-up excluded
from every figure): a bare Spark job over the raw files, the parse step over the same files, and a
backfill of the 11 yearly metadata slices on what the parse step wrote.

The bare job is Spark's own floor for this work: its built-in text reader, split, md5 of the URL,
casts, one filter, Parquet in a folder per upload month.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time


def bare_job(spark, files: list[str], out: str) -> int:
    from pyspark.sql import functions as F

    f = F.split("value", "\t", -1)
    rows = (spark.read.text(files)
            .select(F.get(f, 1).try_cast("bigint").alias("photo_id"), F.md5(F.get(f, 16)).alias("h"),
                    F.get(f, 12).try_cast("double").alias("lon"), F.get(f, 13).try_cast("double").alias("lat"),
                    F.timestamp_seconds(F.get(f, 6).try_cast("bigint")).alias("t"))
            .filter(F.col("photo_id").isNotNull())
            .withColumn("month", F.date_format("t", "yyyy-MM")))
    rows.write.mode("overwrite").partitionBy("month").parquet(out)
    return spark.read.parquet(out).count()


def timed(fn):
    t0 = time.monotonic()
    result = fn()
    return time.monotonic() - t0, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bz2", nargs="+", required=True)
    ap.add_argument("--plain", nargs="+", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    from deeploc.spark import session
    from deeploc.stages import metadata, parse

    spark = session("bench-metadata")
    bare_job(spark, a.plain[:1], f"{a.work}/warm")  # JVM, codegen and Python workers warm
    out = {}
    for kind, files in (("plain", a.plain), ("bz2", a.bz2)):
        lake = f"{a.work}/lake-{kind}"
        shutil.rmtree(lake, ignore_errors=True)
        out[f"bare_{kind}_s"], out["rows"] = timed(lambda: bare_job(spark, files, f"{a.work}/bare-{kind}"))
        out[f"parse_{kind}_s"], ledger = timed(lambda: parse.run(files, lake))
        out[f"parse_{kind}_in"] = ledger["in"]
    slices = [(f"{y}-01-01", f"{y + 1}-01-01") for y in range(2004, 2015)]
    out["backfill_s"], ledgers = timed(lambda: [metadata.run(f"{a.work}/lake-bz2", *s) for s in slices])
    out["backfill_rows_in"] = sum(lg["in"] for lg in ledgers)
    out["slice_s"] = out["backfill_s"] / len(slices)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
