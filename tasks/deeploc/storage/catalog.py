"""The lake's tables as Apache Iceberg tables in a catalog (``pyiceberg``).

Every table a stage writes (``parsed``, ``metadata``, ``images``, ``faces``, ``predictions`` and the
rejects as ``rejects_<stage>``) lives in namespace ``deeploc`` (``DEEPLOC_NAMESPACE``) of a catalog:
an embedded SQL catalog (SQLite, ``_catalog/catalog.db``) on a local lake, the AWS Glue Data Catalog on
an S3 lake, so Athena, Trino, DuckDB or anyone's Spark reads what the stages write
(``DEEPLOC_CATALOG``: ``sql`` or ``glue``; default by the lake).

Spark does the work and writes Parquet files into a folder of the run's own under the table
(``<table>/data/<run>/``); the run then commits once: one transaction that removes the files of what it
replaces (a slice's months, a source file, a model run) and adds its own, whole files only, with the
run's ledger counts in the snapshot's summary. A commit that loses a race with another run is done
again on the new table state, never failed and never doubled. Readers plan the files of one
snapshot (``plan``), so they never see a partial month.

Old snapshots expire ``RETAIN`` after they stopped being current, and files no retained snapshot
references are removed once older than ``ABANDONED_AFTER`` (longer than any run: a live run's files
are never taken) by ``maintain``, which every commit runs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from deeploc.storage.lake import Lake

log = logging.getLogger(__name__)

# How long a snapshot stays readable after a newer one replaced it (readers that planned it finish).
RETAIN = timedelta(hours=float(os.environ.get("DEEPLOC_RETAIN_HOURS", "48")))
# Longer than the longest run the DAGs allow: an unreferenced file younger than this may be a live run's.
ABANDONED_AFTER = timedelta(hours=48)
COMMIT_TRIES = 20
PREFIX = "deeploc."   # snapshot summary keys of our own


def namespace() -> str:
    return os.environ.get("DEEPLOC_NAMESPACE", "deeploc")


def name_of(table: str) -> str:
    """The catalog name of a lake table: ``rejects/faces`` -> ``rejects_faces``."""
    return table.replace("/", "_")


def identifier(table: str) -> str:
    return f"{namespace()}.{name_of(table)}"


@functools.lru_cache(maxsize=8)
def _catalog(root: str, kind: str):
    from pyiceberg.catalog.glue import GlueCatalog
    from pyiceberg.catalog.sql import SqlCatalog

    endpoint = os.environ.get("DEEPLOC_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    io = {k: v for k, v in (("s3.endpoint", endpoint), ("s3.region", region)) if v}
    if kind == "sql":
        os.makedirs(os.path.join(root, "_catalog"), exist_ok=True)
        # timeout: writers of several processes wait for SQLite's lock instead of failing at once.
        cat = SqlCatalog(namespace(), uri=f"sqlite:///{root}/_catalog/catalog.db?timeout=120",
                         warehouse=f"file://{root}", **io)
    elif kind == "glue":
        cat = GlueCatalog(namespace(), **io, **({"glue.region": region} if region else {}))
    else:
        raise ValueError(f"DEEPLOC_CATALOG must be sql or glue, got {kind!r}")
    cat.create_namespace_if_not_exists(namespace())
    return cat


def catalog(lake: Lake):
    """The lake's catalog: ``DEEPLOC_CATALOG``, or SQL for a local lake and Glue for an S3 one."""
    return _catalog(lake.root, os.environ.get("DEEPLOC_CATALOG") or ("glue" if lake.remote else "sql"))


def load(lake: Lake, table: str):
    """The Iceberg table, or None when no run has written it yet. A table of that name that lives in
    another lake (two lakes sharing one Glue database, or a lake folder moved) is an error."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        tbl = catalog(lake).load_table(identifier(table))
    except NoSuchTableError:
        return None
    if _location(lake, tbl.location()).rstrip("/") != lake.path(table):
        raise RuntimeError(f"{identifier(table)} in the catalog is the table at {tbl.location()}, not this lake's "
                           f"{lake.path(table)}: give each lake a namespace of its own (DEEPLOC_NAMESPACE)")
    return tbl


def new_data_folder(lake: Lake, table: str) -> str:
    """A folder under the table that no other run writes into."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return lake.path(table, "data", f"{stamp}-{uuid.uuid4().hex[:10]}")


# -- reading ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """The files of one snapshot that hold the rows a reader asked for."""

    table: str
    snapshot_id: int | None      # None: the table has no snapshot (never written, or never committed)
    files: list[str]
    rows: int
    arrow_schema: object | None  # the table's schema (pyarrow), None when the table does not exist


def plan(lake: Lake, table: str, where=None) -> Plan:
    """The current snapshot's files matching ``where`` (a pyiceberg expression on partition columns)."""
    from pyiceberg.expressions import AlwaysTrue

    tbl = load(lake, table)
    if tbl is None:
        return Plan(table, None, [], 0, None)
    snap = tbl.current_snapshot()
    tasks = [] if snap is None else list(tbl.scan(row_filter=where or AlwaysTrue(), snapshot_id=snap.snapshot_id)
                                         .plan_files())
    return Plan(table, snap.snapshot_id if snap else None, [_location(lake, t.file.file_path) for t in tasks],
                sum(t.file.record_count for t in tasks), tbl.schema().as_arrow())


def _location(lake: Lake, path: str) -> str:
    """A file path as the catalog stores it, as the lake names locations (local paths without file://)."""
    return path[len("file://"):] if path.startswith("file://") else path


def read(lake: Lake, table: str, columns: list[str] | None = None, where=None, writer: str = "its stage"):
    """(rows of the current snapshot as a pandas DataFrame, the snapshot id); an error naming ``writer``
    when the table was never written, or lacks one of ``columns`` (written by an older version)."""
    from pyiceberg.expressions import AlwaysTrue

    tbl = load(lake, table)
    snap = tbl.current_snapshot() if tbl is not None else None
    if snap is None:
        raise FileNotFoundError(f"no {table} table in the catalog of {lake.root}; run {writer} first")
    missing = sorted(set(columns or []) - set(tbl.schema().column_names))
    if missing:
        raise ValueError(f"the {table} table has no {missing}: it was written by an older version; run {writer} again")
    scan = tbl.scan(row_filter=where or AlwaysTrue(), selected_fields=tuple(columns) if columns else ("*",),
                    snapshot_id=snap.snapshot_id)
    return scan.to_arrow().to_pandas(), snap.snapshot_id


# -- writing ------------------------------------------------------------------------------------------
def _create(lake: Lake, table: str, arrow_schema, partition_by: tuple[str, ...]):
    """Create the table from the first files' schema (every column optional), partitioned by identity."""
    from pyiceberg.catalog import Catalog
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import assign_fresh_schema_ids
    from pyiceberg.table import TableProperties
    from pyiceberg.transforms import IdentityTransform

    import pyarrow as pa

    schema = assign_fresh_schema_ids(Catalog._convert_schema_if_needed(
        pa.schema([f.with_nullable(True) for f in arrow_schema])))
    spec = PartitionSpec(*(PartitionField(source_id=schema.find_field(c).field_id, field_id=1000 + i,
                                          transform=IdentityTransform(), name=c) for i, c in enumerate(partition_by)))
    props = {TableProperties.DEFAULT_NAME_MAPPING: schema.name_mapping.model_dump_json(), "format-version": "2",
             # deeploc.storage.catalog redoes a lost commit itself, on the new state (see commit)
             TableProperties.COMMIT_NUM_RETRIES: "0"}
    return catalog(lake).create_table_if_not_exists(identifier(table), schema=schema, partition_spec=spec,
                                                    location=lake.path(table), properties=props)


def commit(lake: Lake, table: str, files: list[str], replace, partition_by: tuple[str, ...], schema,
           summary: dict | None = None) -> dict:
    """Make the table hold ``files`` instead of the rows ``replace`` (a pyiceberg expression on partition
    columns) selects, in one snapshot whose summary carries ``summary`` (under ``deeploc.``). A table that
    does not exist yet is created with ``schema`` (pyarrow) and ``partition_by``. A commit that loses a
    race is redone on the new state. Returns the snapshot id and the files and rows added and removed."""
    from pyiceberg.exceptions import CommitFailedException, ValidationException
    from pyiceberg.io.pyarrow import parquet_file_to_data_file

    tbl = load(lake, table) or _create(lake, table, schema, partition_by)
    props = {PREFIX + k: json.dumps(v, sort_keys=True) for k, v in (summary or {}).items()}  # typed, for history
    new = None
    for attempt in range(COMMIT_TRIES):
        tbl.refresh()
        if new is None or new[0] != tbl.schema().schema_id:
            _evolve(tbl, files)
            with ThreadPoolExecutor(16) as pool:  # one footer read per file; on S3 a request each
                new = (tbl.schema().schema_id,
                       list(pool.map(lambda f: parquet_file_to_data_file(tbl.io, tbl.metadata, f), files)))
        snap = tbl.current_snapshot()
        old = [] if snap is None else [t.file for t in tbl.scan(row_filter=replace, snapshot_id=snap.snapshot_id)
                                      .plan_files()]
        try:
            with tbl.transaction() as tx:
                with tx.update_snapshot(snapshot_properties=props).overwrite() as change:
                    for data_file in old:
                        change.delete_data_file(data_file)
                    for data_file in new[1]:
                        change.append_data_file(data_file)
            break
        except (CommitFailedException, ValidationException) as exc:
            if attempt == COMMIT_TRIES - 1:
                raise
            wait = min(5.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.5)
            log.info("%s: another run committed first (%s); committing again on the new state in %.2f s",
                     identifier(table), type(exc).__name__, wait)
            time.sleep(wait)
    tbl.refresh()
    result = {"snapshot_id": tbl.current_snapshot().snapshot_id, "added_files": len(new[1]), "removed_files": len(old),
              "added_rows": sum(d.record_count for d in new[1]), "removed_rows": sum(d.record_count for d in old)}
    log.info("%s: snapshot %s, %d file(s) / %d row(s) in, %d file(s) / %d row(s) out", identifier(table),
             result["snapshot_id"], result["added_files"], result["added_rows"], result["removed_files"],
             result["removed_rows"])
    maintain(lake, table)
    return result


def write_frame(lake: Lake, table: str, df, partition_by: tuple[str, ...] = ("upload_month",), replace=None) -> dict:
    """Commit a pandas frame to a table, one Parquet file per partition (as a stage's Spark job writes
    them), in place of the rows ``replace`` selects (default: none). For lakes stocked from Python:
    the tests, the benchmarks, a user's own rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyiceberg.expressions import AlwaysFalse

    folder, files = new_data_folder(lake, table), []
    lake.fs.create_dir(lake.fs_path(folder), recursive=True)
    for i, (_, part) in enumerate(df.groupby(list(partition_by), sort=True)):
        files.append(f"{folder}/part-{i}.parquet")
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), lake.fs_path(files[-1]), filesystem=lake.fs)
    return commit(lake, table, files, replace if replace is not None else AlwaysFalse(), tuple(partition_by),
                  pa.Schema.from_pandas(df, preserve_index=False))


def _evolve(tbl, files: list[str]) -> None:
    """Add the columns the new files have and the table has not (a newer version of a stage)."""
    import pyarrow.parquet as pq

    if not files:
        return
    with tbl.io.new_input(files[0]).open() as f:
        arrow = pq.read_schema(f)
    known = set(tbl.schema().column_names)
    if any(name not in known for name in arrow.names):
        import pyarrow as pa

        with tbl.update_schema() as update:
            update.union_by_name(pa.schema([f.with_nullable(True) for f in arrow]))
        tbl.refresh()


# -- keeping the lake small -----------------------------------------------------------------------------
def maintain(lake: Lake, table: str, now: datetime | None = None) -> dict:
    """Expire the snapshots that stopped being current more than ``RETAIN`` ago, then remove the files
    under the table that no retained snapshot references and that are older than ``ABANDONED_AFTER``."""
    tbl = load(lake, table)
    if tbl is None:
        return {"expired": 0, "removed_files": 0}
    now = now or datetime.now(timezone.utc)
    log_entries = sorted(tbl.metadata.snapshot_log, key=lambda e: e.timestamp_ms)
    current = tbl.current_snapshot()
    expired = []
    for entry, after in zip(log_entries, log_entries[1:]):  # an entry stopped being current at the next one
        if entry.snapshot_id != (current and current.snapshot_id) and \
                after.timestamp_ms / 1000 < (now - RETAIN).timestamp() and tbl.metadata.snapshot_by_id(entry.snapshot_id):
            expired.append(entry.snapshot_id)
    expired = sorted(set(expired))
    if expired:
        from pyiceberg.exceptions import CommitFailedException

        try:
            tbl.maintenance.expire_snapshots().by_ids(expired).commit()
        except CommitFailedException:  # another run changed the table meanwhile: its maintenance will expire them
            return {"expired": 0, "removed_files": 0}
        tbl.refresh()
    kept = _referenced(tbl)
    cutoff = (now - ABANDONED_AFTER).timestamp()
    removed = 0
    for location in lake.files(lake.path(table)):
        if location not in kept and (lake.mtime(location) or now.timestamp()) < cutoff:
            lake.delete(location)
            removed += 1
    if expired or removed:
        log.info("%s: %d snapshot(s) expired, %d unreferenced file(s) removed", identifier(table), len(expired), removed)
    return {"expired": len(expired), "removed_files": removed}


def _referenced(tbl) -> set[str]:
    """Every file a retained snapshot needs: metadata files, manifest lists, manifests, and the data files
    live in some retained snapshot (a manifest also lists the files its snapshot deleted: not needed)."""
    io = tbl.io
    out = {tbl.metadata_location, *(e.metadata_file for e in tbl.metadata.metadata_log)}
    manifests = {}  # snapshots share most of their manifests: read each once
    for snap in tbl.metadata.snapshots:
        out.add(snap.manifest_list)
        manifests.update((m.manifest_path, m) for m in snap.manifests(io))
    for path, manifest in manifests.items():
        out.add(path)
        out.update(e.data_file.file_path for e in manifest.fetch_manifest_entry(io, discard_deleted=True))
    return {p[len("file://"):] if p.startswith("file://") else p for p in out}


# -- what the catalog holds -----------------------------------------------------------------------------
def describe(lake: Lake) -> list[dict]:
    """One record per table: identifier, current snapshot, rows, files, bytes, metadata file."""
    cat = catalog(lake)
    out = []
    for ident in sorted(cat.list_tables(namespace())):
        tbl = cat.load_table(ident)
        snap = tbl.current_snapshot()
        s = snap.summary.additional_properties if snap else {}
        out.append({"table": ".".join(ident), "snapshot_id": snap.snapshot_id if snap else None,
                    "rows": int(s.get("total-records", 0)), "files": int(s.get("total-data-files", 0)),
                    "bytes": int(s.get("total-files-size", 0)), "metadata_location": tbl.metadata_location,
                    "snapshots": len(tbl.metadata.snapshots)})
    return out


def history(lake: Lake, table: str) -> list[dict]:
    """The table's retained snapshots, oldest first, with the run and ledger counts each one carries."""
    tbl = load(lake, table)
    if tbl is None:
        raise FileNotFoundError(f"no table {identifier(table)} in the catalog of {lake.root}")
    current = tbl.current_snapshot()
    out = []
    for snap in sorted(tbl.metadata.snapshots, key=lambda s: s.timestamp_ms):
        s = snap.summary.additional_properties
        ours = {k[len(PREFIX):]: json.loads(v) for k, v in s.items() if k.startswith(PREFIX)}
        out.append({"snapshot_id": snap.snapshot_id, "current": current is not None and snap.snapshot_id == current.snapshot_id,
                    "committed_at": datetime.fromtimestamp(snap.timestamp_ms / 1000, timezone.utc).isoformat(),
                    "operation": str(snap.summary.operation.value), "rows": int(s.get("total-records", 0)),
                    "added_rows": int(s.get("added-records", 0)), "removed_rows": int(s.get("deleted-records", 0)),
                    **ours})
    return out
