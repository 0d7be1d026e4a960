"""The layer charts have resolution: the automatic per-layer cadence (cost.resolved_layer_every)
gives a 300-step run at least 60 columns of stable rank and a run of up to 2,000 steps at least 100,
and those columns reach the Live page's heatmaps (which bin to at most 120); longer runs keep the
~1,000-record cap."""

import numpy as np
import pandas as pd
import pytest

from agd_viz import charts, cost
from agd_viz.charts.common import _bin_steps
from agd_viz.spec import RunSpec
from agd_viz.store import LAYER_METRICS


def logged_steps(steps: int) -> list[int]:
    """The steps train.run records per-layer metrics at (train._Cadence.probes, and step 0)."""
    every = cost.resolved_layer_every(RunSpec(steps=steps))
    return sorted({0, 1, steps, *range(every, steps + 1, every)})


def live_heatmap_columns(steps: int, layers: int = 8) -> int:
    logged = logged_steps(steps)
    rows = [{"step": s, "layer": l, **{m: 1.0 + l + s / steps for m in LAYER_METRICS}}
            for s in logged for l in range(layers)]
    scalars = pd.DataFrame({"step": np.arange(steps + 1), "t": np.arange(steps + 1) * 0.01,
                            "loss": np.linspace(2, 0.1, steps + 1)})
    runs = [charts.RunData(run_id=1, label="agd", optimizer="agd", scalars=scalars,
                           layers=pd.DataFrame(rows), status="running")]
    figs = charts.all_live_figures(runs)  # the Live page's call
    widths = {len(t.x) for name in ("w_srank", "g_srank") for t in figs[name].data if t.type == "heatmap"}
    assert len(widths) == 1
    return widths.pop()


def test_a_default_300_step_run_has_60_columns_per_layer():
    assert RunSpec().steps == 300
    assert len(logged_steps(300)) >= 60
    assert live_heatmap_columns(300) >= 60


@pytest.mark.parametrize("steps", [500, 800, 1000, 1300, 1700, 2000])
def test_runs_of_up_to_2000_steps_have_100_columns(steps):
    assert len(logged_steps(steps)) >= 100
    assert live_heatmap_columns(steps) >= 100


@pytest.mark.parametrize("steps", [5_000, 50_000, 1_000_000])
def test_long_runs_keep_about_a_thousand_records(steps):
    assert 100 <= len(logged_steps(steps)) <= cost.MAX_LAYER_RECORDS + 3


def test_binning_keeps_the_full_width_just_above_the_limit():
    for n in (121, 150, 239, 240, 3001):
        x, z = _bin_steps(np.arange(n), np.ones((n, 2)), 120)
        assert z.shape == (2, 120) and len(x) == 120
        assert np.all(np.diff(x) > 0)
    x, z = _bin_steps(np.arange(7), np.arange(14.0).reshape(7, 2), 120)  # nothing to bin
    assert z.shape == (2, 7)
