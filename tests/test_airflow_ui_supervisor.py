"""``./dev ui``'s supervisor with real processes: a service that exits is started again, a service that
keeps exiting stops everything once its restarts run out, and ``stop`` ends every service: a second SIGTERM
after its patience, SIGKILL after its timeout."""

import io
import sys
import threading
import time
from pathlib import Path

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from airflow_ui import Supervisor  # noqa: E402


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_an_exited_service_is_started_again_and_stop_ends_all(tmp_path: Path):
    starts = tmp_path / "starts"
    # "crashy" appends a line per start and exits at once on its first two starts, then stays up.
    crashy = _py(f"import time; p = {str(starts)!r}; open(p, 'a').write('x\\n'); "
                 f"n = len(open(p).read().split()); print('start', n, flush=True); "
                 f"time.sleep(0 if n < 3 else 600)")
    out = io.StringIO()
    sup = Supervisor({"steady": _py("import time; print('up', flush=True); time.sleep(600)"), "crashy": crashy},
                     out=out)
    thread = threading.Thread(target=sup.run, kwargs={"poll_s": 0.1}, daemon=True)
    thread.start()
    for _ in range(100):
        if starts.exists() and len(starts.read_text().split()) >= 3:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    assert len(starts.read_text().split()) == 3
    steady = sup.procs["steady"]
    sup.stop(timeout_s=10)
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert all(p.poll() is not None for p in sup.procs.values()) and steady.poll() is not None
    text = out.getvalue()
    assert text.count("crashy exited (code 0); starting it again") == 2
    assert "   steady | up" in text and "   crashy | start 3" in text


def test_stop_signals_again_then_kills(tmp_path: Path):
    """Like Airflow's services, "twice" stops only at its second SIGTERM (its exit code: the signals it
    saw); "deaf" ignores SIGTERM and is killed at the timeout."""
    twice = _py("import signal, sys, time\nseen = []\ndef on_term(*_):\n    seen.append(1)\n"
                "    if len(seen) == 2: sys.exit(len(seen))\n"
                "signal.signal(signal.SIGTERM, on_term); print('ready', flush=True)\n"
                "while True: time.sleep(0.05)")
    deaf = _py("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
               "time.sleep(600)")
    out = io.StringIO()
    sup = Supervisor({"twice": twice, "deaf": deaf}, out=out)
    thread = threading.Thread(target=sup.run, kwargs={"poll_s": 0.1}, daemon=True)
    thread.start()
    for _ in range(100):
        if out.getvalue().count("| ready") == 2:
            break
        time.sleep(0.1)
    t0 = time.monotonic()
    sup.stop(patience_s=0.5, timeout_s=3)
    took = time.monotonic() - t0
    thread.join(timeout=10)
    assert sup.procs["twice"].returncode == 2 and sup.procs["deaf"].returncode == -9
    assert 3 <= took < 15, took  # killed at its timeout, not at the default 30 s


def test_a_service_that_keeps_exiting_stops_everything(tmp_path: Path):
    out = io.StringIO()
    sup = Supervisor({"steady": _py("import time; time.sleep(600)"), "broken": _py("raise SystemExit(3)")},
                     max_restarts=2, window_s=60, out=out)
    assert sup.run(poll_s=0.1) == 1
    assert sup.procs["steady"].poll() is not None
    assert out.getvalue().count("broken exited (code 3); starting it again") == 2
    assert "broken exited (code 3) after 2 restarts within 60 s; stopping everything" in out.getvalue()


def test_what_a_killed_service_forked_goes_with_it(tmp_path: Path):
    """A service killed hard leaves its children (the scheduler's executor workers); they are ended
    before it starts again."""
    pid_file = tmp_path / "child"
    parent = _py("import subprocess, sys, time, os, pathlib; "
                 "c = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
                 "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)']); "
                 f"pathlib.Path({str(pid_file)!r}).write_text(str(c.pid)); os._exit(9)")
    sup = Supervisor({"parent": parent}, max_restarts=1, window_s=60, out=io.StringIO())
    assert sup.run(poll_s=0.2) == 1
    child = int(pid_file.read_text())
    for _ in range(50):
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the service's child outlived it")
