"""The measured part of the metadata benchmark, in one process and one Spark session (start-up excluded
from every figure): a bare Spark job over the raw files, the parse step over the same files, and a
backfill of the 11 yearly metadata slices on what the parse step wrote.

The bare job is Spark's own floor for this work: its built-in text reader, split, md5 of the URL,
casts, one filter, Parquet in a folder per upload month, with the same columns the parse step keeps
(so the comparison measures what the parse step adds: its reader, reasons, line counts, duplicates,
ledger and publishing, not a choice of columns).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time


def bare_job(spark, files: list[str], out: str) -> int:
    from pyspark.sql import functions as F

    from deeploc.sources.yfcc import COLUMNS_25

    f = dict(zip(COLUMNS_25, (F.get(F.split("value", "\t", -1), i) for i in range(len(COLUMNS_25)))))
    rows = (spark.read.text(files)
            .select(f["photo_id"].try_cast("bigint").alias("photo_id"), f["line"].try_cast("bigint").alias("line"),
                    f["hash"].alias("given_hash"), F.md5(f["download_url"]).alias("url_md5"),
                    *(f[c].alias(c) for c in ("user_nsid", "user_nickname", "date_taken", "title", "page_url",
                                              "download_url", "license_name", "license_url")),
                    F.timestamp_seconds(f["date_uploaded"].try_cast("bigint")).alias("upload_time"),
                    f["longitude"].try_cast("double").alias("longitude"), f["latitude"].try_cast("double").alias("latitude"),
                    f["accuracy"].try_cast("int").alias("accuracy"), f["marker"].try_cast("int").alias("marker"),
                    F.input_file_name().alias("source_file"))
            .filter(F.col("photo_id").isNotNull())
            .withColumn("month", F.date_format("upload_time", "yyyy-MM")))
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
