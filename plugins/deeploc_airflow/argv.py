"""The argument list of a stage, the same on both targets: ``deeploc <stage> --lake ... [options]``.

Built from the stage's declaration in ``deeploc.registry``: options that name a setting (lake, bucket,
metadata input, profile) are filled in when the task runs (``settings.resolve``) unless the task
gives them; the rest come from the task's (templated) options.
"""

from __future__ import annotations

import re
from typing import Any

from deeploc import registry


def safe_run_name(text: str) -> str:
    """Model run names become folder names: letters, digits, dot, dash, underscore; no leading dot."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "run"


def check_options(stage: str, options: dict[str, Any]) -> None:
    """At DAG parse time: every option a task passes must be one the stage declares."""
    known = {o.name for o in registry.get(stage).options}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"stage {stage} takes no option {unknown}; it takes {sorted(known)}")


def stage_argv(stage: str, options: dict[str, Any], params: dict) -> list[str]:
    """The stage's argument list: None, "" and False leave a flag out; True is a bare flag."""
    from deeploc_airflow.settings import resolve

    argv = [stage]
    for option in registry.get(stage).options:
        value = options.get(option.name)
        if option.setting and value in (None, ""):
            value = resolve(option.setting, params)
        if value is None or value == "" or value is False:
            continue
        if option.name == "run":
            value = safe_run_name(str(value))
        if value is True:
            argv.append(option.flag)
        elif option.many:
            argv += [option.flag, *(value if isinstance(value, (list, tuple)) else [value])]
        else:
            argv += [option.flag, str(value)]
    return argv
