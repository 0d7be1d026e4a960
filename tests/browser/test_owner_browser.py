"""Issue 14 in a real browser: a session's ownership of its comparison survives a reload (the owner
token lives in a cookie the page writes), and another browser (another attendee) neither lands on
it nor can stop it, though its link shows it."""

import re

import pytest

from agd_viz.store import Store
from server import wait_idle

pytestmark = pytest.mark.browser

# Long enough to be training through the reloads on a busy machine; stopped at the end.
CONFIG = "depth=2&width=16&batch_size=32&steps=20000&optimizers=agd,adam&adam_lr=1e-3"


def stop_button(page):
    return page.get_by_role("button", name="Stop", exact=True)


def test_ownership_survives_a_reload_and_another_browser_can_only_watch(page, tmp_path):
    page.goto(f"{page.base_url}/?{CONFIG}")
    wait_idle(page)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Comparison 1").wait_for()
    wait_idle(page)
    assert stop_button(page).is_enabled()
    cookie = [c for c in page.context.cookies() if c["name"] == "agd_owner"]
    assert cookie and re.fullmatch(r"[0-9a-f]{32}", cookie[0]["value"]), page.context.cookies()

    # A reload, and a fresh visit without the link: still this attendee's comparison, Stop enabled.
    for url in (page.url, page.base_url):
        page.goto(url)
        page.get_by_text("Comparison 1").wait_for()
        wait_idle(page)
        assert stop_button(page).is_enabled(), url

    # Another browser: starts clean; the link shows the comparison, read-only.
    ctx = page.context.browser.new_context(viewport={"width": 1500, "height": 1000})
    try:
        them = ctx.new_page()
        them.set_default_timeout(60_000)
        them.goto(page.base_url)
        wait_idle(them)
        assert them.get_by_text("No runs yet").is_visible()
        assert not them.get_by_text("Comparison 1").count()
        them.goto(f"{page.base_url}/?group=1")
        them.get_by_text("Comparison 1").wait_for()
        wait_idle(them)
        assert stop_button(them).is_disabled()
        assert them.get_by_text(re.compile(r"^running · step")).first.is_visible()
    finally:
        ctx.close()

    stop_button(page).click()
    wait_idle(page)
    page.get_by_text(re.compile(r"^cancelled · step")).first.wait_for()
    store = Store(tmp_path / "runs.db")
    assert [r["status"] for r in store.list_runs()] == ["cancelled", "cancelled"]
    store.close()
