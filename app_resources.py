"""Process-wide resources of the Streamlit app, shared by every page and every browser session.

One `JobManager` per server process and run store (`st.cache_resource`): its queue and
concurrency cap must count every session's runs together, and its scheduler thread must not be
started twice. The store file is `$AGD_VIZ_DB` or the library's default, read on each call so a
test (or a second server) pointing the variable elsewhere gets its own manager.

Who a session is (docs/reliability.md, "Sessions own their work"): a random owner token, kept in
the session's state and, so that a reload of the tab is the same attendee, in a browser cookie
(`agd_owner`, written by a tiny same-origin iframe, read back through `st.context.cookies` when the
next session connects). The job manager records a hash of it (`owner_id`) with every group and
run the session starts, shares the queue by it, and stops or deletes only runs recorded with it,
unless the session holds the server's operator key ($AGD_VIZ_ADMIN_KEY, entered in the sidebar).
The token itself never leaves this module and the browser.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import uuid
from pathlib import Path

import streamlit as st

from agd_viz import fmt
from agd_viz import spec as spec_mod
from agd_viz.cluster import ClusterError
from agd_viz.cluster import from_env as cluster_from_env
from agd_viz.jobs import JobManager, default_prewarm
from agd_viz.fmt import md_escape
from agd_viz.store import StoreError, default_db_path

SESSION_KEY = "agd_session_id"  # this session's owner token
OPERATOR_KEY = "agd_operator_key"  # the operator key this session entered, once it matched
OWNER_COOKIE = "agd_owner"
_FIRST_PAGE_DRAWN = "agd_first_page_drawn"
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
# An iframe of the page's own origin (Streamlit's sandbox allows same-origin scripts) writing the
# page's cookie: the IFrame code is already loaded for the Live page's Copy link, where a script
# component would bring ~200 kB more to every cold page (benchmarks/cold_draw.py). TOKEN is
# replaced by a token checked against _TOKEN first: 32 hex digits, nothing else reaches the script.
_COOKIE_HTML = """<script>
window.parent.document.cookie = "agd_owner=TOKEN; path=/; max-age=31536000; SameSite=Strict";
</script>"""
log = logging.getLogger("agd_viz.app")
_LOGGED: set[str] = set()  # messages already in the server log: one line per incident


def db_path() -> Path:
    """The run store of this server: $AGD_VIZ_DB, else ./agd_viz_runs.db (resolved)."""
    return Path(default_db_path()).resolve()


@st.cache_resource(show_spinner=False)
def _job_manager(path: str) -> JobManager:
    # One pre-started worker while idle ($AGD_VIZ_PREWARM, 0 to turn off): Start then reaches the
    # first chart point without waiting for a Python process to import torch.
    # With $AGD_VIZ_RAY_ADDRESS, jobs run on that Ray cluster instead (docs/cluster.md); Ray is
    # imported only then.
    backend = cluster_from_env(path)
    try:
        return JobManager(path, prewarm=default_prewarm(1), backend=backend)
    except BaseException:
        if backend is not None:
            backend.close()
        raise


def _log_once(text: str) -> None:
    if text not in _LOGGED:
        _LOGGED.add(text)
        log.error("%s", text)


def job_manager() -> JobManager:
    """The shared job manager of this server process for the current run store.

    A file that is not a run store (foreign, corrupt, newer) or a malformed AGD_VIZ_* setting
    stops the page with one sentence instead of a traceback; the file is left untouched (the
    store refuses before writing) and the next page load tries again. The sentence names no
    server path (every attendee sees it); the server log gets the full text, once.
    """
    try:
        return _job_manager(str(db_path()))
    except (StoreError, ValueError, ClusterError) as exc:
        what = "open its run store" if isinstance(exc, StoreError) else "start"
        _log_once(f"agd_viz: the app cannot {what}: {exc}")
        text = fmt.hide_paths(str(exc).replace(str(db_path()), "its file"))
        st.error(f"The app cannot {what}: {md_escape(text)}", icon=":material/error:")
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


def store_notice() -> None:
    """On every page (app.py): say so when the run store cannot record runs any more (read-only,
    or its file deleted while the server runs). Nothing when the store cannot even be opened:
    the page says that itself."""
    try:
        manager = _job_manager(str(db_path()))
    except (StoreError, ValueError):
        return
    problem = manager.store.problem()
    if problem is not None:
        st.error(md_escape(problem), icon=":material/database:")


# -------------------------------------------------------------------------------------------------
# Who this session is


def _cookie_token() -> str | None:
    try:
        value = st.context.cookies.get(OWNER_COOKIE)
    except Exception:  # noqa: BLE001 - no browser (AppTest, a bare websocket): no cookie
        return None
    return value if isinstance(value, str) and _TOKEN.match(value) else None


def _token() -> str:
    """This session's owner token: the browser's cookie if it has one, else a new random one."""
    ss = st.session_state
    if not isinstance(ss.get(SESSION_KEY), str) or not _TOKEN.match(ss[SESSION_KEY]):
        ss[SESSION_KEY] = _cookie_token() or uuid.uuid4().hex
    return ss[SESSION_KEY]


def session_id() -> str:
    """Who this browser session is to the job manager (its owner id): a hash of the session's
    owner token, so the store never holds the token itself. The same after a reload of the tab,
    and in another tab of the same browser (the cookie): an attendee's share of the queue is
    theirs, however many tabs they open."""
    return hashlib.sha256(f"agd_viz owner {_token()}".encode()).hexdigest()[:32]


def keep_owner_cookie() -> None:
    """Called by app.py on every run: while the browser's cookie does not hold this session's
    token, draw the invisible frame that writes it (the next session of this browser then reads
    it back). Not on a session's first page: someone who only opened a link has nothing to keep
    yet, and a cold page draws its charts sooner without the frame (benchmarks/cold_draw.py); any
    click (Start among them) reruns the page, which writes it."""
    ss = st.session_state
    if not ss.get(_FIRST_PAGE_DRAWN):
        ss[_FIRST_PAGE_DRAWN] = True
        return
    token = _token()
    if _cookie_token() != token and _TOKEN.match(token):
        st.sidebar.iframe(_COOKIE_HTML.replace("TOKEN", token), height=1, width=1)


# -------------------------------------------------------------------------------------------------
# The operator


def operator_key() -> str | None:
    """The operator key this session entered (the job manager checks it again on every stop and
    delete), or None."""
    key = st.session_state.get(OPERATOR_KEY)
    return key if isinstance(key, str) and _is_admin(key) else None


def _is_admin(key: str | None) -> bool:
    admin = spec_mod.admin_key()
    return bool(admin and key) and hmac.compare_digest(str(key).encode(), admin.encode())


def _enter_key() -> None:
    entered = st.session_state.pop("agd_operator_entry", "")
    if _is_admin(entered):
        st.session_state[OPERATOR_KEY] = entered
        st.session_state.pop("agd_operator_wrong", None)
    else:
        st.session_state["agd_operator_wrong"] = True


def operator_box() -> None:
    """In the sidebar of every page (app.py), only on a server with an operator key: enter it to
    stop and delete anyone's runs; leave to give it up."""
    if spec_mod.admin_key() is None:
        return
    with st.sidebar.expander("Operator", icon=":material/admin_panel_settings:"):
        if operator_key():
            st.caption("You hold the operator key: you can stop and delete anyone's runs.")
            st.button("Leave operator mode", key="agd_operator_leave",
                      on_click=lambda: st.session_state.pop(OPERATOR_KEY, None))
            return
        st.text_input("Operator key", type="password", key="agd_operator_entry", on_change=_enter_key,
                      help="The server's AGD_VIZ_ADMIN_KEY: whoever holds it may stop and delete any run.")
        if st.session_state.pop("agd_operator_wrong", False):
            st.caption("That is not the operator key.")
