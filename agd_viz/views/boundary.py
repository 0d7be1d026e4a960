"""Decision-boundary pictures from stored frames (docs/architecture.md). The worker stores a 2-D
model's class probabilities on a grid of the plane (`store.FRAME_BOUNDARY`, at step 0, about every
steps/50 steps and at the last step) and, once per run, the grid and the training points
(`store.FRAME_BOUNDARY_GRID`); this module only reads and draws them. No torch, no streamlit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from agd_viz import charts, datasets, optspec
from agd_viz.store import FINAL_STATUSES, FRAME_BOUNDARY, FRAME_BOUNDARY_GRID

__all__ = ["BoundaryPicture", "has_boundary", "boundary_steps", "boundary_figures"]

WAITING = "waiting for the first picture…"
NONE_RECORDED = ("no picture was recorded (the network has more than a million weights, or the run "
                 "ended before its first picture)")
NOT_2D = "only the 2-D toy datasets have a decision boundary"


class BoundaryPicture(NamedTuple):
    """One run's picture: its figure, or None and a plain-text message saying why there is none."""

    run_id: int
    label: str
    figure: Any | None
    message: str | None


def has_boundary(dataset: Any) -> bool:
    """Whether runs on `dataset` get decision-boundary pictures (2-D classification sets)."""
    info = datasets.DATASETS.get(str(dataset))
    return info is not None and info.input_kind == "2d" and info.task == "classification"


def boundary_steps(store, run_id: int) -> list[int]:
    """The steps at which run `run_id` has a picture (for a replay slider), ascending."""
    return store.frame_steps(run_id, FRAME_BOUNDARY)


def boundary_figures(store, rows: Iterable[Mapping], step: int | None = None,
                     **figure_options) -> list[BoundaryPicture]:
    """A picture per run row (as `Store.get_run` returns it): its latest one, or with `step` the
    last one at or before that step. `figure_options` go to `charts.decision_boundary_figure`
    (e.g. height)."""
    out = []
    for row in rows:
        rid = int(row["id"])
        label = row.get("label") or optspec.label(row.get("optimizer", ""))
        if not has_boundary((row.get("spec") or {}).get("dataset")):
            out.append(BoundaryPicture(rid, label, None, NOT_2D))
            continue
        frame = (store.latest_frame(rid, FRAME_BOUNDARY) if step is None
                 else store.frame_at(rid, FRAME_BOUNDARY, step))
        grid = store.latest_frame(rid, FRAME_BOUNDARY_GRID)
        if frame is None or grid is None:
            done = row.get("status") in FINAL_STATUSES
            out.append(BoundaryPicture(rid, label, None, NONE_RECORDED if done else WAITING))
            continue
        out.append(BoundaryPicture(rid, label, _figure(label, frame, grid[1], figure_options), None))
    return out


def _figure(label: str, frame: tuple[int, dict], grid: Mapping[str, np.ndarray], options: dict):
    frame_step, arrays = frame
    probs = arrays["probs"].astype(np.float32) / 255.0  # stored as softmax × 255 in uint8
    points = grid["points"]
    classes = [str(c) for c in grid["classes"]] or None
    return charts.decision_boundary_figure(
        grid["x"], grid["y"], probs, points[:, 0], points[:, 1], grid["labels"],
        title=f"{label} · step {frame_step}", class_names=classes, **options)
