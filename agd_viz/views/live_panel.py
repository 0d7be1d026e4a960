"""The Live page's panel: where each run is (progress text), how often to refresh, the metrics read
so far (incrementally), and the latest value of each headline number.

No streamlit, no torch (docs/architecture.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from agd_viz import cost, datasets, fmt, paper
from agd_viz.store import FINAL_STATUSES

MAX_REFRESH_S = 5.0
# The speed of a run's first steps includes its start-up (data, first evaluation): an ETA from them
# reads like "27 min 58 s" for a run that takes 20 s. None is shown before this share of the run
# and this many steps.
ETA_MIN_SHARE = 0.05
ETA_MIN_STEPS = 20
REFRESH_S = 1.0  # seconds between chart refreshes while runs train (longer on a busy server)
FIRST_POINTS_REFRESH_S = 0.25  # while a run trains but no step has reached the charts yet
FIRST_STEP_WAIT_S = 1.5  # right after Start, the panel waits at most this long for the first step


def progress_fraction(p: Mapping[str, Any]) -> float:
    step, steps = p.get("step"), p.get("steps")
    if p.get("status") == "finished":
        return 1.0
    if not step or not steps:
        return 0.0
    return float(min(max(step / steps, 0.0), 1.0))


def progress_text(label: str, p: Mapping[str, Any]) -> str:
    """One line per run: '<label> · running · step 120 / 300 · 35 steps/s · ETA 5 s' (no label
    part when `label` is empty)."""
    status = p.get("status") or "queued"
    step, steps = p.get("step") or 0, p.get("steps")
    parts = [label, status] if label else [status]
    if status == "queued":
        pos = p.get("queue_position")
        parts.append(f"position {pos} in the queue" if pos else "waiting for a worker")
        return " · ".join(parts)
    parts.append(f"step {step:,} / {steps:,}" if steps else f"step {step:,}")
    sps = p.get("steps_per_s")
    if status == "running":
        if sps:
            parts.append(f"{sps:,.0f} steps/s" if sps >= 10 else f"{sps:.1f} steps/s")
        settled = step >= max(ETA_MIN_STEPS, ETA_MIN_SHARE * (steps or 0))
        if p.get("eta_s") is not None and settled:
            parts.append(f"ETA {fmt.duration(p['eta_s'])}")
    return " · ".join(parts)


def refresh_interval(tick_s: float | None, base: float = 1.0, cap: float = MAX_REFRESH_S) -> float:
    """Seconds between live refreshes: `base`, stretched to 4× the time a refresh takes (in half
    seconds, at most `cap`). A busy server (many viewers, training on the same cores) then
    refreshes each page less often instead of running refreshes back to back."""
    if tick_s is None or not math.isfinite(tick_s) or tick_s <= 0:
        return base
    return float(min(cap, max(base, math.ceil(8 * tick_s) / 2)))


def next_interval(any_step_read: bool, rows: Iterable[Mapping[str, Any]], tick_s: float | None) -> float:
    """The Live panel's next refresh: REFRESH_S (stretched on a busy server, `refresh_interval`),
    but FIRST_POINTS_REFRESH_S while a run trains and none of its steps has been read yet, so the
    first point shows a fraction of a second after the worker's first step
    (benchmarks/first_point.py). Queued runs poll at the normal rate."""
    if not any_step_read and any(r.get("status") == "running" for r in rows):
        return FIRST_POINTS_REFRESH_S
    return refresh_interval(tick_s, REFRESH_S)


def wait_first_step(store, run_ids: Iterable[int], timeout: float = FIRST_STEP_WAIT_S,
                    period: float = 0.02) -> bool:
    """Right after Start: wait until a training step of one of the runs is stored (True), or they
    have all ended, or `timeout` s have passed (False). A pre-started worker stores its first step
    a fraction of a second after the click, so the panel drawn by Start's own rerun can hold the
    first point instead of leaving it to the next poll, a poll interval and a redraw later
    (benchmarks/first_point.py). One small query per `period`."""
    ids = [int(r) for r in run_ids]
    end = time.monotonic() + timeout
    while True:
        progress = store.progress(ids)
        if any(((progress.get(r) or {}).get("step") or 0) >= 1 for r in ids):
            return True
        if all_final(progress, ids) or time.monotonic() >= end:
            return False
        time.sleep(period)


def interval_drifted(current: float, wanted: float) -> bool:
    """Whether the live timer should be re-created: the wanted interval moved by 1.5× or more."""
    return wanted >= 1.5 * current or wanted <= current / 1.5


def all_final(progress: Mapping[int, Mapping[str, Any]], run_ids: Iterable[int]) -> bool:
    """True when every run is in a final state (a deleted run counts as final)."""
    return all((progress.get(r) or {}).get("status", "finished") in FINAL_STATUSES for r in run_ids)


# -------------------------------------------------------------------------------------------------
# Incremental reads


@dataclass
class RunFrames:
    """One run's metrics read so far: scalar frame, long per-layer frame, and where they end."""

    scalars: pd.DataFrame | None = None
    layers: pd.DataFrame | None = None
    last_step: int | None = None
    last_layer_step: int | None = None
    reads: int = 0  # store reads so far (tests check reads stay incremental)


def _append(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    if old is None or old.empty:
        return new.reset_index(drop=True)
    if new.empty:
        return old
    return pd.concat([old, new], ignore_index=True)


@dataclass
class LiveFrames:
    """Per-run frames kept between refreshes; each `refresh` reads only steps after those seen.

    Steps arrive in order (a worker writes step k only after k−1), so "steps > last seen" misses
    nothing. Kept in `st.session_state`, one per browser session.
    """

    runs: dict[int, RunFrames] = field(default_factory=dict)

    def refresh(self, store, run_ids: Iterable[int]) -> dict[int, RunFrames]:
        ids = [int(r) for r in run_ids]
        for rid in list(self.runs):
            if rid not in ids:
                del self.runs[rid]
        frames = {rid: self.runs.setdefault(rid, RunFrames()) for rid in ids}
        new = store.metrics_many(ids, since={rid: fr.last_step for rid, fr in frames.items()})
        for rid, fr in frames.items():
            df = new.get(rid)
            fr.reads += 1
            if df is not None and len(df):
                fr.scalars = _append(fr.scalars, df)
                fr.last_step = int(df["step"].iloc[-1])
            elif fr.scalars is None and df is not None:
                fr.scalars = df
            ldf = store.layer_metrics(rid, since_step=fr.last_layer_step)
            if len(ldf):
                fr.layers = _append(fr.layers, ldf)
                fr.last_layer_step = int(ldf["step"].iloc[-1])
            elif fr.layers is None:
                fr.layers = ldf
        return frames

    def steps_seen(self) -> dict[int, int | None]:
        return {rid: fr.last_step for rid, fr in self.runs.items()}

    def any_step_read(self) -> bool:
        """Whether a training step (not only the state at initialisation) has been read."""
        return any((fr.last_step or 0) >= 1 for fr in self.runs.values())


HEADLINE = ("loss", "acc", "eta", "G", "lr", "test_acc")


def latest_values(scalars: pd.DataFrame | None) -> dict[str, float | None]:
    """Last finite value of each headline number (step, loss, acc, η, lr) for the metric tiles."""
    out: dict[str, float | None] = {"step": None, **{k: None for k in HEADLINE}}
    if scalars is None or scalars.empty:
        return out
    out["step"] = int(scalars["step"].iloc[-1])
    for key in HEADLINE:
        if key in scalars:
            col = scalars[key].to_numpy(dtype=np.float64, na_value=np.nan)
            finite = np.flatnonzero(np.isfinite(col))
            if finite.size:
                out[key] = float(col[finite[-1]])
    return out


# -------------------------------------------------------------------------------------------------
# Which comparison, and what its charts mean


def group_runs(store, group_id: int | None) -> list[dict]:
    """The runs of a group in the order they were created (the form's order)."""
    if group_id is None:
        return []
    return sorted(store.list_runs(group_id=group_id), key=lambda r: r["id"])


GROUP_NOUNS = {"compare": "comparison", "sweep": "sweep"}


def shown_group(store, requested: int | None, owned: Iterable[int] = (),
                kind: str = "compare") -> tuple[int | None, str | None]:
    """The group a page shows: `requested` (a link's, or the one the session last looked at) if it
    is a group of `kind` in the store, else the most recent of `owned` (the groups this session
    started) still in the store, else none: a new session starts clean rather than on another
    attendee's work. With a sentence saying why the requested one is not shown."""
    why, noun = None, GROUP_NOUNS.get(kind, kind)
    if requested is not None:
        found = store.get_group(requested)
        if found is not None and found.get("kind") == kind:
            return requested, None
        what = ("is not in the run store" if found is None
                else f"is a {GROUP_NOUNS.get(found.get('kind'), found.get('kind'))}, not a {noun}")
        why = f"Run group {requested} {what}; showing your latest {noun} instead."
    for gid in sorted(owned, reverse=True):
        found = store.get_group(gid)
        if found is not None and found.get("kind") == kind:
            return gid, why
    return None, why


def lemma8_gaps(spec: Mapping[str, Any]) -> str:
    """The conditions of Lemma 8's bound (paper.ITEMS["lemma8"]) a comparison does not meet, as one
    clause for the G panel: its loss, its minibatch G, its architecture, and Assumptions 1-2, which
    no run checks."""
    gaps = []
    if spec.get("loss", "xent") != "square":
        gaps.append("the loss is cross-entropy, not the square loss")
    n_train = datasets.shape(spec.get("dataset", "digits"), spec.get("data_options") or {}).n_train
    if int(spec.get("batch_size") or 0) < n_train:
        gaps.append(f"G is a minibatch's ({spec.get('batch_size')} of {n_train:,} examples), not the full objective's")
    if spec.get("arch") == "cnn":
        gaps.append("the network is a CNN, not fully connected")
    gaps.append(f"{paper.ref('assumption1')} and {paper.ref('assumption2')} are not checked")
    return "; ".join(gaps)


CHART_HELP = {
    "loss": ("Loss", "Minibatch (or train/test set) loss per optimiser. Faint: raw; bold: EMA. The test set is "
             f"evaluated whole; the train set on its first {cost.EVAL_MAX:,} examples at most."),
    "acc": ("Accuracy", "Classification accuracy on the same split."),
    "step_size": ("Step size", "AGD's automatic η = log((1 + √(1 + 4G)) / 2) from its gradient summary G "
                  "(lower panel); baselines' learning rates dashed (Prodigy and D-Adapt Adam: the step they "
                  "adapt as they train, d·lr; Muon: its lr, before its shape factor √max(1, d_out/d_in)). "
                  f"Dotted on the G panel: √(11/t), {paper.ref('lemma8')}'s bound on the smallest G so far, "
                  f"proved for the square loss on the full training set under {paper.ref('assumption1')} and "
                  f"{paper.ref('assumption2')} (gradients of stable rank 1): here G is a minibatch's, the loss "
                  "may be cross-entropy and the gradient stable rank is measured below, so it is a reference, "
                  "not a guarantee."),
    "rel_update": ("Relative update per layer", "‖ΔW‖_F / ‖W‖_F each step: the step size that compares across "
                   "optimisers. Line: mean over layers; band: min to max."),
    "w_spec_scaled": ("Weight spectral norm, scaled", "‖W_l‖_* / √(d_out / d_in) per layer (light: first "
                      "layer, dark: last); ‖·‖_* is the spectral norm, the largest singular value (the "
                      "paper's notation, not the nuclear norm). AGD's initialisation sets it to 1 (a first conv layer with more "
                      "outputs than inputs starts lower: about 0.5, 0.48–0.54 over seeds, for a 64×3×3×3 kernel), and each AGD "
                      "step moves it by at most η/L (Weyl's inequality, "
                      f"{paper.ref('sec3')}): the shaded band is every value AGD's steps could have reached "
                      "from where the layers started. AGD does not pull it back towards 1."),
    "w_srank": ("Stable rank of the weights", "‖W‖_F² / ‖W‖_*² per layer (rows) and step (columns); ‖·‖_* "
                "is the spectral norm (largest singular value)."),
    "g_srank": ("Stable rank of the gradients", f"{paper.ref('assumption2')} of the paper takes it to be 1 "
                "(the gradient close to rank one); this shows how close it is."),
    "u_srank": ("Stable rank of the updates", "‖ΔW‖_F² / ‖ΔW‖_*² of each step's update: AGD's is its "
                "normalised gradient's (near 1), Adam's starts near it (the sign of a nearly rank-one gradient) "
                "and grows slowly, Muon's orthogonalised step is many times higher."),
}
BOUNDARY_HELP = ("Decision boundary", "Each optimiser's prediction over the plane, computed by the worker "
                 "as it trains and stored with the run.")
