"""Process-wide resources of the Streamlit app, shared by every page and every browser session.

One `JobManager` per server process and run store (`st.cache_resource`): its queue and
concurrency cap must count every session's runs together, and its scheduler thread must not be
started twice. The store file is `$AGD_VIZ_DB` or the library's default, read on each call so a
test (or a second server) pointing the variable elsewhere gets its own manager.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import streamlit as st

from agd_viz.jobs import JobManager, default_prewarm
from agd_viz.fmt import md_escape
from agd_viz.store import StoreError, default_db_path

SESSION_KEY = "agd_session_id"


def db_path() -> Path:
    """The run store of this server: $AGD_VIZ_DB, else ./agd_viz_runs.db (resolved)."""
    return Path(default_db_path()).resolve()


@st.cache_resource(show_spinner=False)
def _job_manager(path: str) -> JobManager:
    # One pre-started worker while idle ($AGD_VIZ_PREWARM, 0 to turn off): Start then reaches the
    # first chart point without waiting for a Python process to import torch.
    return JobManager(path, prewarm=default_prewarm(1))


def job_manager() -> JobManager:
    """The shared job manager of this server process for the current run store.

    A file that is not a run store (foreign, corrupt, newer) or a malformed AGD_VIZ_* setting
    stops the page with one sentence instead of a traceback; the file is left untouched (the
    store refuses before writing) and the next page load tries again.
    """
    try:
        return _job_manager(str(db_path()))
    except (StoreError, ValueError) as exc:
        what = "open its run store" if isinstance(exc, StoreError) else "start"
        st.error(f"The app cannot {what}: {md_escape(exc)}", icon=":material/error:")
        st.stop()


def prestart() -> None:
    """Create the shared job manager now, if it can be: app.py calls this on every page's run, so
    the first page a person opens starts the pre-started worker (seconds of imports) while the page
    draws and is read, before Start is pressed (benchmarks/first_point.py). A store that cannot be
    opened is left for the page that needs it to report."""
    try:
        _job_manager(str(db_path()))
    except (StoreError, ValueError):
        pass


def session_id() -> str:
    """This browser session's tag for the job manager's per-session queue limit: random, kept in
    the session's state (a reload of the tab is a new session, as it is for Streamlit)."""
    if SESSION_KEY not in st.session_state:
        st.session_state[SESSION_KEY] = uuid.uuid4().hex
    return st.session_state[SESSION_KEY]
