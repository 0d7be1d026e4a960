"""A minimal Streamlit client over the app's real websocket (`/_stcore/stream`), no browser.

A browser session is, to the server, one websocket carrying protobuf messages: the client sends
`BackMsg.rerun_script` (query string, page, widget values and button triggers) and the server
answers with `ForwardMsg`s (a new session, the page's elements as deltas, then `script_finished`).
This speaks exactly that, so a test or a benchmark can drive many sessions against a real
`streamlit run` server at the cost of a socket each: start runs with the Live page's own Start
button, refresh pages, and time each refresh from request to `script_finished`.

Fragment timers: a page's `st.fragment(run_every=...)` reaches the client as an `auto_rerun`
message (fragment id, interval) and a browser then asks for that fragment alone on that beat;
`Session.timers` keeps them as the messages come, and `run(fragment=...)` asks for one.

What it does not do: keep the widget values the server sent (a rerun carries only the triggers
and values given to `run`; the app keeps the rest in its session state), media files.
"""

from __future__ import annotations

import contextlib
import html
import re
import socket
import time
import urllib.request
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.sync.client import connect

FINISHED = ForwardMsg.ScriptFinishedStatus
RERUN = FINISHED.Value("FINISHED_EARLY_FOR_RERUN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@dataclass
class Page:
    """What one script run drew: widget ids by key, texts of alerts and exceptions, chart count."""

    widgets: dict[str, str] = field(default_factory=dict)  # user key -> widget id
    disabled: set[str] = field(default_factory=set)  # user keys of widgets drawn disabled
    alerts: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # markdown, captions, headings, progress text
    charts: int = 0
    seconds: float = 0.0  # request to script_finished

    def widget(self, key: str) -> str:
        for user_key, wid in self.widgets.items():
            if user_key == key:
                return wid
        raise KeyError(f"no widget with key {key!r} on the page (have: {sorted(self.widgets)})")


def _user_key(widget_id: str) -> str | None:
    # Keyed widgets have ids "$$ID-<hash>-<user key>"; the key may itself contain "-".
    if not widget_id.startswith("$$ID-"):
        return None
    rest = widget_id[len("$$ID-"):]
    _, sep, key = rest.partition("-")
    return key if sep and key != "None" else None


class Session:
    """One browser session: a websocket to the server. Use as a context manager."""

    def __init__(self, base_url: str, query: str = "", timeout: float = 60.0, cookies: dict | None = None):
        self.base_url = base_url.rstrip("/")
        self.query = query.lstrip("?")
        self.timeout = timeout
        self.page_hash = ""
        self.page_name = ""  # a page by its URL path ("runs"), as a browser's link to it
        self.timers: dict[str, float] = {}  # fragment id -> seconds between its reruns
        ws_url = self.base_url.replace("http://", "ws://", 1) + "/_stcore/stream"
        self._stack = contextlib.ExitStack()
        # proxy=None: a test talks to its own server, never through an $http_proxy.
        # `cookies`: what a browser would send with the upgrade request (st.context.cookies reads them).
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else None
        self.ws = self._stack.enter_context(connect(ws_url, subprotocols=["streamlit"], open_timeout=timeout,
                                                    max_size=2**26, compression=None, proxy=None,
                                                    additional_headers=headers))

    def close(self) -> None:
        self._stack.close()

    def goto(self, page_name: str, query: str = "") -> "Page":
        """Open another page by its URL path ("runs", "sweep", "" for the default), as a link."""
        self.page_name, self.page_hash, self.query = page_name, "", query.lstrip("?")
        return self.run()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, triggers: tuple[str, ...] = (), values: dict | None = None,
            fragment: str | None = None) -> Page:
        """Rerun the page (or only `fragment`, as a fragment timer does): `triggers` are widget ids
        of buttons to press, `values` {widget id: value} for inputs. Returns what the final
        script run drew (after any st.rerun)."""
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = self.query
        cs.page_script_hash = self.page_hash
        cs.page_name = self.page_name
        if fragment is not None:
            cs.fragment_id, cs.is_auto_rerun = fragment, True
        for wid in triggers:
            w = cs.widget_states.widgets.add()
            w.id, w.trigger_value = wid, True
        for wid, value in (values or {}).items():
            w = cs.widget_states.widgets.add()
            w.id = wid
            if isinstance(value, bool):
                w.bool_value = value
            elif isinstance(value, int):
                w.int_value = value
            elif isinstance(value, float):
                w.double_value = value
            else:
                w.string_value = str(value)
        started = time.perf_counter()
        self.ws.send(msg.SerializeToString())
        page = Page()
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no script_finished within {self.timeout:g} s")
            fwd = ForwardMsg()
            fwd.ParseFromString(self.ws.recv(timeout=left))
            kind = fwd.WhichOneof("type")
            if kind == "new_session":
                self.page_hash = fwd.new_session.page_script_hash or self.page_hash
                page = Page()  # a fresh run (st.rerun included) redraws the page
                if not fwd.metadata.run.fragment_ids:
                    self.timers = {}  # a full run re-creates the fragments, and their timers
            elif kind == "page_info_changed":
                self.query = fwd.page_info_changed.query_string
            elif kind == "auto_rerun":
                self.timers[fwd.auto_rerun.fragment_id] = fwd.auto_rerun.interval
            elif kind == "stop_auto_rerun":
                for fid in fwd.stop_auto_rerun.fragment_ids:
                    self.timers.pop(fid, None)
            elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                self._collect(fwd.delta.new_element, page)
            elif kind == "script_finished":
                if fwd.script_finished == RERUN:
                    continue
                page.seconds = time.perf_counter() - started
                return page

    @staticmethod
    def _collect(el, page: Page) -> None:
        kind = el.WhichOneof("type")
        if kind is None:
            return
        proto = getattr(el, kind)
        wid = getattr(proto, "id", None)
        if isinstance(wid, str) and wid:
            key = _user_key(wid)
            if key:
                page.widgets[key] = wid
                if getattr(proto, "disabled", False):
                    page.disabled.add(key)
        if kind == "alert":
            page.alerts.append(proto.body)
        elif kind == "exception":
            page.exceptions.append(f"{proto.type}: {proto.message}")
        elif kind in ("markdown", "heading"):
            page.texts.append(proto.body)
        elif kind == "progress":
            page.texts.append(proto.text)
        elif kind == "html":  # e.g. a run's status line: each piece of text between tags, unescaped
            page.texts += [html.unescape(t.strip()) for t in re.split(r"<[^>]*>", proto.body) if t.strip()]
        elif kind == "plotly_chart":
            page.charts += 1
