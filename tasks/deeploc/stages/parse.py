"""Parse step: raw YFCC100M metadata files -> ``parsed`` (typed rows by upload month) + rejects.

Every input file is read once. A file already parsed (same path, size and modification time) is
skipped; a changed one is parsed again and replaces its own rows. The slice stages then read only
their months of ``parsed`` and never the raw files. Lines that cannot be parsed are rejected here
(``bad_field_count``, ``bad_photo_id``, ``bad_upload_time``); every other row is kept under its upload
month, however early or late (the ledger counts those outside YFCC100M's 2004-2014).

In the lake:

    parsed                   Iceberg table, partitioned by source (the input file's id) and upload_month
    rejects_parse            Iceberg table of unparseable lines (the raw line and a reason), by source
    _parse/sources/<id>.json the file a source id came from: size, modification time, layout, counts
    duplicates/              photo ids seen more than once, with their first occurrence (a folder output)
    _ledgers/parse/<id>.json, input.json        per file, and over the whole current input

Files parsed earlier but no longer among the inputs keep their rows (a parse of one new file must not
drop the rest); the input ledger counts them as ``earlier_files`` / ``earlier_rows``, and ``--prune``
removes them, their rejects and ledgers (the slices written from them change on their next run).

One parse runs per lake at a time (a lake lock): the runs of a backfill that start together wait for
the first, then find nothing left to do. Duplicates are decided over the whole table, once per change:
the first occurrence of an id (by file path, then position in the file) keeps it.

The rows are parsed and written in one pass: unparseable lines land in a folder of their own (no
upload month) that moves to the rejects table's data before the two commits, so the parsed files carry
an all-null ``raw`` column and the rejects all-null typed ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter

from pyiceberg.expressions import In

from deeploc.sources import yfcc
from deeploc.sources.line_source import head, InputFile, list_inputs, read_counts, read_lines
from deeploc.storage import catalog, commit, ledger
from deeploc.storage.lake import Lake
from deeploc.storage.slice_io import arrow_schema, FOLDER, month_of_file, write_parquet
from deeploc.storage.tables import MONTH, PARSED, REASON

log = logging.getLogger(__name__)

TABLE, REJECTS, DUPLICATES, SOURCES = "parsed", "rejects/parse", "duplicates", "_parse/sources"
PARTITIONS = ("source", MONTH)
REJECTED = "__HIVE_DEFAULT_PARTITION__"   # Spark's folder for the null month of unparseable lines
SPAN = ("2004-01", "2015-01")  # YFCC100M's upload years [first month, end month)
LOCK_WAIT_S = 6 * 3600         # a waiting parse outlasts a full parse on a cluster
# Upload times a timestamp holds with a 4-digit year: 0001-01-01 to 9999-12-31.
EPOCH_RANGE = (-62_135_596_800, 253_402_300_799)


def source_id(path: str) -> str:
    """The folder id of an input file; ``transform`` computes the same in Spark."""
    return hashlib.sha1(path.encode()).hexdigest()[:16]


def detect_layout(path: str, forced: int | None = None, sample: int = 1000) -> int:
    """25 or 23 columns: forced, or the more common of the two field counts in the file's first lines."""
    if forced:
        if forced not in yfcc.LAYOUTS:
            raise ValueError(f"unknown layout {forced}: use 25 (official) or 23 (variant)")
        return forced
    counts = Counter(line.count(b"\t") + 1 for line in head([path], sample))
    seen = {n: counts.get(n, 0) for n in yfcc.LAYOUTS}
    if not any(seen.values()):
        raise ValueError(f"{path}: no line has 25 or 23 tab-separated fields (field counts seen: {sorted(counts)[:10]})")
    return max(seen, key=lambda n: (seen[n], n))


def number(text, kind: str):
    """``text`` as a number, NULL where it is not one. Empty fields (every photo without a geotag) are
    nulled first: a failed cast costs an exception, which would dominate the step."""
    from pyspark.sql import functions as F

    return F.nullif(text, F.lit("")).try_cast(kind)


def derived_hash(url_col):
    """The bucket's file stem with built-ins: md5 hex, then drop the leading zero of every byte pair
    (``yfcc.flickr_hash``)."""
    from pyspark.sql import functions as F

    # One pass over the 32 hex digits, two at a time: a pair "0x" becomes "x", any other pair stays
    # (an unmatched group adds nothing). Matches are always two characters, so they stay aligned.
    return F.regexp_replace(F.md5(url_col), "0(.)|(..)", "$1$2")


def transform(lines, layout: int, sources: dict[str, str] | None = None):
    """Lines (raw, source_file, position) -> the ``PARSED`` columns, ``reject_reason``, ``upload_month``
    and ``source`` (the input file's id: looked up in ``sources``, path -> id, when given, which is
    cheaper than hashing every row's path); a rejected row keeps only its raw line (made valid UTF-8)
    and where it came from."""
    from pyspark.sql import functions as F

    raw = F.make_valid_utf8(F.col("raw").cast("string"))  # bad bytes in user text must not fail a row
    fields = F.split(raw, "\t", -1)
    f = {name: F.get(fields, i) for i, name in enumerate(yfcc.LAYOUTS[layout])}  # NULL past the end
    given = number(f["date_uploaded"], "bigint")
    epoch = F.when(given.between(*EPOCH_RANGE), given)  # NULL outside: converting it would overflow
    reason = (F.when(F.size(fields) != layout, "bad_field_count")
              .when(number(f["photo_id"], "bigint").isNull(), "bad_photo_id")
              .when(epoch.isNull(), "bad_upload_time"))
    typed = {
        "photo_id": number(f["photo_id"], "bigint"),
        "line": number(f["line"], "bigint") if "line" in f else F.lit(None).cast("bigint"),
        "given_hash": f["hash"] if "hash" in f else F.lit(None).cast("string"),
        "url_hash": F.when(F.length(f["download_url"]) > 0, derived_hash(f["download_url"])),
        **{c: f[c] for c in ("user_nsid", "user_nickname", "date_taken", "title", "page_url", "download_url",
                             "license_name", "license_url")},
        "upload_time": F.timestamp_seconds(epoch),
        "longitude": number(f["longitude"], "double"), "latitude": number(f["latitude"], "double"),
        "coordinates_given": (F.coalesce(F.length(f["longitude"]), F.lit(0)) > 0)
        | (F.coalesce(F.length(f["latitude"]), F.lit(0)) > 0),
        "accuracy": number(f["accuracy"], "int"), "marker": number(f["marker"], "int"),
    }
    ok = F.col(REASON).isNull()
    labelled = lines.select(raw.alias("raw"), "source_file", "position", reason.alias(REASON),
                            *(v.alias(k) for k, v in typed.items()))
    return labelled.select(
        *(F.when(ok, F.col(c)).alias(c) if c in typed else F.col(c) for c in PARSED),
        F.when(~ok, F.col("raw")).alias("raw"), REASON,
        F.when(ok, F.date_format("upload_time", "yyyy-MM")).alias(MONTH),
        (F.element_at(F.create_map(*(F.lit(x) for kv in sources.items() for x in kv)), F.col("source_file")) if sources
         else F.substring(F.sha1("source_file"), 1, 16)).alias("source"))


def changed(manifest: dict | None, file: InputFile) -> bool:
    return manifest is None or (manifest["size"], manifest["mtime"]) != (file.size, file.mtime)


def _parse(spark, lake: Lake, files: list[InputFile], layout: int | None, chunk_bytes: int) -> None:
    """Parse ``files`` in one Spark job, check each file's counts, then commit both tables once."""
    from pyspark.sql import functions as F

    layouts = {f.path: detect_layout(f.path, layout) for f in files}
    ids = {f.path: source_id(f.path) for f in files}
    data, rejects = catalog.new_data_folder(lake, TABLE), catalog.new_data_folder(lake, REJECTS)
    counts = lake.path("_scratch", f"parse-counts-{data.rsplit('/', 1)[-1]}")
    try:
        frames = [transform(read_lines(spark, [p for p, n in layouts.items() if n == want], chunk_bytes, counts), want, ids)
                  for want in sorted(set(layouts.values()))]
        df = frames[0]
        for more in frames[1:]:
            df = df.unionByName(more)
        t0 = time.monotonic()
        write_parquet(df.select("*", *(F.col(c).alias(FOLDER + c) for c in PARTITIONS)), data,
                      tuple(FOLDER + c for c in PARTITIONS))
        t1 = time.monotonic()
        lines = read_counts(counts)
        for sid in ids.values():  # unparseable lines: to the rejects table's own data folder
            found = f"{data}/{FOLDER}source={sid}/{FOLDER}{MONTH}={REJECTED}"
            if lake.exists(found):
                lake.move(found, f"{rejects}/{FOLDER}source={sid}")
        good, bad = lake.files(data, ".parquet"), lake.files(rejects, ".parquet")
        reasons = Counter()
        if bad:
            for r in spark.read.parquet(*bad).groupBy("source", REASON).count().collect():
                reasons[(r["source"], r[REASON])] = r["count"]
        entries, rows = {}, ledger.file_rows(lake, good)
        for file in files:
            sid = ids[file.path]
            months = _rows_by_month({f: n for f, n in rows.items() if f"/{FOLDER}source={sid}/" in f})
            entries[sid] = ledger.record(lake, "parse", sid, lines.get(file.path, 0), sum(months.values()),
                                         {r: n for (s, r), n in reasons.items() if s == sid},
                                         path=file.path, layout=layouts[file.path], months=months)
        schema = arrow_schema(df)
    except BaseException:
        for folder in (data, rejects):
            lake.delete(folder)
        raise
    finally:
        lake.delete(counts)
    changed = In("source", sorted(ids.values()))
    summary = {"stage": "parse", "scope": "input", "files": sorted(ids), "in": sum(e["in"] for e in entries.values()),
               "out": sum(e["out"] for e in entries.values()), "rejected": sum(e["rejected"] for e in entries.values())}
    catalog.commit(lake, TABLE, good, changed, PARTITIONS, schema, summary)
    catalog.commit(lake, REJECTS, bad, changed, ("source",), schema, summary)
    for file in files:  # last: a file whose manifest is missing is parsed again
        entry = entries[ids[file.path]]
        lake.write_json(f"{SOURCES}/{ids[file.path]}.json", {
            "path": file.path, "size": file.size, "mtime": file.mtime, "layout": layouts[file.path],
            "in": entry["in"], "out": entry["out"], "rejects": entry["rejects"], "months": entry["months"]})
        log.info("parse: %s -> %d rows, %d rejected", file.path, entry["out"], entry["rejected"])
    log.info("parse: parsed and written in %.1f s, checked and committed in %.1f s", t1 - t0, time.monotonic() - t1)


def _rows_by_month(rows: dict[str, int]) -> dict[str, int]:
    """Rows per upload month, from the rows of each written file."""
    out: Counter = Counter()
    for f, n in rows.items():
        out[month_of_file(f)] += n
    return dict(sorted(out.items()))


def _manifests(lake: Lake) -> dict[str, dict]:
    """Source id -> manifest of every file the parsed table holds."""
    names = [n for n in lake.listdir(lake.path(SOURCES)) if n.endswith(".json")]
    return {n[:-5]: lake.read_json(f"{SOURCES}/{n}") for n in names}


def _basis(lake: Lake) -> list[list]:
    """What the parsed table holds: (source id, size, modification time) of every parsed file."""
    return sorted([sid, m["size"], m["mtime"]] for sid, m in _manifests(lake).items())


def _prune(lake: Lake, gone: dict[str, dict]) -> None:
    """Remove the rows, rejects, ledgers and manifests of files no longer among the inputs."""
    which = In("source", sorted(gone))
    for table, partitions in ((TABLE, PARTITIONS), (REJECTS, ("source",))):
        if catalog.load(lake, table) is not None:
            catalog.commit(lake, table, [], which, partitions, None, {"stage": "parse", "scope": "prune",
                                                                      "files": sorted(gone)})
    for sid, manifest in sorted(gone.items()):
        lake.delete(lake.path(ledger.location("parse", sid)))
        lake.delete(lake.path(SOURCES, f"{sid}.json"))  # last: a failed prune is redone
        log.info("parse: pruned %s (%d rows)", manifest["path"], manifest["out"])


def find_duplicates(spark, lake: Lake, basis: list[list]) -> int:
    """Publish ``duplicates`` (photo_id, first_file, first_position) for every id that occurs more than
    once in the whole parsed table, with the ``basis`` it was computed on; return how many ids repeat."""
    from pyspark.sql import functions as F

    from deeploc.storage.slice_io import read_files

    table = catalog.plan(lake, TABLE)
    version = commit.new_version(lake, DUPLICATES)
    try:
        rows = read_files(spark, table.files, table.arrow_schema)
        # The ids alone first (one narrow column: real inputs repeat few or none), then the first
        # occurrence of just those.
        ids = rows.groupBy("photo_id").count().filter("count > 1").select("photo_id")
        first = F.min(F.struct("source_file", "position"))
        repeated = (rows.select("photo_id", "source_file", "position").join(F.broadcast(ids), "photo_id")
                    .groupBy("photo_id").agg(first.alias("first"))
                    .select("photo_id", F.col("first.source_file").alias("first_file"),
                            F.col("first.position").alias("first_position")))
        write_parquet(repeated.coalesce(1), version)
        lake.write_bytes(f"{version}/basis.json", json.dumps({"basis": basis, "snapshot": table.snapshot_id}).encode())
        n = ledger.footer_rows(lake, lake.files(version, ".parquet"))
    except BaseException:
        lake.delete(version)
        raise
    commit.make_current(lake, DUPLICATES, version)
    return n


def _input_ledger(lake: Lake, files: list[InputFile], parsed_now: int, duplicates: int | None,
                  earlier: dict[str, dict]) -> dict:
    """One ledger over the whole current input, from the files' manifests; ``earlier``: the manifests of
    files still in the table but not among the inputs."""
    manifests = [lake.read_json(f"{SOURCES}/{source_id(f.path)}.json") for f in files]
    rejects: Counter = Counter()
    months: Counter = Counter()
    for m in manifests:
        rejects.update(m["rejects"])
        months.update(m["months"])
    before = sum(n for month, n in months.items() if month < SPAN[0])
    after = sum(n for month, n in months.items() if month >= SPAN[1])
    extra = {"files": len(files), "parsed_now": parsed_now, "first_month": min(months, default=None),
             "last_month": max(months, default=None), "rows_before_2004": before, "rows_after_2014": after,
             "earlier_files": len(earlier), "earlier_rows": sum(m["out"] for m in earlier.values())}
    if duplicates is not None:
        extra["repeated_photo_ids"] = duplicates
    return ledger.record(lake, "parse", "input", sum(m["in"] for m in manifests), sum(m["out"] for m in manifests),
                         dict(rejects), **extra)


def run(input: list[str], lake: str, layout: int | None = None, chunk_mb: int = 64, prune: bool = False) -> dict:
    """Parse what changed among ``input`` (files, folders or globs) into the lake; with ``prune``, drop
    the files parsed earlier that are no longer among the inputs. Return the ledger over the whole input."""
    from deeploc.spark import session

    lake_ = Lake(lake)
    files = list_inputs(input)
    with lake_.lock("parse", LOCK_WAIT_S):
        todo = []
        for file in files:
            known = f"{SOURCES}/{source_id(file.path)}.json"
            if changed(lake_.read_json_or_none(known), file):
                todo.append(file)
        current = {source_id(f.path) for f in files}
        earlier = {sid: m for sid, m in _manifests(lake_).items() if sid not in current}
        log.info("parse: %d input file(s), %d new or changed, %d parsed earlier and not in the input%s",
                 len(files), len(todo), len(earlier), " (pruned)" if prune and earlier else "")
        if prune and earlier:
            _prune(lake_, earlier)
            earlier = {}
        if todo:
            _parse(session("deeploc-parse"), lake_, todo, layout, chunk_mb << 20)
        basis, duplicates = _basis(lake_), None
        done = commit.current(lake_, DUPLICATES)
        if done is None or json.loads(lake_.read_bytes(f"{done}/basis.json"))["basis"] != basis:  # the table changed
            t0 = time.monotonic()
            duplicates = find_duplicates(session("deeploc-parse"), lake_, basis)
            log.info("parse: %d repeated photo ids found in %.1f s", duplicates, time.monotonic() - t0)
        return _input_ledger(lake_, files, len(todo), duplicates, earlier)
