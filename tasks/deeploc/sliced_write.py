"""Write a stage's labelled rows as output + rejects for one slice, with a verified ledger.

A stage labels every row it read with ``reject_reason`` (null = keep). The labelled rows are computed
once and written to a hidden flat Parquet table that every later pass reads: cheaper to build than
Spark's in-memory cache and bounded in memory at any input size. From it both tables are written to
hidden staging folders, one file per month (a shuffle by month, not one file per task and month);
what was actually written is counted, the ledger recorded (it fails the run if rows were lost or
duplicated) and only then are the slice's partitions swapped in.
"""

from __future__ import annotations

import logging
import time

import pyarrow.parquet as pq

from deeploc.lake import PARTITION, Lake, LedgerError, Slice, record_ledger

REASON = "reject_reason"
# Parquet writer settings for every table written here. A partitioned write opens a writer per month,
# and parquet-mr's default 1 MB dictionary page per column and writer cost ~20% of the write; 64 KB
# keeps dictionaries for the columns that repeat (licenses, months) and gives up early on the rest
# (URLs, titles, raw lines). zstd: a third smaller than snappy at the same speed here.
PARQUET_OPTIONS = {"compression": "zstd", "parquet.dictionary.page.size": str(64 << 10)}
log = logging.getLogger(__name__)


def _parquet(df, path: str, partitioned: bool = False) -> None:
    writer = df.write.mode("overwrite").options(**PARQUET_OPTIONS)
    (writer.partitionBy(PARTITION) if partitioned else writer).parquet(path)


def _footer_rows(lake: Lake, files: list[str]) -> int:
    """Rows in these Parquet files, from their footers (no Spark job)."""
    return sum(pq.ParquetFile(lake.fs.open_input_file(f)).metadata.num_rows for f in files)


def _read_files(spark, lake: Lake, base: str, files: list[str]):
    """A table read by the files already listed: Spark does not list them again, and staging folders
    (their names start with "_", which Spark's listing skips) need no glob, which logs a stack trace."""
    return spark.read.option("basePath", base).parquet(*(lake.uri(f) for f in files))


def write_slice(lake: Lake, stage: str, labelled, rows_in: int | None, out_table: str, out_cols: list[str],
                reject_cols: list[str], sl: Slice, with_unknown: bool = False, extra: dict | None = None,
                finish=None) -> dict:
    """Persist ``labelled`` (a DataFrame with ``reject_reason`` and ``upload_month``) for slice ``sl``.

    ``finish``, if given, turns the materialised rows into the final ones (metadata marks duplicate
    ids, which needs every row, there). ``rows_in`` None: the stage labels one row per input row, so
    the input count is that of the final rows; the ledger still checks it against what was written.
    """
    from pyspark.sql import functions as F

    flat, t0 = lake.staging(out_table), time.monotonic()
    try:
        _parquet(labelled, flat)
        t1 = time.monotonic()
        rows = _read_files(labelled.sparkSession, lake, flat, lake.files(flat, ".parquet"))
        rows = finish(rows) if finish else rows
        if rows_in is None:
            rows_in = rows.count()
        t2 = time.monotonic()
        out_dir, rej_dir = lake.staging(out_table), lake.staging(f"rejects/{stage}")
        for cols, keep, where in ((out_cols, F.col(REASON).isNull(), out_dir),
                                  ([*reject_cols, REASON], F.col(REASON).isNotNull(), rej_dir)):
            _parquet(rows.filter(keep).select(*cols, PARTITION).repartition(PARTITION), where, partitioned=True)
    finally:
        lake.rmtree(flat)
    log.info("%s [%s]: labelled and materialised in %.1f s, finished in %.1f s, tables written in %.1f s",
             stage, sl.label, t1 - t0, t2 - t1, time.monotonic() - t2)
    # Counted from what is on disk: the footers, and the one reason column of the rejects.
    out_files, rej_files = ([f for f in lake.files(d, ".parquet") if f"/{PARTITION}=" in f] for d in (out_dir, rej_dir))
    rows_out, rejected = _footer_rows(lake, out_files), _footer_rows(lake, rej_files)
    by_reason = {r[REASON]: r["n"] for r in _read_files(labelled.sparkSession, lake, rej_dir, rej_files)
                 .groupBy(REASON).agg(F.count("*").alias("n")).collect()} if rejected else {}
    if sum(by_reason.values()) != rejected:
        raise LedgerError(f"{stage} [{sl.label}]: the rejects' reasons and footers disagree")
    ledger = record_ledger(lake, stage, sl.label, rows_in, rows_out, by_reason, **(extra or {}))
    lake.replace_slice(out_table, out_dir, sl.months(), with_unknown)
    lake.replace_slice(f"rejects/{stage}", rej_dir, sl.months(), with_unknown)
    return ledger


def read_slice(spark, lake: Lake, table: str, sl: Slice, upstream: str):
    """The rows of slice ``sl`` of an upstream table, and how many there are (from the Parquet footers:
    no Spark job). An empty frame with the table's schema when the slice has none; an error naming the
    stage to run first when the table does not exist."""
    parts = lake.partitions(table)
    if not parts:
        raise FileNotFoundError(f"no {table} table under {lake.path(table)}; run {upstream} first")
    wanted = {f"{PARTITION}={m}" for m in sl.months()}
    files = [f for p in parts if p in wanted for f in lake.files(lake.path(table, p), ".parquet")]
    base = lake.path(table)
    if not files:
        return spark.createDataFrame([], spark.read.parquet(base).schema), 0
    return _read_files(spark, lake, base, files), _footer_rows(lake, files)
