"""The ``local`` lane: ``LocalStage`` runs one stage in the task's own process, and ``choose_target``
branches every DAG run to the local or the aws lane. Retries and timeouts are the DAG's business."""

from __future__ import annotations

from typing import Any, Sequence

from airflow.sdk import BaseOperator, task

from deeploc_airflow.argv import check_options, stage_argv
from deeploc_airflow.links import links_for, OUTPUTS, stage_links


class LocalStage(BaseOperator):
    """Run ``deeploc <stage> [options]`` in-process; ``options`` maps option names to (templated) values."""

    template_fields: Sequence[str] = ("options",)
    ui_color = "#d8ecf3"

    def __init__(self, *, stage: str, options: dict[str, Any] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.stage, self.options = stage, dict(options or {})
        check_options(stage, self.options)
        self.operator_extra_links = links_for([OUTPUTS[stage][0]] if stage in OUTPUTS else [])

    def argv(self, params: dict) -> list[str]:
        return stage_argv(self.stage, self.options, params)

    def execute(self, context):
        argv = self.argv(context.get("params") or {})
        self.log.info("deeploc %s", " ".join(argv))
        from deeploc.cli import run

        result = run(argv)
        self.result_links = stage_links(argv)
        return result


def choose_target(local_first: str, aws_first: str):
    """A branch task: the first task of the local lane or of the aws lane, by the run's target."""

    @task.branch(task_id="target")
    def target(params=None):
        from deeploc_airflow.settings import resolve_target

        return local_first if resolve_target(params) == "local" else aws_first

    return target()
