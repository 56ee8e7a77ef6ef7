"""``./dev ui``: Airflow's four services on loopback, kept running.

``airflow standalone`` starts the same services but never restarts one that dies, and under SQLite
the scheduler does die now and then (SQLAlchemy ``StaleDataError`` on ``dag_run`` while runs are
created from the UI; apache/airflow#63926): the UI keeps answering while nothing is scheduled. This
supervisor restarts a service that exits, a bounded number of times, prefixes every output line with
the service's name, says when the UI is ready, and stops them all on Ctrl-C or SIGTERM, within a few seconds.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

SERVICES = ("scheduler", "dag-processor", "triggerer", "api-server")


def _pump(name: str, stream, out) -> None:
    """Copy a service's output line by line, each line prefixed with its name."""
    for raw in stream:
        out.write(f"{name:>13} | {raw.decode(errors='replace')}")
        out.flush()


class Supervisor:
    """Runs named commands; restarts one that exits, at most ``max_restarts`` within ``window_s``."""

    def __init__(self, commands: dict[str, list[str]], max_restarts: int = 5, window_s: float = 600,
                 out=sys.stdout):
        self.commands, self.max_restarts, self.window_s, self.out = commands, max_restarts, window_s, out
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: collections.deque[float] = collections.deque()
        self.stopping = threading.Event()

    def say(self, text: str) -> None:
        self.out.write(f"[deeploc] {text}\n")
        self.out.flush()

    def start(self, name: str) -> None:
        # Each service leads its own process group, so the workers it forked go with it.
        proc = subprocess.Popen(self.commands[name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        threading.Thread(target=_pump, args=(name, proc.stdout, self.out), daemon=True).start()
        self.procs[name] = proc

    def run(self, poll_s: float = 1.0, ready=None, ready_text: str = "ready") -> int:
        """Start every service and watch them until ``stop``; 1 when restarts ran out, else 0.
        ``ready()`` is polled until true, then ``ready_text`` is said once."""
        for name in self.commands:
            self.start(name)
        announced = False
        while not self.stopping.wait(poll_s):
            if ready and not announced and ready():
                announced = True
                self.say(ready_text)
            for name, proc in list(self.procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                now = time.monotonic()
                while self.restarts and now - self.restarts[0] > self.window_s:
                    self.restarts.popleft()
                if len(self.restarts) >= self.max_restarts:
                    self.say(f"{name} exited (code {code}) after {self.max_restarts} restarts within "
                             f"{self.window_s:.0f} s; stopping everything (its last lines are above)")
                    self.stop()
                    return 1
                _signal_group(proc, signal.SIGKILL)  # what the dead service left behind
                self.restarts.append(now)
                self.say(f"{name} exited (code {code}); starting it again")
                self.start(name)
        return 0

    def stop(self, patience_s: float = 2, timeout_s: float = 30) -> None:
        """Terminate every service; signal one still running after ``patience_s`` again; kill what is
        left after ``timeout_s``. Airflow's services take a second SIGTERM as "stop now": the scheduler
        stops waiting for its running tasks, and the triggerer for its trigger runner, a wait of up to
        10 s (seen taking all 10 s after runs, with Airflow 3.3). Its triggers live in the database, and
        the next triggerer takes them up."""
        self.stopping.set()
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        start = time.monotonic()
        for again, until in ((signal.SIGTERM, start + patience_s), (signal.SIGKILL, start + timeout_s)):
            for proc in self.procs.values():
                try:
                    proc.wait(timeout=max(0.01, until - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(proc, again)
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGKILL)  # whatever a service left behind in its group
            proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the API server's address, for the ready line")
    args = parser.parse_args()
    migrate = subprocess.run(["airflow", "db", "migrate"], capture_output=True, text=True)
    if migrate.returncode:
        sys.stderr.write(migrate.stdout[-3000:] + migrate.stderr[-3000:])
        return migrate.returncode
    supervisor = Supervisor({name: ["airflow", name] for name in SERVICES})

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{args.url}/api/v2/monitor/health", timeout=2):
                return True
        except OSError:
            return False

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.stopping.set())
    code = supervisor.run(ready=ready, ready_text=f"the Airflow UI is ready on {args.url} (Ctrl-C stops it)")
    supervisor.stop()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
