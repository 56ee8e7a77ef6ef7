"""From a task in the Airflow UI to what it made, in one click: extra links set by the task while it
runs, and a small read-only app on the API server that serves a local lake's results.

A task records ``result_links`` (name -> URL) as it runs; ``ResultLink`` hands them to Airflow, which
stores them with the task instance when the task ends. Where a result lives decides the URL:

- a local lake's ``site/`` and ``metrics/``: ``/deeploc/lake/<path>`` on the API server itself (the
  ``RESULTS`` app, mounted by the ``deeploc_results`` plugin), which serves those two folders of the
  configured lake and nothing else: no other folder, no dotfile, no link out of them;
- an S3 lake: the object or folder in the S3 console;
- the aws lane's EMR steps and training instance: their logs in the S3 console, the instance in the
  EC2 console (the cluster links come with the amazon provider's EMR operator).
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

URL_PREFIX = "/deeploc"          # where the plugin mounts ``RESULTS`` on the API server
SERVED = ("site", "metrics", "comparisons")     # the only lake folders the app serves
# What a stage's run made, by stage: (link name, folder output, file in it; {run} is the model run).
OUTPUTS = {"evaluate": ("Metrics", "metrics/{run}", "accuracy.md"),
           "removal_effect": ("Table 4", "comparisons/removal_effect", "table4.md"),
           "publish": ("Web map", "site", "index.html")}
CONSOLE = "https://console.aws.amazon.com"


class ResultLink(BaseOperatorLink):
    """An extra link whose URL the task set while it ran (``operator.result_links[name]``)."""

    def __init__(self, name: str):
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def xcom_key(self) -> str:  # one per link name: several links of this class share an operator
        return "_link_deeploc_" + re.sub(r"[^a-z0-9]+", "_", self._name.lower())

    def get_link(self, operator, *, ti_key) -> str:
        return getattr(operator, "result_links", {}).get(self._name, "")


def links_for(names: list[str]) -> tuple[ResultLink, ...]:
    return tuple(ResultLink(n) for n in names)


def s3_console(uri: str, region: str | None = None) -> str:
    """The S3 console page of an object, or of a folder when ``uri`` ends with a slash."""
    from deeploc.storage.uris import split_s3

    bucket, key = split_s3(uri)
    where = f"region={quote(region)}&" if region else ""
    kind = "buckets" if key.endswith("/") or not key else "object"
    return f"https://s3.console.aws.amazon.com/s3/{kind}/{quote(bucket)}?{where}prefix={quote(key)}"


def ec2_console(instance_id: str, region: str | None) -> str:
    return f"{CONSOLE}/ec2/home?region={quote(region or '')}#InstanceDetails:instanceId={quote(instance_id)}"


def stage_links(argv: list[str]) -> dict[str, str]:
    """The links of a stage's run, read from its argument list as the command line reads it: the S3
    console of the version it made, or the results app (which follows the output's pointer) locally."""
    from deeploc.cli import parser
    from deeploc.storage import commit
    from deeploc.storage.lake import Lake

    if argv[0] not in OUTPUTS:
        return {}
    args = parser().parse_args(argv)
    name, output, file = OUTPUTS[argv[0]]
    output = output.format(run=args.run)
    version = commit.current(Lake(args.lake), output)
    if version is None:  # the stage made nothing (the removal effect without a pair of runs)
        return {}
    if not args.lake.startswith("s3://"):
        return {name: f"{URL_PREFIX}/lake/{quote(output)}/{quote(file)}"}
    return {name: s3_console(f"{version}/{file}")}


# -- the results app (runs inside the API server) --------------------------------------------------------
def served_file(lake_root: str, rel: str) -> str | None:
    """The file ``rel`` (``site/...``, ``metrics/<run>/...`` or ``comparisons/<name>/...``) in the current version of that output if the
    app may serve it, else None: inside the version once symbolic links are resolved, no name starting
    with a dot, a regular file."""
    from deeploc.storage import commit
    from deeploc.storage.lake import Lake

    parts = [p for p in rel.split("/") if p]
    if not parts or parts[0] not in SERVED or any(p.startswith(".") for p in parts):
        return None
    depth = 1 if parts[0] == "site" else 2  # site, metrics/<run> or comparisons/<name>
    version = commit.current(Lake(lake_root), "/".join(parts[:depth])) if len(parts) > depth else None
    if version is None:
        return None
    top = os.path.realpath(version)
    full = os.path.realpath(os.path.join(top, *parts[depth:]))
    return full if full.startswith(top + os.sep) and os.path.isfile(full) else None


def results_app():
    """A FastAPI app serving the configured local lake's ``site/`` and ``metrics/``, read-only."""
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, PlainTextResponse

    from deeploc_airflow.settings import resolve_local

    app = FastAPI(title="DeepLocations results", docs_url=None, redoc_url=None, openapi_url=None)
    headers = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
               "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                                          "img-src 'self' data:; connect-src 'self'; base-uri 'none'"}

    @app.get("/lake/{rel:path}")
    def lake_file(rel: str):
        lake = resolve_local("lake")
        if lake.startswith("s3://"):
            return PlainTextResponse("this lake is on S3: the task's link opens it in the S3 console", 404,
                                     headers=headers)
        found = served_file(lake, rel)
        if found is None:
            return PlainTextResponse("not found (only the lake's site/ and metrics/ are served)", 404, headers=headers)
        media = "text/plain; charset=utf-8" if found.endswith(".md") else None
        return FileResponse(found, media_type=media, headers=headers)

    return app
