"""The Live training page in a real browser: Start trains, the charts grow while it trains, the
run survives leaving the page and coming back, and Stop ends it and the page stops polling; with
one worker slot, the comparison's runs train side by side in lockstep."""

import re
import time

import pytest

from agd_viz.train import SYNC_EVERY_STEPS
from agd_viz.views.live_panel import MAX_REFRESH_S
from server import PLOT_POINTS_JS, RUN_STEPS_JS, count_runs, wait_idle

pytestmark = pytest.mark.browser

# Slow enough per step (tens of steps/s on one core) that the loss chart is still short of its
# 1000-point downsampling budget when it is read twice, and long enough that it is still training
# after leaving and coming back, on a fast or a busy machine; Stop ends it.
CONFIG = "depth=8&width=256&batch_size=256&steps=20000&optimizers=agd,adam&adam_lr=1e-3"


def plots(page):
    return page.evaluate(PLOT_POINTS_JS)


def wait_for_points(page, at_least=1, timeout_s=60.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        found = plots(page)
        if len(found) >= 4 and found[0]["points"] >= at_least:  # the per-layer charts are folded away
            return found
        page.wait_for_timeout(250)
    raise AssertionError(f"charts did not fill in within {timeout_s} s: {plots(page)}")


def test_start_leave_return_stop(page):
    page.goto(f"{page.base_url}/?{CONFIG}")
    wait_idle(page)
    assert page.get_by_role("heading", name="Live training").is_visible()
    assert page.get_by_text("No runs yet").is_visible()

    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Comparison 1").wait_for()
    wait_idle(page)
    # The link names the comparison, whose settings are the form's: nothing else to carry.
    assert page.url.endswith("/?group=1"), page.url

    first = wait_for_points(page, at_least=20)
    page.wait_for_timeout(2500)
    wait_idle(page)
    second = plots(page)
    assert second[0]["points"] > first[0]["points"], (first[0], second[0])
    assert second[0]["maxX"] > first[0]["maxX"]
    assert page.get_by_text(re.compile(r"^running · step [\d,]+ / 20,000")).first.is_visible()
    assert page.get_by_text("steps/s").first.is_visible()

    # Leave for another page while it trains, then come back through the menu.
    page.get_by_role("link", name="How AGD works").click()
    page.get_by_role("heading", name="How AGD works").wait_for()
    wait_idle(page)
    page.wait_for_timeout(1500)
    page.get_by_role("link", name="Live training").click()
    page.get_by_text("Comparison 1").wait_for()
    wait_idle(page)
    back = wait_for_points(page, at_least=second[0]["points"])
    assert back[0]["maxX"] >= second[0]["maxX"]
    # Its progress line is there again.
    assert page.get_by_text(re.compile(r"^(running|finished) · step [\d,]+ / 20,000")).first.is_visible()
    assert "group=1" in page.url

    # The charts poll while it trains (at most MAX_REFRESH_S apart on a busy machine); Stop ends
    # the runs and with them the polling.
    assert page.get_by_text(re.compile(r"^running · step")).first.is_visible()
    assert count_runs(page, MAX_REFRESH_S + 0.5) >= 1
    page.get_by_role("button", name="Stop").click()
    page.get_by_text(re.compile(r"^cancelled · step")).first.wait_for()
    wait_idle(page)
    assert page.get_by_role("button", name="Start training").is_enabled()
    assert count_runs(page, 3.0) == 0


# The step in each run's progress line, in the page's run order.
PROGRESS = re.compile(r"^(?:running|finished) · step ([\d,]+) / 20,000")


def progress_steps(page) -> list[int]:
    texts = page.get_by_text(PROGRESS).all_inner_texts()
    return [int(PROGRESS.match(t).group(1).replace(",", "")) for t in texts]


def test_one_worker_slot_trains_agd_and_adam_side_by_side(one_slot_page):
    page = one_slot_page
    page.goto(f"{page.base_url}/?steps=20000")  # the default comparison, long enough to watch
    wait_idle(page)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Comparison 1").wait_for()
    wait_for_points(page, at_least=4)

    samples = []  # (progress steps per run, chart steps per run), about a second apart
    end = time.monotonic() + 90
    while time.monotonic() < end and len(samples) < 6:
        page.wait_for_timeout(900)
        wait_idle(page)
        shown, chart = progress_steps(page), page.evaluate(RUN_STEPS_JS)
        assert len(shown) == 2 and len(chart) == 2, (shown, chart)
        samples.append((shown, sorted(chart.values())))
    assert len(samples) >= 5, samples
    for shown, chart in samples:
        # One worker trains both on the same batches: they are never more than one sync batch apart.
        assert abs(shown[0] - shown[1]) <= SYNC_EVERY_STEPS, samples
        assert chart[1] - chart[0] <= SYNC_EVERY_STEPS, samples
    # Both gain points in the same seconds. (The worker writes the runs' batches one after the
    # other, so a refresh may fall between the two writes: then one run has moved on and the other
    # follows at the next refresh, still within one sync batch, as checked above.)
    moves = [(b[1][0] > a[1][0], b[1][1] > a[1][1]) for a, b in zip(samples, samples[1:])]
    assert sum(both for both in map(all, moves)) >= len(moves) // 2, samples
    assert samples[-1][1][0] > samples[0][1][0] and samples[-1][1][1] > samples[0][1][1], samples
    page.get_by_role("button", name="Stop").click()
    page.get_by_text(re.compile(r"^cancelled · step")).first.wait_for()
