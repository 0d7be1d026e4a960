"""Real-browser fixtures: the app under `streamlit run` against a temporary run store, and
Playwright driving Debian's chromium. Without /usr/bin/chromium the tests are skipped, except on
CI (env CI set), where a missing browser is a failure."""

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server import chromium_available, launch_chromium, running_app  # noqa: E402


def _need_chromium():
    if not chromium_available():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing at /usr/bin/chromium; CI must install it (apt-get install chromium)")
        pytest.skip("chromium is not installed (/usr/bin/chromium); browser tests skipped locally")


def _app(tmp_path, workers: int, env: dict | None = None):
    _need_chromium()
    return running_app(tmp_path / "runs.db", tmp_path / "streamlit.log",
                       env={"AGD_VIZ_MAX_WORKERS": str(workers), **(env or {})})


@contextmanager
def _page_at(url: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": 1500, "height": 1000})
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        pg.base_url = url
        yield pg
        context.close()
        browser.close()


@pytest.fixture
def app_url(tmp_path):
    # Two worker slots, as on a laptop with 4+ cores.
    with _app(tmp_path, 2) as url:
        yield url


@pytest.fixture
def page(app_url):
    with _page_at(app_url) as pg:
        yield pg


@pytest.fixture
def one_slot_page(tmp_path):
    """The app with one worker slot (the default on a 2-core laptop and on a one-GPU box)."""
    with _app(tmp_path, 1) as url, _page_at(url) as pg:
        yield pg


@pytest.fixture(params=["app", "plotly_chart"])
def renderer_page(request, tmp_path):
    """The app drawing its charts with each renderer of app_widgets.chart: its own (static/
    served, as .streamlit/config.toml says) and st.plotly_chart (a server without static serving).
    `page.renderer` names it; `page.scripts` lists the script files the page fetched."""
    env = {} if request.param == "app" else {"STREAMLIT_SERVER_ENABLE_STATIC_SERVING": "false"}
    with _app(tmp_path, 2, env) as url, _page_at(url) as pg:
        pg.renderer, pg.scripts = request.param, []
        pg.on("request", lambda r: pg.scripts.append(r.url.rsplit("/", 1)[-1]) if r.resource_type == "script" else None)
        yield pg
