"""A training run's checkpoints in the lake (``checkpoints/<run>/``), so that a run killed at any moment
(a reclaimed spot instance) resumes from its last completed epoch: the full model with its optimizer
state and step count (hence the learning-rate schedule's position), the best model so far, the
per-epoch history and the TensorBoard logs.

``state.json`` is written last and names the model file of its epoch: a crash between the files leaves
the previous epoch's state intact, never a mix. A run interrupted inside an epoch (a spot reclaim
notice) keeps its model there too (``interrupted.keras``, named in the state): the next try starts from
it rather than from the last completed epoch. Models go up streamed, in parts on S3.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os

from deeploc.storage.lake import Lake

log = logging.getLogger(__name__)
INTERRUPTED = "interrupted.keras"


class Checkpoints:
    def __init__(self, lake: Lake, run: str):
        self.lake, self.rel = lake, f"checkpoints/{run}"

    def _loc(self, name: str) -> str:
        return self.lake.path(self.rel, name)

    def state(self) -> dict | None:
        return self.lake.read_json_or_none(f"{self.rel}/state.json")

    def history(self) -> list[dict]:
        if not self.lake.exists(self._loc("history.csv")):
            return []
        return list(csv.DictReader(io.StringIO(self.lake.read_bytes(self._loc("history.csv")).decode())))

    def fetch(self, name: str, dest: str) -> str:
        with open(dest, "wb") as f:
            f.write(self.lake.read_bytes(self._loc(name)))
        return dest

    def save_epoch(self, epoch: int, last_model: str, best_model: str | None, history: list[dict], state: dict,
                   tensorboard: str | None = None) -> None:
        """Upload one completed epoch: its model, the best one if it changed, the history, then the state."""
        name = f"last-epoch-{epoch:04d}.keras"
        self.lake.put_file(last_model, self._loc(name))
        if best_model:
            self.lake.put_file(best_model, self._loc("best.keras"))
        self.lake.write_bytes(self._loc("history.csv"), to_csv(history).encode())
        if tensorboard:
            for folder, _, files in os.walk(tensorboard):
                for fname in files:
                    rel = os.path.relpath(os.path.join(folder, fname), tensorboard)
                    with open(os.path.join(folder, fname), "rb") as f:
                        self.lake.write_bytes(self._loc(f"tensorboard/{rel}"), f.read())
        previous = self.state()
        self.lake.write_bytes(self._loc("state.json"), json.dumps({**state, "epoch": epoch, "model": name},
                                                                   indent=2, default=str).encode())
        if previous and previous.get("model") != name:
            self.lake.delete(self._loc(previous["model"]))
        if previous and previous.get("interrupted"):
            self.lake.delete(self._loc(INTERRUPTED))

    def save_interrupted(self, model_file: str, epoch: int, iterations: int, base: dict) -> None:
        """Keep the model of a run interrupted inside epoch ``epoch`` (0-based) after ``iterations`` steps;
        ``base``: the run's state when no epoch has completed yet."""
        self.lake.put_file(model_file, self._loc(INTERRUPTED))
        state = self.state() or base
        self.lake.write_bytes(self._loc("state.json"), json.dumps(
            {**state, "interrupted": {"epoch": epoch, "iterations": iterations, "model": INTERRUPTED}},
            indent=2, default=str).encode())

    def download_tensorboard(self, dest: str) -> None:
        for f in self.lake.files(self._loc("tensorboard")):
            rel = f[len(self._loc("tensorboard")) + 1:]
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            with open(os.path.join(dest, rel), "wb") as out:
                out.write(self.lake.read_bytes(f))

    def clear(self) -> None:
        self.lake.delete(self.lake.path(self.rel))


def to_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    fields = list(rows[0])
    for row in rows[1:]:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
