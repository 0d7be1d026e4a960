"""The Live page's set of figures, built in one call per refresh within a size budget."""

from __future__ import annotations

from typing import Iterable, Sequence

import plotly.graph_objects as go

from agd_viz.charts.common import RunData
from agd_viz.charts.layers import layer_heatmaps
from agd_viz.charts.lines import layer_lines_figure, loss_figure, rel_update_figure, step_size_figure

__all__ = ["all_live_figures", "hold_x", "LIVE_FIGURES"]

LIVE_FIGURES = ("loss", "acc", "step_size", "rel_update", "w_spec_scaled", "w_srank", "g_srank", "u_srank")


def all_live_figures(runs: Sequence[RunData], *, smoothing: float = 0.6, x: str = "step",
                     split: str = "batch", log_loss: bool = False, max_points: int = 800,
                     layer_points: int = 100, heatmap_cols: int = 120,
                     names: Iterable[str] | None = None, lemma8_gaps: str | None = None) -> dict[str, go.Figure]:
    """Every figure the Live page shows, keyed by name (see LIVE_FIGURES); with `names`, only
    those (the page builds the per-layer figures only while they are shown).

    The point budgets keep 4 runs × 20k steps × 32 layers near 0.7 MB of figure JSON per refresh
    (0.8 MB with x="time"): lines ≤800 points (SVG, so no WebGL context is used), per-layer lines
    ≤100 points, heatmaps ≤120 step bins. Plotly escapes every "/" of its base64 arrays as
    "\\u002f", which costs ~30% on values near 1, hence the margin.
    """
    build = {
        "loss": lambda: loss_figure(runs, "loss", split, smoothing, log_loss, x, max_points=max_points),
        "acc": lambda: loss_figure(runs, "acc", split, smoothing, False, x, max_points=max_points),
        "step_size": lambda: step_size_figure(runs, x, max_points=max_points, lemma8_gaps=lemma8_gaps),
        "rel_update": lambda: rel_update_figure(runs, None, x, max_points=max_points),
        "w_spec_scaled": lambda: layer_lines_figure(runs, "w_spec_scaled", None, x, max_points=layer_points),
        "w_srank": lambda: layer_heatmaps(runs, "w_srank", max_cols=heatmap_cols),
        "g_srank": lambda: layer_heatmaps(runs, "g_srank", max_cols=heatmap_cols),
        "u_srank": lambda: layer_heatmaps(runs, "u_srank", max_cols=heatmap_cols),
    }
    wanted = LIVE_FIGURES if names is None else [n for n in LIVE_FIGURES if n in set(names)]
    return {name: build[name]() for name in wanted}


def hold_x(figures: dict[str, go.Figure], lo: float, hi: float) -> dict[str, go.Figure]:
    """Every figure's x axes fixed at lo..hi (a replay: the whole run's range, so the curves grow
    across a still frame instead of the axis stretching with them)."""
    for fig in figures.values():
        fig.update_xaxes(range=[lo, hi], autorange=False)
    return figures
