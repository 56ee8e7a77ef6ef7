"""Reading one upload-time slice of a table, and writing a slice stage's output + rejects.

Reading plans the current snapshot's files of the slice's months (``deeploc.storage.catalog``): a reader never
sees a month in the middle of being replaced, and its ledger records the snapshot it read.

A slice stage gives every row it read a ``reject_reason`` (null = keep). Output and rejects are written
by Spark into data folders of the run's own, counted from the files' footers, the ledger is recorded
(it fails the run if rows were lost or duplicated), and only then is each table committed: one
snapshot that replaces the slice's months, carrying the ledger's counts.
"""

from __future__ import annotations

import logging
import time
import uuid

from deeploc import registry
from deeploc.storage import catalog, ledger
from deeploc.storage.lake import Lake
from deeploc.storage.slices import Slice
from deeploc.storage.tables import MONTH, REASON

log = logging.getLogger(__name__)

# Parquet writer settings for every Spark-written table. A partitioned write opens a writer per month;
# small dictionary pages keep that cheap; zstd at level 1 writes a third smaller than snappy, as small as
# zstd's default level 3 here and faster (benchmarks/RESULTS.md, metadata).
PARQUET_OPTIONS = {"compression": "zstd", "parquet.compression.codec.zstd.level": "1",
                   "parquet.dictionary.page.size": str(64 << 10)}
FOLDER = "p_"   # the folder copy of a partition column: ``p_upload_month=2010-01``


def write_parquet(df, location: str, folders: tuple[str, ...] = ()) -> None:
    """Write ``df`` as Parquet, in a folder per value of the ``folders`` columns (e.g. one per month)."""
    writer = df.write.mode("overwrite").options(**PARQUET_OPTIONS)
    (writer.partitionBy(*folders) if folders else writer).parquet(location)


def write_table_files(df, lake: Lake, table: str, partition_by: tuple[str, ...]) -> tuple[str, list[str]]:
    """Write ``df`` into a new data folder of ``table``, a file per value of the ``partition_by`` columns
    at least; return (the folder, its files). The columns stay in the files (Spark's folders are named
    by copies): Iceberg reads a file's partition from its data."""
    from pyspark.sql import functions as F

    where = catalog.new_data_folder(lake, table)
    write_parquet(df.select("*", *(F.col(c).alias(FOLDER + c) for c in partition_by)).repartition(*partition_by),
                  where, tuple(FOLDER + c for c in partition_by))
    return where, lake.files(where, ".parquet")


def arrow_schema(df):
    """The pyarrow schema of a Spark DataFrame (what a table is created with)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(df.schema)


def months(sl: Slice):
    """The slice's months as a pyiceberg filter on ``upload_month`` (``YYYY-MM`` strings sort by time)."""
    from pyiceberg.expressions import AlwaysTrue, And, GreaterThanOrEqual, LessThan

    from deeploc.storage.slices import month_of

    bounds = [*([GreaterThanOrEqual(MONTH, month_of(sl.start))] if sl.start else []),
              *([LessThan(MONTH, month_of(sl.end))] if sl.end else [])]
    return And(*bounds) if len(bounds) == 2 else (bounds[0] if bounds else AlwaysTrue())


def read_files(spark, files: list[str], schema):
    """A DataFrame of these Parquet files (no partition folders inferred), or an empty one of ``schema``
    (pyarrow) when there are none."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return spark.read.parquet(*files) if files else spark.createDataFrame([], from_arrow_schema(schema))


def read_slice(spark, lake: Lake, table: str, sl: Slice):
    """(rows of slice ``sl`` of ``table``, their count, the snapshot read): the files of the current
    snapshot. An error naming the stage to run first when the table was never written."""
    found = catalog.plan(lake, table, months(sl))
    if found.arrow_schema is None:
        raise FileNotFoundError(f"no {table} table in the catalog of {lake.root}; run {registry.writer_of(table)} first")
    return read_files(spark, found.files, found.arrow_schema), found.rows, found.snapshot_id


def write_slice(lake: Lake, stage: str, labelled, rows_in: int, table: str, columns: list[str],
                reject_columns: list[str], sl: Slice, read_snapshot: int | None, materialize: bool = True,
                **extra) -> dict:
    """Commit ``labelled`` (with ``reject_reason`` and ``upload_month``) as slice ``sl`` of ``table`` and
    ``rejects/<stage>``; return the ledger. ``materialize``: label once into a scratch table (for costly
    labels such as face detection); without it each table's write labels again."""
    from pyspark.sql import functions as F

    spark, t0 = labelled.sparkSession, time.monotonic()
    scratch = lake.path("_scratch", f"{stage}-{uuid.uuid4().hex[:12]}")
    written: list[str] = []
    try:
        if materialize:
            write_parquet(labelled, scratch)
        t1 = time.monotonic()
        rows = spark.read.parquet(scratch) if materialize else labelled
        frames = {table: rows.filter(F.col(REASON).isNull()).select(*columns, MONTH),
                  f"rejects/{stage}": rows.filter(F.col(REASON).isNotNull()).select(*reject_columns, REASON, MONTH)}
        files = {}
        for name, frame in frames.items():
            folder, files[name] = write_table_files(frame, lake, name, (MONTH,))
            written.append(folder)
        log.info("%s [%s]: labelled in %.1f s, tables written in %.1f s", stage, sl.name, t1 - t0,
                 time.monotonic() - t1)
        outside = sorted({m for fs in files.values() for m in map(month_of_file, fs) if not sl.covers(m)})
        if outside:
            raise RuntimeError(f"{stage}: rows outside the slice {sl.name}: {outside[:5]}")
        # Counted from what is on disk: the footers, and the one reason column of the rejects.
        rej_files = files[f"rejects/{stage}"]
        rows_out, rejected = ledger.footer_rows(lake, files[table]), ledger.footer_rows(lake, rej_files)
        by_reason = {r[REASON]: r["n"] for r in spark.read.parquet(*rej_files).groupBy(REASON)
                     .agg(F.count("*").alias("n")).collect()} if rej_files else {}
        if sum(by_reason.values()) != rejected:
            raise ledger.LedgerError(f"{stage} [{sl.name}]: the rejects' reasons and footers disagree")
        entry = ledger.record(lake, stage, sl.name, rows_in, rows_out, by_reason, read_snapshot=read_snapshot, **extra)
    except BaseException:
        for folder in written:
            lake.delete(folder)
        raise
    finally:
        lake.delete(scratch)
    counts = {k: entry[k] for k in ("in", "out", "rejected", "rejects")}
    for name, frame in frames.items():
        catalog.commit(lake, name, files[name], months(sl), (MONTH,), arrow_schema(frame),
                       {"stage": stage, "scope": sl.name, **counts})
    return entry


def month_of_file(location: str) -> str:
    """The month of a file written by ``write_table_files``, from its folder name."""
    return next(p.split("=", 1)[1] for p in location.split("/") if p.startswith(f"{FOLDER}{MONTH}="))
