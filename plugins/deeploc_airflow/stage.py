"""``StageOperator``: run one DeepLocations stage in the task's own process (the ``local`` target).

The argument list is exactly what ``deeploc <stage>`` takes, built by ``stage_argv``; the aws target
submits the very same list as an EMR step or a training instance's command (``aws.py``). Retries and
timeouts are the DAG's business.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from airflow.sdk import BaseOperator

# Which locations each stage needs; filled in at run time from ``settings.resolve``.
NEEDS = {
    "metadata": ("lake", "metadata"),
    "availability": ("lake", "bucket"),
    "faces": ("lake", "bucket"),
    "partition": ("lake",),
    "train": ("lake", "bucket"),
    "infer": ("lake", "bucket"),
    "evaluate": ("lake",),
    "publish": ("lake", "bucket"),
}


def safe_run_name(text: str) -> str:
    """Model run names become folder names: letters, digits, dot, dash, underscore; no leading dot."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "run"


def stage_argv(stage: str, options: dict[str, Any], params: dict) -> list[str]:
    """``deeploc`` arguments for ``stage``: its locations (resolved now), then ``options`` as flags
    (None, "" and False leave a flag out; True is a bare flag)."""
    from deeploc_airflow.settings import resolve

    argv = [stage]
    for name in NEEDS[stage]:
        value = resolve(name, params)
        argv += ["--input", value] if name == "metadata" else [f"--{name}", value]
    for key, value in options.items():
        if value is None or value == "" or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "run":
            value = safe_run_name(str(value))
        argv += [flag] if value is True else [flag, str(value)]
    return argv


class StageOperator(BaseOperator):
    """Run ``deeploc <stage> [options]``; ``options`` maps flag names to (templated) values."""

    template_fields: Sequence[str] = ("options",)
    ui_color = "#d8ecf3"

    def __init__(self, *, stage: str, options: dict[str, Any] | None = None, **kwargs):
        super().__init__(**kwargs)
        if stage not in NEEDS:
            raise ValueError(f"unknown stage {stage!r}; known: {sorted(NEEDS)}")
        self.stage, self.options = stage, dict(options or {})

    def argv(self, params: dict) -> list[str]:
        return stage_argv(self.stage, self.options, params)

    def execute(self, context):
        argv = self.argv(context.get("params") or {})
        self.log.info("deeploc %s", " ".join(argv))
        from deeploc.cli import run

        return run(argv)
