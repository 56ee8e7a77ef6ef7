"""Write a stage's labelled rows as output + rejects for one slice, with a verified ledger.

A stage labels every row it read with ``reject_reason`` (null = keep). This writes both tables to
hidden staging folders, counts what was actually written, records the ledger (which fails the run if
rows were lost or duplicated) and only then swaps the slice's partitions in.
"""

from __future__ import annotations

import pyarrow.parquet as pq

from deeploc.lake import PARTITION, Lake, LedgerError, Slice, record_ledger

REASON = "reject_reason"


def _written_rows(lake: Lake, path: str) -> int:
    """Rows written under a staged table, read back from the Parquet footers."""
    return sum(pq.ParquetFile(lake.fs.open_input_file(f)).metadata.num_rows
               for f in lake.files(path, ".parquet") if f"/{PARTITION}=" in f)


def write_slice(lake: Lake, stage: str, labelled, rows_in: int | None, out_table: str, out_cols: list[str],
                reject_cols: list[str], sl: Slice, with_unknown: bool = False, extra: dict | None = None) -> dict:
    """Persist ``labelled`` (a DataFrame with ``reject_reason`` and ``upload_month``) for slice ``sl``.

    ``rows_in`` None: the stage labels one row per input row, so the input count is taken from the
    cached labelled rows (no second pass over the input); the ledger still checks it against what
    was written.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    labelled = labelled.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if rows_in is None:
            rows_in = labelled.count()
        out_dir, rej_dir = lake.staging(out_table), lake.staging(f"rejects/{stage}")
        (labelled.filter(F.col(REASON).isNull()).select(*out_cols, PARTITION)
         .write.mode("overwrite").partitionBy(PARTITION).parquet(out_dir))
        (labelled.filter(F.col(REASON).isNotNull()).select(*reject_cols, REASON, PARTITION)
         .write.mode("overwrite").partitionBy(PARTITION).parquet(rej_dir))
        by_reason = {r[REASON]: r["n"] for r in
                     labelled.filter(F.col(REASON).isNotNull()).groupBy(REASON).agg(F.count("*").alias("n")).collect()}
    finally:
        labelled.unpersist()
    rows_out = _written_rows(lake, out_dir)
    rejected_written = _written_rows(lake, rej_dir)
    if rejected_written != sum(by_reason.values()):
        raise LedgerError(f"{stage} [{sl.label}]: counted {sum(by_reason.values())} rejects, wrote {rejected_written}")
    ledger = record_ledger(lake, stage, sl.label, rows_in, rows_out, by_reason, **(extra or {}))
    lake.replace_slice(out_table, out_dir, sl.months(), with_unknown)
    lake.replace_slice(f"rejects/{stage}", rej_dir, sl.months(), with_unknown)
    return ledger


def read_slice(spark, lake: Lake, table: str, sl: Slice, upstream: str):
    """The rows of slice ``sl`` of an upstream table: an empty frame with the table's schema when the
    slice has none, an error naming the stage to run first when the table does not exist."""
    parts = lake.partitions(table)
    if not parts:
        raise FileNotFoundError(f"no {table} table under {lake.path(table)}; run {upstream} first")
    base = lake.path(table)
    wanted = {f"{PARTITION}={m}" for m in sl.months()}
    in_slice = [lake.path(table, p) for p in parts if p in wanted]
    if not in_slice:
        return spark.createDataFrame([], spark.read.parquet(base).schema)
    return spark.read.option("basePath", base).parquet(*in_slice)
