"""Reading one upload-time slice of a table, and writing a slice stage's output + rejects.

A slice stage gives every row it read a ``reject_reason`` (null = keep). Those labelled rows are
computed once into a hidden flat Parquet table that both writes then read: cheaper than Spark's
in-memory cache and bounded in memory at any size. Output and rejects are written one file per month
into staging, counted from what is on disk, the ledger is recorded (it fails the run if rows were lost
or duplicated) and only then are the slice's months published (``deeploc.commit``).
"""

from __future__ import annotations

import logging
import time

from deeploc import commit, ledger, registry
from deeploc.lake import Lake
from deeploc.slices import Slice
from deeploc.tables import MONTH, REASON

log = logging.getLogger(__name__)

# Parquet writer settings for every Spark-written table. A partitioned write opens a writer per month;
# small dictionary pages keep that cheap; zstd at level 1 writes a third smaller than snappy, as small as
# zstd's default level 3 here and faster (benchmarks/RESULTS.md, metadata).
PARQUET_OPTIONS = {"compression": "zstd", "parquet.compression.codec.zstd.level": "1",
                   "parquet.dictionary.page.size": str(64 << 10)}
# How long a reader waits for a month that is being replaced on S3 (see deeploc.commit) to settle.
SETTLE_TRIES, SETTLE_WAIT_S = 6, 5.0
# How often a slice stage starts again when another run replaced its input while it read it.
READ_AGAIN = 3


def read_again_if_replaced(run):
    """Run a slice stage; when another run (of the same slice) replaced input files it had listed, start
    it again: it is idempotent and its staging is gone already. At most ``READ_AGAIN`` times."""
    for attempt in range(READ_AGAIN + 1):
        try:
            return run()
        except Exception as exc:
            if "java.io.FileNotFoundException" not in str(exc) or attempt == READ_AGAIN:  # how Spark says so
                raise
            log.warning("input files replaced by another run while this one read them; reading the slice again")


def write_parquet(df, location: str, folders: tuple[str, ...] = ()) -> None:
    """Write ``df`` as Parquet, in a folder per value of the ``folders`` columns (e.g. one per month)."""
    writer = df.write.mode("overwrite").options(**PARQUET_OPTIONS)
    (writer.partitionBy(*folders) if folders else writer).parquet(location)


def read_files(spark, base: str, files: list[str]):
    """A table read from files already listed, with ``base`` as the root of its folder columns: Spark
    lists nothing again, and staging folders (hidden by their "_") need no glob."""
    return spark.read.option("basePath", base).parquet(*files)


def month_of_file(location: str) -> str | None:
    for part in location.split("/"):
        if part.startswith(MONTH + "="):
            return part.split("=", 1)[1]
    return None


def slice_files(lake: Lake, table: str, sl: Slice) -> list[str]:
    """The Parquet files of ``table`` in the slice's months (hidden folders skipped)."""
    base = lake.path(table)
    return [f for f in lake.files(base, ".parquet")
            if not any(p[:1] in "._" for p in f[len(base):].split("/") if p) and sl.covers(month_of_file(f) or "")]


def read_slice(spark, lake: Lake, table: str, sl: Slice, check_ledger: bool = True):
    """(rows of slice ``sl`` of ``table``, their count from the Parquet footers). An empty frame with the
    table's columns when the slice has none; an error naming the stage to run first when the table has
    no rows at all. With ``check_ledger``, the count must equal what the writer's ledger for the same
    slice says it published; a month being replaced on S3 is waited for, a mismatch that stays fails."""
    writer = registry.writer_of(table)
    for attempt in range(SETTLE_TRIES):
        files = slice_files(lake, table, sl)
        rows = ledger.footer_rows(lake, files)
        expected = ledger.read(lake, writer, sl.name) if check_ledger else None
        if expected is None or expected["out"] == rows:
            break
        if attempt == SETTLE_TRIES - 1:
            raise RuntimeError(f"{table} holds {rows} rows for slice {sl.name} but the {writer} ledger says "
                               f"{expected['out']}: a run of {writer} for {sl.name} is replacing it or was "
                               "interrupted; rerun it")
        time.sleep(SETTLE_WAIT_S)
    if files:
        return read_files(spark, lake.path(table), files), rows
    anything = next(iter(f for f in lake.files(lake.path(table), ".parquet") if month_of_file(f)), None)
    if anything is None:
        raise FileNotFoundError(f"no {table} table under {lake.path(table)}; run {writer} first")
    schema = read_files(spark, lake.path(table), [anything]).schema
    return spark.createDataFrame([], schema), 0


def write_slice(lake: Lake, stage: str, labelled, rows_in: int, table: str, columns: list[str],
                reject_columns: list[str], sl: Slice, materialize: bool = True, **extra) -> dict:
    """Persist ``labelled`` (with ``reject_reason`` and ``upload_month``) as slice ``sl`` of ``table`` and
    ``rejects/<stage>``; return the ledger. ``materialize``: label once into an intermediate table (for
    costly labels such as face detection); without it each table's write labels again."""
    from pyspark.sql import functions as F

    spark = labelled.sparkSession
    flat, t0 = commit.new_staging(lake, table), time.monotonic()
    out_dir, rej_dir = commit.new_staging(lake, table), commit.new_staging(lake, f"rejects/{stage}")
    try:
        if materialize:
            write_parquet(labelled, flat)
        t1 = time.monotonic()
        rows = read_files(spark, flat, lake.files(flat, ".parquet")) if materialize else labelled
        for cols, keep, where in ((columns, F.col(REASON).isNull(), out_dir),
                                  ([*reject_columns, REASON], F.col(REASON).isNotNull(), rej_dir)):
            write_parquet(rows.filter(keep).select(*cols, MONTH).repartition(MONTH), where, (MONTH,))
        lake.delete(flat)
        log.info("%s [%s]: labelled in %.1f s, tables written in %.1f s", stage, sl.name, t1 - t0,
                 time.monotonic() - t1)
        # Counted from what is on disk: the footers, and the one reason column of the rejects.
        out_files, rej_files = (lake.files(d, ".parquet") for d in (out_dir, rej_dir))
        rows_out, rejected = ledger.footer_rows(lake, out_files), ledger.footer_rows(lake, rej_files)
        by_reason = {r[REASON]: r["n"] for r in read_files(spark, rej_dir, rej_files).groupBy(REASON)
                     .agg(F.count("*").alias("n")).collect()} if rejected else {}
        if sum(by_reason.values()) != rejected:
            raise ledger.LedgerError(f"{stage} [{sl.name}]: the rejects' reasons and footers disagree")
        entry = ledger.record(lake, stage, sl.name, rows_in, rows_out, by_reason, **extra)
    except BaseException:
        for d in (flat, out_dir, rej_dir):
            lake.delete(d)
        raise
    commit.publish_months(lake, table, out_dir, sl)
    commit.publish_months(lake, f"rejects/{stage}", rej_dir, sl)
    return entry
