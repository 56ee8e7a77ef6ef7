"""Where the pipeline's locations come from, resolved when a task runs (never at DAG parse time).

Order: the DAG run's param, then the Airflow Variable ``deeploc_<name>``, then the environment
variable ``DEEPLOC_<NAME>``, then the embedded default under ``.deeploc/`` in the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / ".deeploc" / "demo"
DEFAULTS = {
    "lake": str(REPO / ".deeploc" / "lake"),
    "bucket": str(DEMO / "bucket"),
    "metadata": str(DEMO / "metadata" / "*.bz2"),
}


def resolve(name: str, params: dict | None = None) -> str:
    """Inside a running task: param, Variable, environment, default."""
    if params and params.get(name):
        return str(params[name])
    from airflow.sdk import Variable

    return Variable.get(f"deeploc_{name}", default=None) or resolve_local(name)


def resolve_local(name: str) -> str:
    """Outside a task (no Variables to ask): environment, then default."""
    return os.environ.get(f"DEEPLOC_{name.upper()}") or DEFAULTS[name]
