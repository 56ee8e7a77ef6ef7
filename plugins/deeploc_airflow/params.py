"""The DAGs' run parameters, generated from the stage registry (``deeploc.registry``): an option's name,
type, choices, bounds, help and whether the model DAG's trigger form offers it (``Option.form``) live
there once; this module turns them into form fields and says how each reaches a stage (``stage_options``).

Every parameter the form offers is valid as it stands: an option without a default of its own (a
setting such as the lake, or "the profile's") is ``null`` until a user types something, and a null
value means what an omitted flag means: the Variable, the environment, the default
(``settings.resolve``), or the stage's own default. So the UI's Trigger button works with nothing
typed, and Asset-triggered or scheduled runs use the deployment's settings.
"""

from __future__ import annotations

from airflow.sdk import Param

from deeploc import registry
from deeploc_airflow.settings import AWS_DEFAULTS, TARGETS

# The trigger form's sections. WHERE is the form's default section ("Run Parameters"), the one that is
# open when the form opens; the others open on a click.
WHERE, WHAT, MODEL_SECTION, AWS = (None, "What: the photos and partitionings", "Model: training and prediction",
                                   "AWS target")
JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _describe(value) -> str:
    return "(empty)" if value is None else str(value)


def _param(default, kind: str, description: str, section: str | None, choices=(), labels: dict | None = None,
           minimum=None, maximum=None, title: str | None = None, note: str | None = None) -> Param:
    """A form field; ``default`` None makes it optional (JSON type ``[null, kind]``). ``note``: markdown shown
    above the description."""
    schema: dict = {"type": ["null", kind] if default is None else kind}
    if section:
        schema["section"] = section
    if choices:
        values = [None, *choices] if default is None else list(choices)
        schema["enum"] = values
        schema["values_display"] = {("null" if v is None else str(v)): (labels or {}).get(v, _describe(v))
                                    for v in values}
    schema.update({k: v for k, v in (("minimum", minimum), ("maximum", maximum)) if v is not None})
    if note:  # the form shows description_md only where there is no plain description
        return Param(default, description_md=f"{note}\n\n{description}", title=title, **schema)
    return Param(default, description=description, title=title, **schema)


def option(stage: str, name: str, section: str | None, note: str | None = None) -> Param:
    """The field for a stage's option, as the registry declares it. An option a setting fills is empty
    in the form (the setting's precedence applies), whatever its command-line default."""
    opt = registry.get(stage).option(name)
    default = None if opt.setting else opt.default
    fallback = f"the Variable deeploc_{opt.setting}, env DEEPLOC_{opt.setting.upper()}, or the default" \
        if opt.setting else "the stage's default"
    labels = {None: f"(empty: {fallback})"}
    text = f"{opt.help}. Empty: {fallback}." if default is None else opt.help
    return _param(default, JSON_TYPES[opt.type], text, section, opt.choices, labels, opt.minimum, opt.maximum,
                  title=opt.setting or opt.name, note=note)


def setting(name: str, section: str, help: str, kind: str = "string") -> Param:
    """A field for an aws setting (``AWS_DEFAULTS``): empty means the Variable deeploc_aws or the default."""
    return _param(None, kind, f"{help}. Empty: the Variable deeploc_aws, env DEEPLOC_AWS, or "
                              f"{_describe(AWS_DEFAULTS[name]) if AWS_DEFAULTS[name] not in ('', 0) else 'none'}.",
                  section, minimum=0 if kind != "string" else None, title=name)


def from_params(*names: str) -> dict[str, str]:
    """Stage options filled from the run's params of the same names; a null param leaves the flag out."""
    return {n: f"{{{{ '' if params.{n} is none else params.{n} }}}}" for n in names}


TARGET = _param(None, "string", "where the stages run: local (in the task's own process) or aws (EMR steps and "
                                "a GPU instance). Empty: the Variable deeploc_target, env DEEPLOC_TARGET, or local.",
                WHERE, TARGETS, {None: "(empty: the Variable deeploc_target, env DEEPLOC_TARGET, or local)"},
                title="target")
# Shown first in the ingestion DAG's form, right under the logical date and the data interval.
SLICE_NOTE = ("**This run processes its data interval** of upload time, in whole months: with *Specify Manually*, "
              "start 2010-01-01 and end 2011-01-01 process 2010; *Inferred from Logical Date* processes the year "
              "that contains the logical date (any date in 2010 processes 2010). *Backfill* above runs one year per "
              "run over a range.")
LOCATIONS = {
    "lake": option("metadata", "lake", WHERE),
    "bucket": option("availability", "bucket", WHERE),
    "target": TARGET,
}
CLUSTER = {"cluster_id": setting("cluster_id", AWS, "run the EMR steps on this existing cluster instead of new ones")}

INGESTION = {
    **LOCATIONS,
    "lake": option("metadata", "lake", WHERE, note=SLICE_NOTE),
    "metadata": option("parse", "input", WHERE),
    **CLUSTER,
}

SECTIONS = {"what": WHAT, "model": MODEL_SECTION}   # Option.form -> the trigger form's section


def form(stages, base: dict) -> dict:
    """``base``, then every option the ``stages`` (in order) offer in the form (``Option.form``), once."""
    params = dict(base)
    for stage in stages:
        for opt in registry.get(stage).options:
            if opt.form and opt.name not in params:
                params[opt.name] = option(stage, opt.name, SECTIONS[opt.form])
    return params


def stage_options(stage: str, params: dict, **fixed: str) -> dict[str, str]:
    """A stage's options in a DAG: ``fixed`` values (e.g. the run's name) for the options it has, and every
    other option that is a param of the form, from that param. The locations reach it as settings."""
    names = [o.name for o in registry.get(stage).options]
    return {**{n: fixed[n] for n in names if n in fixed},
            **from_params(*(n for n in names if n in params and n not in fixed and n not in LOCATIONS))}


MODEL_STAGES = ("partitioning", "shards", "train", "infer", "evaluate", "removal_effect", "publish")
MODEL = form(MODEL_STAGES, {
    **LOCATIONS,
    "run": _param(None, "string", "model run name: models/<run>/, predictions/<run>/, metrics/<run>/. "
                                  "Empty: the DAG run's id.", WHAT, title="run"),
})
MODEL.update({
    **CLUSTER,
    "train_ami": setting("train_ami", AWS, "the training instance's AMI (a GPU AMI with an NVIDIA driver)"),
    "train_instance_type": setting("train_instance_type", AWS, "the training instance's type"),
    "train_timeout_hours": setting("train_timeout_hours", AWS, "hours training may take", "integer"),
})
