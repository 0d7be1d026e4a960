"""Process-wide resources of the Streamlit app, shared by every page and every browser session.

One `JobManager` per server process and run store (`st.cache_resource`): its queue and
concurrency cap must count every session's runs together, and its scheduler thread must not be
started twice. The store file is `$AGD_VIZ_DB` or the library's default, read on each call so a
test (or a second server) pointing the variable elsewhere gets its own manager.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from agd_viz.jobs import JobManager
from agd_viz.store import default_db_path


def db_path() -> Path:
    """The run store of this server: $AGD_VIZ_DB, else ./agd_viz_runs.db (resolved)."""
    return Path(default_db_path()).resolve()


@st.cache_resource(show_spinner=False)
def _job_manager(path: str) -> JobManager:
    return JobManager(path)


def job_manager() -> JobManager:
    """The shared job manager of this server process for the current run store."""
    return _job_manager(str(db_path()))
