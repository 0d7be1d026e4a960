"""Replay: a comparison, live or finished, drawn as it stood at an earlier step.

A fast run (spirals: 800 steps before the first refresh) is otherwise only ever seen at its end.
The Live page's step slider picks a step; every chart, the status numbers and the decision
boundary (the last picture stored at or before that step) are drawn from the rows up to it, on
an x axis held at the whole run's range so the curves grow across a still frame. Play walks the
slider from where it is to the end in about REPLAY_S seconds, whatever the run's length: slow
enough to talk over on a projector.

No streamlit, no torch (docs/architecture.md).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

__all__ = ["REPLAY_S", "TICK_S", "step_span", "advance", "clamp", "up_to", "x_span"]

REPLAY_S = 20.0  # a whole run plays in about this long
# Seconds between frames while playing: each frame redraws every chart of the page, which takes a
# few tenths of a second on a busy 2-core server; a shorter tick would only queue reruns.
TICK_S = 0.5


def step_span(frames: Iterable[pd.DataFrame | None]) -> tuple[int, int] | None:
    """(first, last) step over the runs' scalar frames, or None before any step is read."""
    lo, hi = math.inf, -math.inf
    for df in frames:
        if df is None or not len(df) or "step" not in df:
            continue
        steps = df["step"].to_numpy()
        lo, hi = min(lo, int(steps[0])), max(hi, int(steps[-1]))
    return None if hi < lo else (int(lo), int(hi))


def advance(step: int, lo: int, hi: int, seconds: float = REPLAY_S, tick: float = TICK_S) -> int:
    """The step of the next frame of a replay playing from `step` towards `hi`: a whole run
    (lo..hi) takes about `seconds` at one frame per `tick`."""
    frames = max(1, round(seconds / tick))
    stride = max(1, math.ceil((hi - lo) / frames))
    return int(min(hi, max(lo, step) + stride))


def clamp(step, lo: int, hi: int) -> int:
    """`step` within lo..hi (a slider value kept from a longer or shorter run); `hi` when unset."""
    if step is None:
        return hi
    return int(min(hi, max(lo, int(step))))


def up_to(df: pd.DataFrame | None, step: int | None) -> pd.DataFrame | None:
    """The rows of a frame (scalars or per-layer) logged at or before `step` (all of them when
    `step` is None: no replay). Rows arrive in step order, so the cut is a binary search."""
    if step is None or df is None or not len(df) or "step" not in df:
        return df
    end = int(np.searchsorted(df["step"].to_numpy(), step, side="right"))
    return df if end == len(df) else df.iloc[:end]


def x_span(frames: Iterable[pd.DataFrame | None], x: str = "step") -> tuple[float, float] | None:
    """The x range of the whole run (first to last step, or 0 to the last wall time), at which
    the replayed charts hold their axis."""
    col = "step" if x == "step" else "t"
    lo, hi = math.inf, -math.inf
    for df in frames:
        if df is None or not len(df) or col not in df:
            continue
        values = df[col].to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[np.isfinite(values)]
        if values.size:
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    if hi < lo:
        return None
    return (0.0 if x != "step" else lo), (hi if hi > lo else lo + 1.0)
