"""The README's commands stop at once, saying what to install, when Java 17 is missing or too old."""

import os
import shutil
import subprocess

import pytest

from conftest import REPO


def _bin_without_java(tmp_path):
    """A PATH folder with the few tools ./dev needs before its Java check, and no java."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("bash", "dirname", "sed", "head", "cat"):
        os.symlink(shutil.which(tool), folder / tool)
    return folder


@pytest.mark.parametrize("command", ["demo", "test"])
def test_missing_java_stops_with_instructions(tmp_path, command):
    env = {"PATH": str(_bin_without_java(tmp_path)), "HOME": str(tmp_path)}
    res = subprocess.run([str(REPO / "dev"), command], env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode != 0
    assert "Java 17 is required" in res.stderr and "openjdk-17" in res.stderr


def test_old_java_is_refused(tmp_path):
    folder = _bin_without_java(tmp_path)
    fake = folder / "java"
    fake.write_text('#!/bin/bash\necho \'openjdk version "11.0.22" 2024-01-16\' >&2\n')
    fake.chmod(0o755)
    res = subprocess.run([str(REPO / "dev"), "demo"], env={"PATH": str(folder), "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=30)
    assert res.returncode != 0 and "found '11'" in res.stderr
