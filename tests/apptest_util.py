"""Plumbing shared by the AppTest page tests: open a page through app.py, and an app-store fixture."""

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from agd_viz import jobs
from agd_viz.store import Store

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


def open_page(page: str, query=None) -> AppTest:
    """Run app.py (navigation, shared resources), then switch to `page` with an optional URL query."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if query:
        at.query_params.update(query)
    return at.switch_page(page).run()


def clean(at):
    assert not at.exception, [e.value for e in at.exception]
    return at


@dataclass
class Chart:
    """A chart as the page sent it: by the app's renderer (app_widgets.chart) or st.plotly_chart."""

    key: str | None
    figure: dict
    config: dict
    renderer: str  # "app" or "plotly_chart"
    theme: str = ""  # st.plotly_chart's theme ("" = off)


def charts_of(at) -> list[Chart]:
    """Every chart of the page, in page order."""
    out = []
    for el in at._tree:
        if el.type == "plotly_chart":
            out.append(Chart(el.key, json.loads(el.proto.spec), json.loads(el.proto.config or "{}"), "plotly_chart",
                             el.proto.theme))
        elif el.type == "bidi_component" and el.proto.component_name == "agd_viz_chart":
            data = json.loads(el.proto.json)
            out.append(Chart(data["key"], json.loads(data["spec"]), data["config"], "app"))
    return out


def figures(at) -> list[dict]:
    return [c.figure for c in charts_of(at)]


@contextmanager
def option(name: str, value):
    """Streamlit config option `name` set to `value` inside the block (AppTest runs in-process)."""
    from streamlit import config

    was = config.get_option(name)
    config.set_option(name, value)
    try:
        yield
    finally:
        config.set_option(name, was)


@contextmanager
def app_store(path: Path, monkeypatch, max_workers: int = 2):
    """Point the app at a fresh store; afterwards stop the cached manager's workers and thread."""
    monkeypatch.setenv("AGD_VIZ_DB", str(path))
    monkeypatch.setenv("AGD_VIZ_MAX_WORKERS", str(max_workers))
    st.cache_resource.clear()
    try:
        yield path
    finally:
        for manager in list(jobs._LIVE):
            if manager.db_path == path.resolve():
                manager.shutdown()
        st.cache_resource.clear()


def wait_final(db, deadline_s: float = 120.0) -> list[dict]:
    """Every run in the store once none is queued or running (by id), or fail after the deadline."""
    store = Store(db)
    try:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            runs = store.list_runs()
            if runs and all(r["status"] not in ("queued", "running") for r in runs):
                return sorted(runs, key=lambda r: r["id"])
            time.sleep(0.3)
        raise AssertionError(f"runs still active after {deadline_s} s: {[(r['id'], r['status']) for r in runs]}")
    finally:
        store.close()
