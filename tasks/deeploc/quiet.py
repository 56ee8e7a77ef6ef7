"""``deeploc -q``: drop the start-up lines native libraries write straight to the process's stderr.

TensorFlow logs through absl before anything can configure it (``TF_CPP_MIN_LOG_LEVEL`` no longer
reaches those lines), and Spark's JVM prints its log4j banner; neither goes through Python's logging.
So under ``-q`` file descriptor 2 becomes a pipe, and a thread passes on every line but those.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

NATIVE_LINE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "       # absl: I1202 11:30:55.123456 4567 port.cc:153]
    rb"|To enable the following instructions: "                 # the second line of cpu_feature_guard's
    rb"|Using Spark's default log4j profile"
    rb"|WARNING: Using incubator modules: "                    # the JVM's, as Spark starts
    rb"|Setting default log level to "
    rb"|To adjust logging level use sc\.setLogLevel"
    rb"|\d\d/\d\d/\d\d \d\d:\d\d:\d\d WARN NativeCodeLoader: )")


def drop_native_start_up_lines() -> None:
    """From now on, lines of stderr (this process's and its children's) that match ``NATIVE_LINE`` are
    dropped; the rest pass unchanged. Spark's hostname warnings are avoided at their source."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    sys.stderr.flush()
    original = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def pump():
        with os.fdopen(read, "rb") as pipe:
            for line in pipe:
                if not NATIVE_LINE.match(line):
                    os.write(original, line)

    thread = threading.Thread(target=pump, name="deeploc-quiet-stderr", daemon=True)
    thread.start()

    def restore():
        """At exit: what is in the pipe drains at once; a child still holding it (Spark's JVM lives
        until this process ends) must not hold the exit up."""
        sys.stderr.flush()
        os.dup2(original, 2)
        thread.join(timeout=1)

    atexit.register(restore)
