"""Where the pipeline's locations, target and profile come from, resolved when a task runs (never at
DAG parse time).

Order: the DAG run's param, then the Airflow Variable ``deeploc_<name>``, then the environment
variable ``DEEPLOC_<NAME>``, then the embedded default under ``.deeploc/`` in the repository.
The aws target's cluster and instance settings are one JSON object, merged the same way key by key
(see ``AWS_DEFAULTS`` and docs/aws.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from deeploc import aws_config

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / ".deeploc" / "demo"
DEFAULTS = {
    "lake": str(REPO / ".deeploc" / "lake"),
    "bucket": str(DEMO / "bucket"),
    "metadata": str(DEMO / "metadata" / "*.bz2"),
    "target": "local",
    "profile": "demo",   # what model runs train when a run does not say (Asset-triggered runs never do)
}
# An unattended run on the aws target stops at its plan beyond this (the yfcc profile's sample fits).
BUDGET = {"photos": 200_000, "dollars": 100.0}
TARGETS = ("local", "aws")

# The aws settings, their defaults and ceilings live with the package (the plan needs them outside
# Airflow too); here they get Airflow's layers.
STEP_CEILING_H, TRAIN_CEILING_H, AWS_DEFAULTS = aws_config.STEP_CEILING_H, aws_config.TRAIN_CEILING_H, aws_config.DEFAULTS


def resolve(name: str, params: dict | None = None) -> str:
    """Inside a running task: param, Variable, environment, default."""
    if params and params.get(name):
        return str(params[name])
    from airflow.sdk import Variable

    return Variable.get(f"deeploc_{name}", default=None) or resolve_local(name)


def resolve_local(name: str) -> str:
    """Outside a task (no Variables to ask): environment, then default."""
    return os.environ.get(f"DEEPLOC_{name.upper()}") or DEFAULTS[name]


def resolve_target(params: dict | None = None) -> str:
    target = resolve("target", params)
    if target not in TARGETS:
        raise ValueError(f"target {target!r} is unknown; choose one of {TARGETS}")
    return target


def resolve_aws(params: dict | None = None) -> dict:
    """The aws settings: defaults, then env ``DEEPLOC_AWS`` (JSON), then Variable ``deeploc_aws``
    (JSON), then the run's params named like the keys (non-empty ones only); checked against the ceilings."""
    from airflow.sdk import Variable

    return aws_config.merged(("env DEEPLOC_AWS", os.environ.get("DEEPLOC_AWS")),
                             ("Variable deeploc_aws", Variable.get("deeploc_aws", default=None)),
                             ("the run's params", {k: v for k, v in (params or {}).items()
                                                   if k in AWS_DEFAULTS and v not in ("", None, 0)}))


def resolve_budget() -> dict:
    """What an unattended run (scheduled, or triggered by the Asset) may spend: the Variable
    ``deeploc_budget`` ({"photos": N, "dollars": D}), else env ``DEEPLOC_BUDGET``, else ``BUDGET``."""
    from airflow.sdk import Variable

    raw = Variable.get("deeploc_budget", default=None) or os.environ.get("DEEPLOC_BUDGET")
    budget = {**BUDGET, **(json.loads(raw) if raw else {})}
    unknown = set(budget) - set(BUDGET)
    if unknown:
        raise ValueError(f"deeploc_budget: unknown keys {sorted(unknown)}; known: {sorted(BUDGET)}")
    return budget
