"""When the model DAG is due: the ingestion DAG's last task updates the ``deeploc_faces`` Asset (which
triggers the model DAG) only when no other ingestion run is still on its way. A backfill of eleven
slices then starts one model run, after its last slice, instead of eleven on partial data.

"On its way": queued, or with its own ``announce_faces`` task not yet reached. Two runs that reach it
in the same instant may both announce; the model DAG's single active run absorbs that.
"""

from __future__ import annotations

from airflow.sdk import TriggerRule, task
from airflow.sdk.exceptions import AirflowSkipException

from deeploc_airflow.assets import FACES

# States of an announce_faces task that has not been reached yet (running: reached, deciding now).
PENDING = {None, "none", "scheduled", "queued", "up_for_retry", "up_for_reschedule", "restarting"}
TASK_ID = "announce_faces"


def others_on_their_way(queued_runs: int, states: dict[str, dict], run_id: str) -> list[str]:
    """The ingestion runs that have not reached ``announce_faces`` (``states``: run id -> task -> state)."""
    def pending(state) -> bool:
        state = getattr(state, "value", state)
        return state is None or str(state).lower() in PENDING

    waiting = [rid for rid, tasks in states.items() if rid != run_id and pending(tasks.get(TASK_ID))]
    return (["a queued run"] if queued_runs else []) + sorted(waiting)


@task(task_id=TASK_ID, outlets=[FACES], trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
def announce_faces(ti=None):
    """Update the Asset, unless other ingestion runs are still on their way (then skip: no event)."""
    queued = ti.get_dr_count(dag_id=ti.dag_id, states=["queued"])
    others = others_on_their_way(queued, ti.get_task_states(dag_id=ti.dag_id, task_ids=[TASK_ID]), ti.run_id)
    if others:
        raise AirflowSkipException(f"not announcing: ingestion runs still on their way: {others[:5]}")
