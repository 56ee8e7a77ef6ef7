"""``deeploc``: one subcommand per stage, plus ``demo-data``.

The same argument lists run in-process on the local target and as ``spark-submit`` EMR steps on the
aws target (see ``plugins/deeploc_airflow/stage.py``), so a stage is tested once for both.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _slice_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", help="slice start (ISO date, a month start, UTC); omit for the beginning")
    p.add_argument("--end", help="slice end, exclusive (ISO date, a month start, UTC); omit for no end")


def _lake(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", required=True, help="lake root: a local folder")


def _bucket(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bucket", required=True,
                   help="image bucket root: a local folder laid out like s3://multimedia-commons/, or s3://bucket[/prefix]")
    p.add_argument("--unsigned", action="store_true", help="anonymous S3 requests (the public multimedia-commons bucket)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS, or DEEPLOC_S3_ENDPOINT_URL)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="deeploc", description=__doc__.splitlines()[0])
    ap.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="generate the demo data set (metadata, bucket folder, manifest)")
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=3000, help="metadata lines (default 3000)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--files", type=int, default=4, help="number of bz2 metadata files")
    p.add_argument("--reuse", action="store_true", help="keep an existing set made with the same parameters")
    p.add_argument("--no-images", action="store_true", help="metadata only (for benchmarks)")

    p = sub.add_parser("metadata", help="YFCC100M metadata files -> metadata/ + rejects (Spark)")
    p.add_argument("--input", nargs="+", required=True,
                   help="metadata files, folders or globs, local or s3:// (bz2, gz or plain)")
    p.add_argument("--layout", type=int, choices=(23, 25), help="force the column layout (default: detect)")
    p.add_argument("--split-mb", type=int, default=64,
                   help="input split size: one Spark task per split (default 64; smaller for more cores)")
    _lake(p)
    _slice_args(p)

    p = sub.add_parser("availability", help="metadata/ + bucket listing -> images/ + rejects (Spark)")
    p.add_argument("--min-bytes", type=int, default=1024, help="smallest usable object (default 1024)")
    p.add_argument("--check", choices=("auto", "list", "head"), default="auto",
                   help="list prefixes, HEAD each object, or choose by request count (default)")
    p.add_argument("--objects-per-prefix", type=int, default=24_400,
                   help="estimated objects per prefix in the bucket, for --check auto (default: the real bucket's)")
    p.add_argument("--listing-max-age", type=float, default=24 * 30,
                   help="hours a cached S3 listing of a prefix is reused by later slices (default 720)")
    _lake(p)
    _bucket(p)
    _slice_args(p)

    p = sub.add_parser("faces", help="images/ -> faces/ with the face ratio + rejects (Spark, OpenCV)")
    _lake(p)
    _bucket(p)
    _slice_args(p)

    p = sub.add_parser("partition", help="faces/ -> partitions/<dataset>/ (S2 cells, labels, hierarchy, split)")
    p.add_argument("--dataset", default="full", choices=("full", "removal"))
    p.add_argument("--partitions", help="name:tau_min:tau_max,... coarse to fine (default: the profile's)")
    p.add_argument("--profile", default="demo")
    p.add_argument("--face-threshold", type=float, default=0.035)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--val-fraction", type=float, default=0.2)
    _lake(p)

    p = sub.add_parser("train", help="partitions/<dataset>/ + images -> models/<run>/ (TensorFlow)")
    p.add_argument("--run", required=True, help="model run name")
    p.add_argument("--dataset", default="full", choices=("full", "removal"))
    p.add_argument("--profile", default="demo", help="demo or yfcc")
    p.add_argument("--epochs", type=int)
    p.add_argument("--backbone", help="small_cnn or a keras.applications name (e.g. ResNet101V2)")
    p.add_argument("--weights", help="imagenet, a local weights file, or none")
    _lake(p)
    _bucket(p)

    p = sub.add_parser("infer", help="models/<run>/ + images -> predictions/<run>/ (Spark + TensorFlow)")
    p.add_argument("--run", help="model run (default: the latest)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--top-k", type=int, default=5)
    _lake(p)
    _bucket(p)

    p = sub.add_parser("evaluate", help="predictions/<run>/ -> metrics/<run>/ (accuracy at 1..2500 km)")
    p.add_argument("--run")
    _lake(p)

    p = sub.add_parser("publish", help="predictions + metrics -> site/ (the web map)")
    p.add_argument("--run")
    p.add_argument("--max-points", type=int, default=1000)
    _lake(p)
    _bucket(p)
    return ap


def dispatch(a: argparse.Namespace):
    """Run the chosen stage; imports are lazy so ``--help`` stays fast."""
    if hasattr(a, "bucket"):
        from deeploc.bucket import Bucket
        a.bucket = Bucket.of(a.bucket, a.unsigned, a.endpoint_url)
    if a.command == "demo-data":
        from deeploc.demo.generate import generate
        return generate(a.out, rows=a.rows, seed=a.seed, files=a.files, reuse=a.reuse, images=not a.no_images)["expected"]
    if a.command == "metadata":
        from deeploc.stages import metadata
        return metadata.run(a.input, a.lake, a.start, a.end, a.layout, a.split_mb)
    if a.command == "availability":
        from deeploc.stages import availability
        return availability.run(a.lake, a.bucket, a.start, a.end, a.min_bytes, a.check, a.objects_per_prefix,
                                 a.listing_max_age)
    if a.command == "faces":
        from deeploc.stages import faces
        return faces.run(a.lake, a.bucket, a.start, a.end)
    if a.command == "partition":
        from deeploc import profiles
        from deeploc.stages import partition
        spec = a.partitions or profiles.get(a.profile).partitions
        return partition.run(a.lake, a.dataset, spec, a.face_threshold, a.test_fraction, a.val_fraction)
    if a.command == "train":
        from deeploc.stages import train
        return train.run(a.lake, a.bucket, a.run, a.dataset, a.profile, a.epochs, a.backbone, a.weights)
    if a.command == "infer":
        from deeploc.stages import infer
        return infer.run(a.lake, a.bucket, a.run, a.split, a.top_k)
    if a.command == "evaluate":
        from deeploc.stages import evaluate
        return evaluate.run(a.lake, a.run)
    if a.command == "publish":
        from deeploc.stages import publish
        return publish.run(a.lake, a.bucket, a.run, a.max_points)
    raise AssertionError(a.command)


def run(argv: list[str]):
    """Run a stage from its argument list and return its result (ledger or summary): what operators call."""
    a = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if a.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return dispatch(a)


def main(argv: list[str] | None = None) -> int:
    """The ``deeploc`` command: run the stage, print its result as JSON on stdout."""
    print(json.dumps(run(sys.argv[1:] if argv is None else argv), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
