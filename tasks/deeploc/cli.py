"""``deeploc``: one subcommand per stage (from ``deeploc.registry``), plus ``demo-data``.

The same argument lists run in-process on the local target and as EMR steps or the training
instance's command on the aws target (``plugins/deeploc_airflow``), so a stage is tested once for both.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from deeploc import registry


def _demo_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=3000, help="metadata lines (default 3000)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--files", type=int, default=4, help="number of bz2 metadata files")
    p.add_argument("--reuse", action="store_true", help="keep an existing set made with the same parameters")
    p.add_argument("--no-images", action="store_true", help="metadata only (for benchmarks)")
    p.add_argument("--years", type=_years, default="2004-2014",
                   help="first and last upload year of the photos, e.g. 2007-2011 (default 2004-2014)")


def _years(text: str) -> tuple[int, int]:
    from deeploc.demo.generate import year_span

    try:
        return year_span(text)
    except ValueError as exc:  # argparse's one-line usage error, not a traceback
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run_demo_data(a: argparse.Namespace):
    from deeploc.demo.generate import generate

    return generate(a.out, rows=a.rows, seed=a.seed, files=a.files, reuse=a.reuse, images=not a.no_images,
                    years=a.years)["expected"]


def _predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("photos", nargs="+", help="JPEG or PNG files")
    p.add_argument("--lake", required=True, help="lake root holding the model run")
    p.add_argument("--run", help="model run (default: the latest)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--crops", type=int, default=1, choices=(1, 5))


def _run_predict(a: argparse.Namespace):
    from deeploc.earth import geography
    from deeploc.learn.predict import cached, predict_bytes
    from deeploc.storage import runs
    from deeploc.storage.lake import Lake

    lake = Lake(a.lake)
    predictor = cached(lake.root, runs.resolve(lake, a.run))
    out = []
    for path in a.photos:
        with open(path, "rb") as f:
            out.append({"photo": path, **predict_bytes(predictor, f.read(), a.top_k, a.crops)})
    geography.annotate([o for rec in out for key, o in rec.items() if key != "photo"])  # each output's place
    return out


def _compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--lake", required=True, help="lake root holding both runs' models and predictions")


def _run_compare(a: argparse.Namespace):
    from deeploc.learn import compare

    return compare.run(a.lake, a.run_a, a.run_b)


def _point(text: str) -> tuple[float, float]:
    try:
        lat, lon = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LAT,LON (e.g. 48.8584,2.2945)") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise argparse.ArgumentTypeError(f"{text!r}: latitude must be within ±90 and longitude within ±180")
    return lat, lon


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("points", nargs="+", type=_point, metavar="LAT,LON", help="decimal degrees, e.g. 41.0082,28.9784")


def _run_where(a: argparse.Namespace):
    from deeploc.earth import geography

    return geography.annotate([{"lat": lat, "lon": lon} for lat, lon in a.points])


def _serve(p: argparse.ArgumentParser) -> None:
    from deeploc.web.serve import Limits

    p.add_argument("--lake", required=True, help="lake root holding site/ and the model run")
    p.add_argument("--run", help="model run for uploads (default: the run the site shows)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port, printed at start)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a Host name clients use (repeat for several); required unless bound to loopback")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port, each with the model")
    limits = Limits()
    for field, help_ in (("threads", "photos predicted at once per process"),
                         ("queue", "uploads waiting for a thread; beyond: 503 with Retry-After"),
                         ("max_upload_mb", "largest photo file, MB"), ("max_pixels", "largest photo, pixels"),
                         ("read_timeout_s", "longest silence while a photo is uploaded, seconds"),
                         ("header_timeout_s", "time for a request's headers, seconds"),
                         ("max_connections", "open connections per process")):
        default = getattr(limits, field)
        p.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default,
                       help=f"{help_} (default: {default})")


def _run_serve(a: argparse.Namespace):
    import dataclasses

    from deeploc.web.serve import Limits, serve, Settings

    limits = Limits(**{f.name: getattr(a, f.name) for f in dataclasses.fields(Limits) if hasattr(a, f.name)})
    serve(Settings(a.lake, a.run, a.host, a.port, tuple(a.allowed_host), limits), a.workers)
    return {"stopped": True}


def _tables(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", required=True, help="lake root: a local folder or s3://bucket/prefix")
    p.add_argument("--json", action="store_true", help="JSON on stdout instead of a table")
    p.add_argument("--history", metavar="TABLE", help="one table's snapshots, with the run and counts of each")


def _run_tables(a: argparse.Namespace):
    from deeploc.storage import catalog
    from deeploc.storage.lake import Lake

    lake = Lake(a.lake)
    rows = catalog.history(lake, a.history.split(".")[-1]) if a.history else catalog.describe(lake)
    if a.json:
        return rows
    columns = (["snapshot_id", "current", "committed_at", "operation", "stage", "scope", "rows", "added_rows",
                "removed_rows", "in", "out", "rejected"] if a.history else
               ["table", "snapshot_id", "rows", "files", "bytes", "snapshots", "metadata_location"])
    text = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(columns)]
    for line in [columns, *text]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())
    return None


# The plan takes the options of the stages it sizes, as they declare them.
PLANNED = {"partitioning": ("profile", "image_set", "face_threshold", "partitionings", "split_by", "max_images"),
           "train": ("epochs",), "availability": ("bucket", "unsigned", "endpoint_url")}


def _plan(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", required=True, help="lake root: a local folder or s3://bucket/prefix")
    for stage, names in PLANNED.items():
        for name in names:
            registry.get(stage).option(name).add_to(p)
    p.add_argument("--target", choices=("local", "aws"), default="local",
                   help="aws: also ask the account (quotas, AMI, subnets, roles, buckets); settings from DEEPLOC_AWS")
    p.add_argument("--budget", help='what an unattended run may spend, as JSON: {"photos": N, "dollars": D}')


def _run_plan(a: argparse.Namespace):
    from deeploc import aws_config, plan
    from deeploc.sources.bucket import Bucket
    from deeploc.storage.lake import Lake

    made = plan.model(Lake(a.lake), Bucket.of(a.bucket, a.unsigned, a.endpoint_url), a.profile, a.target,
                      aws_config.from_environment(), image_set=a.image_set, face_threshold=a.face_threshold,
                      partitionings=a.partitionings, max_images=a.max_images, split_by=a.split_by, epochs=a.epochs,
                      budget=json.loads(a.budget) if a.budget else None)
    print(plan.text(made), file=sys.stderr)
    return made


# Commands that are not pipeline stages: (help, add options, run).
TOOLS = {"demo-data": ("generate the demo data set (metadata, bucket folder, manifest)", _demo_data, _run_demo_data),
         "predict": ("where were these photos taken? the top-k cells of every output, as JSON", _predict, _run_predict),
         "serve": ("the web map on 127.0.0.1, with the upload of your own photo", _serve, _run_serve),
         "compare": ("two runs on the photos both predicted: differences with intervals that resample users, "
                     "McNemar's p (comparisons/A__B/)", _compare, _run_compare),
         "where": ("country (name, ISO code) and continent of points, as JSON (null at sea)", _where, _run_where),
         "plan": ("what a model run will need and cost, and whether it fits (exit 3 when a check fails)",
                  _plan, _run_plan),
         "tables": ("the lake's Iceberg tables: snapshot, rows, files, bytes, metadata location; or one's history",
                    _tables, _run_tables)}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="deeploc", description=__doc__.splitlines()[0])
    ap.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = ap.add_subparsers(dest="command", required=True)
    for stage in registry.STAGES.values():
        p = sub.add_parser(stage.name, help=stage.help, description=stage.help)
        for option in stage.options:
            option.add_to(p)
    for name, (help_text, add, _) in TOOLS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return ap


def _points_are_not_options(argv: list[str]) -> list[str]:
    """``where -33.86,151.21``: argparse would take the point for an option; mark where the points begin."""
    if "where" in argv and "--" not in argv:
        first = next((i for i in range(argv.index("where") + 1, len(argv)) if argv[i][:1] == "-" and argv[i][1:2].isdigit()),
                     None)
        if first is not None:
            return [*argv[:first], "--", *argv[first:]]
    return argv


def run(argv: list[str]):
    """Run a command from its argument list and return its result (ledger or summary): what operators call."""
    a = parser().parse_args(_points_are_not_options(argv))
    logging.basicConfig(level=logging.WARNING if a.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if a.command in TOOLS:
        return TOOLS[a.command][2](a)
    stage = registry.get(a.command)
    return stage.run(**{o.name: getattr(a, o.name) for o in stage.options})


def main(argv: list[str] | None = None) -> int:
    """The ``deeploc`` command: run it, print its result as JSON on stdout (commands that print their own
    output return None); exit 3 when the result says a check failed (``"ok": false``). A path that is
    missing or cannot be read is a one-line error naming it (exit 2; DEEPLOC_DEBUG=1 shows the traceback)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-q"], ["--quiet"]):  # the command owns its stderr (in-process callers of run() keep theirs)
        from deeploc.quiet import drop_native_start_up_lines

        drop_native_start_up_lines()
    try:
        result = run(argv)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        if os.environ.get("DEEPLOC_DEBUG") == "1":
            raise
        where = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
        print(f"deeploc: error: {where}", file=sys.stderr)
        return 2
    if result is not None:
        try:
            print(json.dumps(result, indent=2, default=str))
        except BrokenPipeError:  # `deeploc ... | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 3 if isinstance(result, dict) and result.get("ok") is False else 0


if __name__ == "__main__":
    sys.exit(main())
