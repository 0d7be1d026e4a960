"""Weight snapshots of small 2-D models, so the Live page can draw a live decision boundary.

A worker cannot hand its model to the app (another process), and the run store holds numbers, not
networks. For 2-D toy data the model is tiny, so the worker writes its `state_dict` to a file next
to the store every `every_s` seconds and at the end; the page rebuilds the network from the run's
spec and loads the file with `torch.load(weights_only=True)` (no pickled code runs in the app).

Files: `<db>.snapshots/run-<id>.pt`, written to a temporary name then renamed, so a reader never
sees half a file. The worker makes a `Snapshotter` only for 2-D data sets (`input_kind == "2d"`),
and it saves only models of at most `MAX_PARAMS` parameters: a bigger model would make every
snapshot a sizeable write, once a second, for a picture.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

MAX_PARAMS = 1_000_000
EVERY_S = 1.0


def snapshot_dir(db_path: str | os.PathLike) -> Path:
    db = Path(db_path)
    return db.with_name(db.name + ".snapshots")


def snapshot_path(db_path: str | os.PathLike, run_id: int) -> Path:
    """Where run `run_id`'s latest weights are: `<db>.snapshots/run-<id>.pt`."""
    return snapshot_dir(db_path) / f"run-{int(run_id)}.pt"


def wants_snapshot(model) -> bool:
    """Small enough to save every second: at most MAX_PARAMS parameters."""
    return sum(p.numel() for p in model.parameters()) <= MAX_PARAMS


def save_snapshot(path: str | os.PathLike, model, step: int) -> None:
    """Atomically write {"step": step, "state_dict": {name: cpu tensor}} to `path`."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"step": int(step), "state_dict": state}, tmp)
    os.replace(tmp, path)


def load_snapshot(path: str | os.PathLike) -> dict | None:
    """{"step", "state_dict"} from a snapshot file, or None if there is none (yet) or it is
    unreadable. Loaded with weights_only=True: tensors and plain containers only."""
    import torch

    try:
        doc = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError):
        return None
    if not isinstance(doc, dict) or "state_dict" not in doc:
        return None
    return doc


class Snapshotter:
    """The worker's `train.run(..., snapshot=...)` hook: saves run i's model at step 0, at most
    every `every_s` seconds after that, and at the last step."""

    def __init__(self, db_path: str | os.PathLike, run_ids, last_step: int, every_s: float = EVERY_S):
        self.db_path = db_path
        self.run_ids = list(run_ids)
        self.last_step = int(last_step)
        self.every_s = float(every_s)
        self._last: dict[int, float] = {}
        self._wanted: dict[int, bool] = {}

    def __call__(self, i: int, step: int, model) -> None:
        rid = self.run_ids[i] if i < len(self.run_ids) else None
        if rid is None:
            return
        if i not in self._wanted:
            self._wanted[i] = wants_snapshot(model)
        if not self._wanted[i]:
            return
        now = time.monotonic()
        due = step == 0 or step >= self.last_step or now - self._last.get(i, -1e9) >= self.every_s
        if not due:
            return
        self._last[i] = now
        try:
            save_snapshot(snapshot_path(self.db_path, rid), model, step)
        except OSError:
            self._wanted[i] = False  # a read-only or full disk: the picture is optional
