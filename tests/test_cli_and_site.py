"""The command line derived from the stage registry, and the site's handling of untrusted text."""

import importlib
import inspect
import json
import os
import re
import shlex
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO
from deeploc import registry
from deeploc.cli import parser
from deeploc.stages.publish import points, safe_json


@pytest.mark.parametrize("name", sorted(registry.STAGES))
def test_each_stage_function_takes_exactly_its_declared_options(name):
    stage = registry.get(name)
    module, func = stage.runner.split(":")
    params = inspect.signature(getattr(importlib.import_module(module), func)).parameters
    declared = {o.name for o in stage.options} - {"unsigned", "endpoint_url"}  # folded into the bucket
    assert declared <= set(params), declared - set(params)
    required = {n for n, p in params.items() if p.default is inspect.Parameter.empty}
    assert required <= declared, required - declared
    assert all(registry.writer_of(t) in registry.STAGES for t in stage.reads), stage.reads  # each input has a writer


def documented_commands() -> list[str]:
    """Every full ``.venv/bin/deeploc ...`` command line of the README and docs/ (continuations joined,
    optional ``[--flag value]`` parts included)."""
    text = "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip().replace("[", "").replace("]", "")
            for line in joined.splitlines() if line.strip().startswith(".venv/bin/deeploc ")]


def test_every_command_line_in_the_docs_parses():
    """The docs are the oracle: what they tell a newcomer to type is what the command line takes."""
    commands = documented_commands()
    assert len(commands) >= 6 and any(" train " in c for c in commands), commands
    for command in commands:
        argv = shlex.split(command)[1:]
        namespace = parser().parse_args(argv)  # exits (fails the test) on a flag or value it refuses
        assert namespace.command == argv[0], command


def test_cli_help_and_clear_errors(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "deeploc.cli", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "demo-data" in ok.stdout and "publish" in ok.stdout and "parse" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "deeploc.cli", "partitioning", "--lake", str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "run the ingestion DAG first" in bad.stderr
    refused = subprocess.run([sys.executable, "-m", "deeploc.cli", "faces", "--lake", str(tmp_path)],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "--bucket" in refused.stderr
    years = subprocess.run([sys.executable, "-m", "deeploc.cli", "demo-data", "--out", str(tmp_path), "--years", "2003-2005"],
                           capture_output=True, text=True)
    assert years.returncode == 2 and "within 2004-2014" in years.stderr.splitlines()[-1]


@pytest.mark.slow  # two commands from a shell, each starting TensorFlow
def test_quiet_and_a_missing_path_give_one_line_in_a_plain_shell(tmp_path):
    """``deeploc -q`` on a command that starts TensorFlow, then meets a missing input: one line naming it,
    no traceback, none of TensorFlow's or absl's start-up lines."""
    env = {**os.environ, "PATH": f"{REPO}/.venv/bin:/usr/bin:/bin"}
    for command, named in ((f"deeploc -q train --lake {tmp_path} --bucket {tmp_path} --run x", f"under {tmp_path}"),
                           (f"deeploc -q predict --lake {tmp_path}/nowhere {tmp_path}/photo.jpg", f"{tmp_path}/nowhere")):
        res = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 2, res.stderr
        assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("deeploc: error: "), res.stderr
        assert named in res.stderr and res.stdout == ""


def test_untrusted_text_cannot_escape_the_data_block():
    hostile = '</script><script>alert("x")</script>&amp;\u2028'
    text = safe_json({"title": hostile})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text)["title"] == hostile


def test_points_decode_titles_and_drop_non_http_links():
    df = pd.DataFrame({"photo_id": [1, 2], "latitude": [1.0, 2.0], "longitude": [3.0, 4.0],
                       "title": ["%3Cscript%3Ealert%281%29%3C%2Fscript%3E", None],
                       "page_url": ["javascript:alert(1)", "http://www.flickr.com/photos/x/2/"],
                       "license_name": ["a", "b"], "license_url": ["vbscript:x", "https://creativecommons.org/"],
                       "user_nickname": ["J%C3%B6rg+%3Cb%3E", None], "fine_class": [3, 4],
                       "fine_lat": [1.0, 2.0], "fine_lon": [3.0, 4.0], "fine_km": [0.0, 1.0],
                       "fine_topk_class": [[3, 1], [4, 0]], "fine_topk_prob": [[0.7, 0.2], [0.6, 0.3]]})
    pts = points(df, ["fine"])
    assert pts[0]["title"] == "<script>alert(1)</script>" and pts[0]["url"] is None and pts[0]["license_url"] is None
    assert pts[0]["author"] == "Jörg <b>" and pts[0]["pred"]["fine"]["top"] == [[3, 0.7], [1, 0.2]]
    assert pts[1]["title"] == "" and pts[1]["url"].startswith("http://") and pts[1]["author"] == ""
