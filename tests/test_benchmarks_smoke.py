"""Every benchmark's tiny mode runs and prints its result line, so the scripts behind
docs/performance.md do not rot. No timings are asserted: only what does not depend on the machine
(optimiser state sizes, estimate accuracy, figure JSON size)."""

import importlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import all as bench_all  # noqa: E402

TINY = {
    "instrumentation": ["--tiny"],
    "plain_loop": ["--tiny"],
    "optimizer_step": ["--tiny"],
    "stable_rank": ["--tiny"],
    "store_sink": ["--tiny"],
    "ui_figures": ["--tiny"],
    "gpu": ["--device", "cpu", "--small"],
}


def run(name, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.main(TINY[name]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["benchmark"] == name
    assert len(out) > 2  # a table before the JSON line
    return result


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_mode_prints_a_table_and_its_json_line(name, capsys):
    result = run(name, capsys)
    for row in bench_all.summary_rows(name, result):  # the summary understands every result
        assert len(row) == 4
    if name == "optimizer_step":
        for r in result["results"]:
            assert r["state_bytes_agd"] == 0
            assert r["adam_state_over_weights"] == pytest.approx(2.0, abs=0.01)
    if name == "stable_rank":
        assert all(max(a["max_rel_err_w_srank"], a["max_rel_err_g_srank"]) < 0.01 for a in result["accuracy"])
    if name == "ui_figures":
        assert all(r["json_bytes"] < 1_000_000 for r in result["results"])
    if name == "gpu":
        assert set(result["throughput"]["steps_per_s"]) == {"bare", "none", "auto", "every"}


@pytest.mark.slow
def test_ray_cluster_tiny_mode_runs_on_its_own_local_cluster():
    """benchmarks/ray_cluster.py starts Ray clusters of its own: in a process of its own, as
    benchmarks.all runs it (Ray reads its loopback settings at import)."""
    import importlib.util
    import subprocess

    # Not importorskip: importing Ray here would fix its settings for this whole test process
    # before tests/test_cluster.py sets its loopback ones.
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed")
    out = subprocess.run([sys.executable, "-m", "benchmarks.ray_cluster", "--tiny"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "ray_cluster" and {"overhead", "sweep", "ingest"} <= set(result)
    assert result["ingest"]["thinning"]["kept_evaluated_and_final"]
    for row in bench_all.summary_rows("ray_cluster", result):
        assert len(row) == 4
