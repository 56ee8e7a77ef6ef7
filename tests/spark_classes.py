"""A class-data-sharing archive for the suite's Spark JVMs: the classes a short job of the stages' kinds
loads (text and Parquet I/O, a window, a join, an Arrow batch through Python), dumped once per checkout
by a JVM run with ``-XX:ArchiveClassesAtExit``. JVMs started with it map those classes instead of
reading and verifying them from Spark's jars: a session, a partitioned write and a read cost 8.6 -> 5.3
core-seconds on this project's 2-core machine. The archive only serves a JVM with the classpath it was
made with, so its name carries everything that shapes that classpath; a JVM that cannot use it starts
as it would without it."""

from __future__ import annotations

import bz2
import hashlib
import os
import subprocess
import sys
import tempfile
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
    """The archive for these flags in ``folder``, made now if missing (~15 s); None if it could not be."""
    try:
        path = folder / f"spark-{_key(jvm_flags)}.jsa"
    except OSError as err:  # no java on PATH: Spark would not start either, and its tests say so
        print(f"[tests] no Spark class archive: {err}", file=sys.stderr)
        return None
    if path.exists():
        return path
    for old in folder.glob("spark-*.jsa"):  # another classpath's: of no use to this checkout
        old.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as work:
        text = Path(work) / "rows.bz2"
        text.write_bytes(bz2.compress("".join(f"{i}\trow {i}\n" for i in range(2000)).encode()))
        partial = path.with_suffix(f".{os.getpid()}.partial")  # beside it: os.replace stays on one disk
        args = f"--driver-java-options '{jvm_flags} -XX:ArchiveClassesAtExit={partial}' pyspark-shell"
        res = subprocess.run([sys.executable, "-c", JOB, str(Path(work) / "out"), str(text)],
                             env={**os.environ, "PYSPARK_SUBMIT_ARGS": args}, capture_output=True, text=True)
        if res.returncode != 0 or not partial.exists():
            print(f"[tests] no Spark class archive (the job failed): {res.stderr[-2000:]}", file=sys.stderr)
            return None
        os.replace(partial, path)  # whole or absent, also when two sessions make it at once
    return path
