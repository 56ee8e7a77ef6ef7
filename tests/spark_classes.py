"""A class-data-sharing archive for the suite's Spark JVMs: the classes a short job of the stages' kinds
loads (text and Parquet I/O, a window, a join, an Arrow batch through Python), dumped once per checkout
by a JVM run with ``-XX:ArchiveClassesAtExit``, in the background while the first tests run. JVMs
started with it map those classes instead of reading and verifying them from Spark's jars: a session, a
partitioned write and a read cost 8.6 -> 5.3 core-seconds on this project's 2-core machine. The archive
only serves a JVM with the classpath it was made with, so its name carries everything that shapes that
classpath; a JVM that cannot use it, or starts before it is there, runs as it would without it."""

from __future__ import annotations

import bz2
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The job whose loaded classes go into the archive; argv: an output folder, a bz2 text file.
JOB = """
import sys
from pyspark.sql import functions as F, Window
from deeploc.spark import session

spark = session("class-archive")
f = F.split("value", "\\t")
rows = spark.read.text(sys.argv[2]).select(f[0].cast("long").alias("id"), f[1].alias("s"))
rows = rows.withColumn("k", F.col("id") % 7).withColumn("r", F.row_number().over(Window.partitionBy("k").orderBy("id")))
rows = rows.join(rows.groupBy("k").agg(F.count("*").alias("n")), "k")
rows.mapInPandas(lambda frames: frames, rows.schema).write.mode("overwrite").partitionBy("k").parquet(sys.argv[1])
spark.read.parquet(sys.argv[1]).where("k = 1").toPandas()
spark.stop()
"""


def _key(jvm_flags: str) -> str:
    """What the archive depends on: the JVM, Spark's jars, the project's own jar, the flags."""
    import pyspark

    from deeploc.spark import localfs_jar

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    jar = localfs_jar()
    parts = [java, pyspark.__version__, pyspark.__file__, sys.executable, jvm_flags,
             f"{jar}:{os.path.getmtime(jar)}:{os.path.getsize(jar)}" if jar else ""]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def archive(folder: Path, jvm_flags: str) -> Path | None:
    """Where the archive for these flags is in ``folder``; if it is not there yet, a process of its own makes
    it (~25 s; its log: ``make.log``) while the tests start, and finishes even if they end first. A JVM
    started before it is in place runs without it. None: no Java, or a cache folder it cannot write."""
    try:
        path = folder / f"spark-{_key(jvm_flags)}.jsa"
        if not path.exists():
            _start(path, jvm_flags)
    except OSError as err:  # no java on PATH (Spark's tests say so), or a cache folder it cannot write
        print(f"[tests] no Spark class archive: {err}", file=sys.stderr)
        return None
    return path


def _start(path: Path, jvm_flags: str) -> None:
    for old in path.parent.glob("spark-*.jsa"):  # another classpath's: of no use to this checkout
        old.unlink(missing_ok=True)
    partials = {p: time.time() - p.stat().st_mtime for p in path.parent.glob("spark-*.partial")}
    for p in (p for p, age in partials.items() if age > 3600):  # left by a dump that was killed
        p.unlink(missing_ok=True)
    if not any(p.name.startswith(path.stem) and age < 600 for p, age in partials.items()):  # none under way
        with open(path.parent / "make.log", "w") as log:
            subprocess.Popen([sys.executable, __file__, str(path), jvm_flags], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, start_new_session=True)


def _make(path: Path, jvm_flags: str) -> None:
    with tempfile.TemporaryDirectory() as work:
        text = Path(work) / "rows.bz2"
        text.write_bytes(bz2.compress("".join(f"{i}\trow {i}\n" for i in range(2000)).encode()))
        partial = path.with_suffix(f".{os.getpid()}.partial")  # beside it: os.replace stays on one disk
        args = f"--driver-java-options '{jvm_flags} -XX:ArchiveClassesAtExit={partial}' pyspark-shell"
        res = subprocess.run([sys.executable, "-c", JOB, str(Path(work) / "out"), str(text)],
                             env={**os.environ, "PYSPARK_SUBMIT_ARGS": args}, capture_output=True, text=True)
        if res.returncode != 0 or not partial.exists():
            sys.exit(f"no Spark class archive (the job failed): {res.stderr[-2000:]}")
        os.replace(partial, path)  # whole or absent, also for the JVMs starting meanwhile


if __name__ == "__main__":
    _make(Path(sys.argv[1]), sys.argv[2])
