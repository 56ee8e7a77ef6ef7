"""The plan an aws run starts with (``deeploc.plan``), from the run's settings, params and interval."""

from __future__ import annotations

from deeploc import plan as planner


def make(dag_id: str, cfg: dict, params: dict, dag_run, budget: dict | None) -> dict:
    """The model or ingestion plan of this run on the aws target."""
    from deeploc.sources.bucket import Bucket
    from deeploc.storage import catalog
    from deeploc.storage.lake import Lake
    from deeploc.storage.slice_io import months
    from deeploc.storage.slices import Slice
    from deeploc_airflow.settings import resolve

    lake = Lake(resolve("lake", params))
    if dag_id == "deeploc_model":
        return planner.model(lake, Bucket.of(resolve("bucket", params)), resolve("profile", params), "aws", cfg,
                             image_set=params.get("image_set") or "full",
                             face_threshold=params.get("face_threshold", 0.035),
                             partitionings=params.get("partitionings") or None,
                             max_images=params.get("max_images") or None, split_by=params.get("split_by") or "user",
                             epochs=params.get("epochs") or None, budget=budget)
    sl = Slice.of(dag_run.data_interval_start, dag_run.data_interval_end)
    metadata = resolve("metadata", params)
    unparsed = planner.input_rows(lake, [metadata])
    parsed = catalog.plan(lake, "parsed", months(sl)).rows
    return planner.ingestion(lake, resolve("bucket", params), "aws", cfg, parsed or planner.slice_share(unparsed, sl),
                             unparsed, budget, locations={"metadata": metadata})


def add_check(sized: dict, check: dict) -> None:
    """A check the Airflow side makes (what only the deployment knows) joins the plan's own."""
    sized["checks"].append(check)
    sized["ok"] = sized["ok"] and check["ok"]


def keep(sized: dict, lake: str, dag: str, run: str) -> str:
    from deeploc.storage.lake import Lake

    return planner.keep(Lake(lake), sized, dag, run)


text = planner.text
