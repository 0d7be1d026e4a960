"""Several browser sessions on one real server at once (benchmarks/load.py, small): each starts a
comparison while the others refresh their charts; every run must end, no page may fail, the
store must be consistent, and the refresh time is reported (`python -m benchmarks.load
--sessions 30` is the workshop-sized variant; its figures are in docs/reliability.md)."""

import pytest

from benchmarks import load

# Real worker processes and servers, seconds each: left out of the quick loop (README, "Tests").
pytestmark = pytest.mark.slow


def test_four_sessions_starting_runs_and_polling_charts(tmp_path, capsys):
    r = load.run(sessions=4, steps=30, workers=2, timeout=120, keep=tmp_path)
    assert r["problems"] == []
    with capsys.disabled():
        print(f"\nload test: {r['sessions']} sessions, {r['runs']} runs, {r['refreshes']} refreshes: "
              f"p50 {r['refresh_p50_s']:.3f} s, p95 {r['refresh_p95_s']:.3f} s, max {r['refresh_max_s']:.3f} s; "
              f"done in {r['elapsed_s']:.0f} s")
    assert r["refreshes"] >= 4  # every session saw its charts at least once while or after training
    # A refresh that takes seconds on a quiet 2-core box would mean the server is starved.
    assert r["refresh_p95_s"] < 5.0
