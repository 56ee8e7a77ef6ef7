"""Run one stage where Airflow cannot see it (an EMR step, the training instance) and leave its result
as a small JSON file the orchestrator reads: ``python -m deeploc.step RESULT_URI <stage> [options]``.

The result says whether a failure is worth a retry. Bad arguments, missing inputs ("run X first"),
refused values and ledgers that do not add up fail the same way every time: ``terminal``. Anything
else (a lost node, S3 throttling, out of memory) may pass on a second try. A SIGTERM (the training
instance's spot reclaim notice, or a timeout) interrupts the stage: it is recorded as worth another try,
and training keeps a checkpoint of where it stopped (``deeploc.stages.train``).
"""

from __future__ import annotations

import json
import signal
import sys
import traceback

from deeploc.storage.ledger import LedgerError
from deeploc.storage.uris import filesystem

TERMINAL = (ValueError, FileNotFoundError, LedgerError)


class Interrupted(Exception):
    """The machine is going away (a spot reclaim notice: SIGTERM); the next try resumes."""


def _interrupt(signum, frame):
    raise Interrupted("SIGTERM: the instance is being reclaimed or stopped; the next try resumes")


def write_result(uri: str, result: dict) -> None:
    fs, path = filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path, compression=None) as f:
        f.write(json.dumps(result, default=str).encode())


def run_and_record(result_uri: str, argv: list[str]) -> int:
    from deeploc.cli import run

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = run(argv)
    except SystemExit as exc:  # argparse refused the arguments
        if exc.code in (0, None):
            raise
        write_result(result_uri, {"ok": False, "terminal": True, "error": f"bad arguments: {' '.join(argv)}"})
        return 2
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded, then reported by the exit status
        terminal = isinstance(exc, TERMINAL)
        tail = "".join(traceback.format_exception(exc)[-3:])[-2000:]
        write_result(result_uri, {"ok": False, "terminal": terminal, "error": f"{type(exc).__name__}: {exc}",
                                  "traceback": tail})
        traceback.print_exc()
        return 3 if terminal else 1
    write_result(result_uri, {"ok": True, "result": outcome})
    print(json.dumps(outcome, indent=2, default=str))
    return 0


if __name__ == "__main__":
    # Run as the imported module, not as __main__: the stages catch deeploc.step.Interrupted, which
    # would otherwise be a second class of the same name.
    from deeploc import step

    sys.exit(step.run_and_record(sys.argv[1], sys.argv[2:]))
