"""Faults a shared demo server meets (issue 8), each with real processes and a real database
file: a diverging optimiser beside AGD, a worker killed with SIGKILL, the app server killed with
SIGKILL mid-run and restarted, the power pulled (server and workers killed at once), a foreign
or corrupt file as the run store, a full queue, and a scan of the source for the patterns that
let user input reach HTML, a shell, a path or pickle.

The server tests drive a real `streamlit run app.py` through its websocket
(benchmarks/st_client.py): the Live page's own Start button starts the runs, exactly as a
browser's click would.
"""

import ast
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from agd_viz import jobs
from agd_viz.procs import pid_alive as _pid_alive
from agd_viz.store import Store
from benchmarks.st_client import Session, free_port, healthy

# Real worker processes and servers, seconds each: left out of the quick loop (README, "Tests").
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
FINAL = ("finished", "failed", "cancelled", "diverged", "interrupted")
# Long enough to be mid-run whenever it is killed (20,000 steps is the Live page's maximum).
LONG = "depth=2&width=16&batch_size=32&steps=20000&optimizers=agd,sgd&sgd_lr=0.1"


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.1)


def integrity(db: Path) -> str:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def contiguous(store, rid) -> int:
    """The last step of a run's metrics, asserting none is missing before it."""
    steps = list(store.metrics(rid)["step"])
    assert steps == list(range(len(steps))), f"run {rid}: steps have gaps"
    return steps[-1]


# -------------------------------------------------------------------------------------------------
# A real server


@contextlib.contextmanager
def server(db: Path, log: Path, env: dict | None = None):
    """`streamlit run app.py` on a free port over `db`; yields (url, process). Left running by the
    test or killed by it; whatever is still alive at the end is stopped."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    full = {**os.environ, "AGD_VIZ_DB": str(db), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "AGD_VIZ_MAX_WORKERS": "2", **(env or {})}
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url) or proc.poll() is not None, 90, "the server to be healthy")
        assert proc.poll() is None, log.read_text()[-2000:]
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def kill_leftover_workers(db: Path) -> None:
    """Workers the servers of a test started and that outlived it (only on a failed test)."""
    if not db.exists():
        return
    store = Store(db)
    try:
        for row in store.list_runs(status=["running"]):
            if row["pid"] and _pid_alive(row["pid"]):
                os.kill(row["pid"], signal.SIGKILL)
    finally:
        store.close()


def start_comparison(url: str) -> None:
    with Session(url, query=LONG) as s:
        page = s.run()
        assert not page.exceptions, page.exceptions
        page = s.run(triggers=(page.widget("lv_start"),))
        assert not page.exceptions, page.exceptions
        assert not [a for a in page.alerts if a.startswith("Could not start")], page.alerts


def training(store, n_runs: int, min_step: int = 20):
    rows = [r for r in store.list_runs() if r["status"] == "running"]
    if len(rows) == n_runs and all((r["step"] or 0) >= min_step and r["pid"] for r in rows):
        return sorted(rows, key=lambda r: r["id"])
    return None


def test_app_killed_mid_run_loses_nothing_and_power_cut_recovers(tmp_path):
    db, log = tmp_path / "runs.db", tmp_path / "streamlit.log"
    try:
        # 1. A worker dies (SIGKILL, as the OOM killer would), then the server dies (SIGKILL). Two
        #    attendees' comparisons train, one worker each (a job trains a comparison's runs).
        with server(db, log) as (url, proc):
            start_comparison(url)
            start_comparison(url)
            store = Store(db)
            a1, b1, a2, b2 = wait_for(lambda: training(store, 4), 90, "both comparisons to train")
            assert a1["pid"] == b1["pid"] != a2["pid"] == b2["pid"]
            os.kill(a1["pid"], signal.SIGKILL)
            for r in (a1, b1):
                wait_for(lambda: store.get_run(r["id"])["status"] == "failed", 10, "the killed job's runs to fail")
                assert "killed by signal SIGKILL" in store.get_run(r["id"])["error"]
            committed = {r["id"]: contiguous(store, r["id"]) for r in (a1, b1)}
            before = store.get_run(b2["id"])["step"]
            wait_for(lambda: store.get_run(b2["id"])["step"] > before, 15, "the other comparison to carry on")

            committed.update({r["id"]: contiguous(store, r["id"]) for r in (a2, b2)})
            proc.kill()  # the app server, mid-run
            proc.wait(5)
            wait_for(lambda: not _pid_alive(a2["pid"]), 10, "the orphaned worker to exit by itself")
            for r in (a2, b2):
                row = wait_for(lambda: (x := store.get_run(r["id"]))["status"] in FINAL and x, 5, "its runs to end")
                assert row["status"] == "interrupted" and "exited" in row["error"]
            store.close()

        # 2. Restart: the store opens, everything committed before the kills is there, the page
        #    says what happened; then the power is pulled (server and workers at once).
        assert integrity(db) == "ok"
        with server(db, log) as (url, proc):
            for group, words in ((a1["group_id"], "Failed: worker was killed by signal SIGKILL"),
                                 (a2["group_id"], "Interrupted:")):
                with Session(url, query=f"group={group}") as s:  # its link (a new session starts clean)
                    page = s.run()
                    assert not page.exceptions, page.exceptions
                    assert f"Comparison {group}" in page.texts
                    assert " ".join(page.alerts).count(words) == 2  # both runs of the comparison
            store = Store(db)
            for rid, step in committed.items():
                assert contiguous(store, rid) >= step
            start_comparison(url)
            c, d = wait_for(lambda: training(store, 2), 90, "the new comparison to train")
            committed = {r["id"]: contiguous(store, r["id"]) for r in (c, d)}
            for pid in (proc.pid, c["pid"]):  # the server and the comparison's one worker
                os.kill(pid, signal.SIGKILL)
            proc.wait(5)
            store.close()

        assert integrity(db) == "ok"
        with server(db, log) as (url, proc):
            with Session(url) as s:  # the first page load creates the manager, which recovers
                assert not s.run().exceptions
            store = Store(db)
            for rid, step in committed.items():
                row = store.get_run(rid)
                assert row["status"] == "interrupted" and "process is gone" in row["error"], row
                assert contiguous(store, rid) >= step
            assert [r for r in store.list_runs() if r["status"] not in FINAL] == []
            store.close()
    finally:
        kill_leftover_workers(db)


# -------------------------------------------------------------------------------------------------
# The app in process (AppTest), real workers


@pytest.fixture
def app_db(tmp_path, monkeypatch):
    path = tmp_path / "runs.db"
    monkeypatch.setenv("AGD_VIZ_DB", str(path))
    monkeypatch.setenv("AGD_VIZ_MAX_WORKERS", "2")
    st.cache_resource.clear()
    yield path
    for manager in list(jobs._LIVE):  # the app's cached manager: stop its workers and thread
        if manager.db_path == path.resolve():
            manager.shutdown()
    st.cache_resource.clear()


def page(name: str, query=None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if query:
        at.query_params.update(query)
    return at.switch_page(f"pages/{name}.py").run()


def test_a_diverging_baseline_says_diverged_on_the_chart_while_agd_finishes(app_db):
    """SGD at lr 10 beside AGD in one comparison, through jobs -> worker -> store -> Live page.
    (Adam at lr 10 does not blow up here: its per-coordinate step is bounded by the rate.)"""
    at = page("live", {"depth": "4", "width": "32", "batch_size": "32", "steps": "60",
                       "optimizers": "agd,sgd", "sgd_lr": "10"})
    at.button(key="lv_start").click().run()
    assert not at.exception
    store = Store(app_db)
    rows = wait_for(lambda: (rs := store.list_runs()) and all(r["status"] in FINAL for r in rs) and rs,
                    90, "both runs to end")
    by_opt = {r["optimizer"]: r for r in rows}
    assert by_opt["agd"]["status"] == "finished" and by_opt["agd"]["step"] == 60
    bad = by_opt["sgd:lr=10"]
    assert bad["status"] == "diverged" and re.fullmatch(r"loss became non-finite at step \d+", bad["error"])
    at.run()
    assert not at.exception
    assert any(e.value.startswith("Diverged: loss became non\\-finite at step") for e in at.error)
    from apptest_util import figures

    loss = figures(at)[0]
    assert [a["text"] for a in loss["layout"]["annotations"]] == ["diverged"]
    marker = [t for t in loss["data"] if t.get("name") == "sgd lr=10 diverged"]
    assert marker and marker[0]["marker"]["symbol"] == "x"
    assert not any((t.get("name") or "").startswith("agd diverged") for t in loss["data"])


@pytest.mark.parametrize("content", [b"my thesis notes, not a database\n" * 20, b"SQLite format 3\x00" + b"\x17" * 400])
def test_a_foreign_or_corrupt_store_is_refused_with_a_sentence_and_left_untouched(tmp_path, monkeypatch, content):
    bad = tmp_path / "notes.db"
    bad.write_bytes(content)
    monkeypatch.setenv("AGD_VIZ_DB", str(bad))
    st.cache_resource.clear()
    for name in ("live", "sweep", "runs"):
        at = page(name)
        assert not at.exception, [e.value for e in at.exception]
        assert any(e.value.startswith("The app cannot open its run store:") for e in at.error)
    st.cache_resource.clear()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["runs"], ["export", "1"], ["train", "--depth", "2", "--width", "8", "--steps", "2"]):
        p = subprocess.run([sys.executable, "-m", "agd_viz", *args, "--db", str(bad)], capture_output=True,
                           text=True, env=env, cwd=ROOT, timeout=120)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and str(bad) in p.stderr, p.stderr
    assert bad.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]  # no -wal, -shm or logs beside it


def test_a_full_queue_is_a_polite_sentence_and_limits_are_on_the_page(app_db, monkeypatch):
    monkeypatch.setenv("AGD_VIZ_MAX_QUEUED_PER_SESSION", "1")
    monkeypatch.setenv("AGD_VIZ_MAX_STEPS", "5000")
    at = page("live", {"depth": "2", "width": "8", "steps": "10", "optimizers": "agd,adam"})
    assert not at.sidebar.expander[-1].caption  # folded, the limits are not even sent
    at.session_state["lv_limits"] = True  # the "Server limits" expander, opened
    at.run()
    limits = " ".join(c.value for c in at.sidebar.expander[-1].caption)
    assert "Steps: at most 5,000 per run." in limits and "1 per browser session (yours: 0)" in limits
    at.button(key="lv_start").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Could not start: You already have 0 runs waiting or training, and this would add 2; each "
        "session may have at most 1 at once on this shared server\\. Stop some, or wait for them to finish\\."]
    assert Store(app_db).list_runs() == []
    at.number_input(key="lv_steps").set_value(6000).run()  # over the server's step limit
    assert "This server allows at most 5,000 steps per run" in " ".join(e.value for e in at.sidebar.error)
    assert at.button(key="lv_start").disabled

    at = page("sweep")
    at.session_state["sw_limits"] = True
    at.run()
    limits = " ".join(c.value for c in at.sidebar.expander[-1].caption)
    assert "Sweeps: at most 200 runs each." in limits
    at.text_input(key="sw_depths").input("1, 2").run()
    at.text_input(key="sw_widths").input("8").run()
    # 4 runs against a share of 1: said before Start (issue 14), which stays off; the whole grid or nothing
    assert not at.exception and at.button(key="sw_start").disabled
    assert any(e.value.startswith("You already have 0 runs waiting or training, and this "
                                  "would add 4") for e in at.error)
    assert Store(app_db).list_runs() == [] and Store(app_db).list_groups() == []

    monkeypatch.setenv("AGD_VIZ_MAX_QUEUED", "lots")  # an operator's typo stops with a sentence
    st.cache_resource.clear()
    at = page("live")
    assert not at.exception
    assert [e.value for e in at.error] == ["The app cannot start: AGD\\_VIZ\\_MAX\\_QUEUED must be a whole "
                                           "number ≥ 1, got 'lots'\\."]


# -------------------------------------------------------------------------------------------------
# Source scan: user input never reaches HTML, a shell, pickle or a path unescaped

SOURCES = sorted([*ROOT.glob("agd_viz/**/*.py"), *ROOT.glob("pages/*.py"), *ROOT.glob("app*.py")])
MARKDOWN_CALLS = {"markdown", "caption", "error", "warning", "info", "success", "write", "toast", "title",
                  "header", "subheader", "exception", "latex", "progress", "expander", "metric", "button",
                  "checkbox", "toggle", "tabs", "popover", "status"}
# f-string values in Markdown that were reviewed: numbers and ids, the app's own text, or text
# already escaped into a variable (each was read in context when this list was made). Module
# constants (NAME, module.NAME[...]) and values formatted as numbers ({x:.3f}) pass without a
# review, and so does anything through md_escape.
REVIEWED = {
    "group_id", "rid", "i", "loaded", "title", "text", "wins", "both", "workers", "status.capitalize()",
    "config.describe_size()", "sw.format_duration(est)", "speed.describe()", "'s' if workers != 1 else ''",
    "live.OPTIMIZER_TITLES.get(fam, fam)", "err", "stored['run_id']", "stored['step']",
    "', '.join((f'#{i}' for i in missing))",
    "preset.title", "preset.description",  # the app's presets (live.PRESETS, live.PAPER_PRESETS)
    "install",  # the install command of an optional optimiser, from the optimiser registry
    "what",  # app_resources.job_manager: one of two fixed phrases
    "help_text[0]",  # app_widgets.plot: a chart's title, from the pages' own constants
    "optspec.title(fam)",  # an optimiser's title, from the optimiser registry
    "fmt.estimate(config.seconds(speed, workers=workers))", "fmt.plural(workers, 'worker')",  # numbers
    "verb",  # pages/live.py: "start" or "stop", from the page's own tuple
}
CONSTANT = re.compile(r"^(\w+\.)?[A-Z][A-Z0-9_]*\b")
NUMERIC_SPEC = re.compile(r"^[<>^=]?[+\- ]?#?0?\d*[,_]?(\.\d+)?[bdeEfFgGn%xXo]?$")


# Values reviewed to reach st.html unescaped: numbers, or HTML built of html.escape'd pieces.
HTML_REVIEWED = {
    "size", "pct",  # app_widgets.status_line: a font size and a percentage, both numbers
    "items",  # app_widgets.status_line: the chips, each name and value html.escape'd where built
}


def _safe_html(arg) -> bool:
    """st.html's argument holds no unescaped user text: a module constant, a choice of two, or an
    f-string whose every value is html.escape'd, number-formatted or reviewed."""
    if isinstance(arg, ast.Constant) or (isinstance(arg, ast.Name) and arg.id.isupper()):
        return True
    if isinstance(arg, ast.IfExp):
        return _safe_html(arg.body) and _safe_html(arg.orelse)
    if isinstance(arg, ast.JoinedStr):
        for sub in arg.values:
            if not isinstance(sub, ast.FormattedValue):
                continue
            v = sub.value
            if isinstance(v, ast.Call) and ast.unparse(v.func) == "html.escape":
                continue
            spec = ast.unparse(sub.format_spec)[2:-1] if sub.format_spec else ""
            if (spec and NUMERIC_SPEC.match(spec)) or ast.unparse(v) in HTML_REVIEWED:
                continue
            return False
        return True
    return False


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            yield node, name


def test_no_source_lets_user_input_reach_html_a_shell_pickle_or_unescaped_markdown():
    problems = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in ("pickle", "cPickle", "dill", "cloudpickle", "shelve", "marshal")
                       for n in names):
                    problems.append(f"{where}:{node.lineno}: imports a pickle-like module")
        for node, name in _calls(tree):
            kw = {k.arg: k.value for k in node.keywords}
            line = f"{where}:{node.lineno}"
            if "unsafe_allow_html" in kw and not (isinstance(kw["unsafe_allow_html"], ast.Constant)
                                                  and kw["unsafe_allow_html"].value is False):
                problems.append(f"{line}: unsafe_allow_html")
            if "shell" in kw and not (isinstance(kw["shell"], ast.Constant) and kw["shell"].value is False):
                problems.append(f"{line}: subprocess with shell=True")
            if isinstance(node.func, ast.Name) and name in ("eval", "exec"):
                problems.append(f"{line}: {name}()")
            if isinstance(node.func, ast.Attribute) and ast.unparse(node.func) in (
                    "os.system", "os.popen", "pd.read_pickle", "pandas.read_pickle", "joblib.load"):
                problems.append(f"{line}: {ast.unparse(node.func)}")
            if name == "load" and isinstance(node.func, ast.Attribute) and ast.unparse(node.func.value) == "torch":
                wo = kw.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    problems.append(f"{line}: torch.load without weights_only=True")
            if name == "load" and isinstance(node.func, ast.Attribute) and ast.unparse(node.func.value) in ("np", "numpy"):
                ap = kw.get("allow_pickle")
                if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                    problems.append(f"{line}: np.load with allow_pickle")
            if name == "html" and isinstance(node.func, ast.Attribute) and ast.unparse(node.func.value) == "st":
                arg = node.args[0] if node.args else None
                if not _safe_html(arg):
                    problems.append(f"{line}: st.html with something other than module constants or escaped values")
            if name in MARKDOWN_CALLS and "agd_viz" not in path.relative_to(ROOT).parts:
                args = list(node.args[:1]) + [kw[k] for k in ("body", "text", "label") if k in kw]
                for arg in args:
                    for sub in ast.walk(arg):
                        if not isinstance(sub, ast.FormattedValue):
                            continue
                        expr, spec_text = ast.unparse(sub.value), ast.unparse(sub.format_spec)[2:-1] if sub.format_spec else ""
                        escaped = isinstance(sub.value, ast.Call) and ast.unparse(sub.value.func).endswith("md_escape")
                        numeric = bool(spec_text) and NUMERIC_SPEC.match(spec_text) is not None
                        counted = expr.startswith("len(")
                        constant = CONSTANT.match(expr) is not None
                        if not (escaped or numeric or counted or constant or expr in REVIEWED):
                            problems.append(f"{line}: {{{expr}}} reaches Markdown in st.{name}() unescaped "
                                            "(md_escape it, or review it and add it to REVIEWED)")
    # agd_viz is the library: no streamlit, so nothing there renders anything
    for path in ROOT.glob("agd_viz/**/*.py"):
        if re.search(r"^\s*(import streamlit|from streamlit)", path.read_text(), re.M):
            problems.append(f"{path.relative_to(ROOT)}: imports streamlit")
    assert not problems, "\n".join(problems)


def test_a_hostile_run_name_and_error_are_shown_as_text(app_db):
    """What the CLI or another process wrote is data: a name or an error message with Markdown,
    HTML or a link stays literal on every page."""
    hostile = "<img src=x onerror=alert(1)> [click](javascript:alert(1)) **bold** :red[red]"
    store = Store(app_db)
    spec = {"dataset": "digits", "depth": 2, "width": 8, "steps": 5, "batch_size": 32, "seed": 0, "device": "cpu",
            "metrics": "full", "optimizers": ["agd"]}
    gid = store.create_group("compare", hostile, spec)
    rid = store.create_run(spec, "agd", group_id=gid, name=hostile)
    store.append_metrics(rid, [{"step": k, "t": 0.1 * k, "loss": 1.0 / (k + 1), "acc": 0.5, "eta": 0.1, "G": 1.0}
                               for k in range(6)], progress={"steps": 5})
    store.finish_run(rid, "failed", error=hostile)
    store.close()
    from agd_viz import fmt

    escaped = (fmt.md_escape(hostile),)
    for name, query, where in (("live", {"group": str(gid)}, "error"), ("runs", {"run": str(rid)}, "text"),
                               ("how_agd_works", None, "caption")):
        at = page(name, query)
        assert not at.exception, [e.value for e in at.exception]
        markdown = [e.value for kind in ("markdown", "caption", "error", "warning", "info", "success")
                    for e in at.get(kind)]
        shown = [t for t in markdown if "img src=x" in t]
        assert all(any(e in t for e in escaped) for t in shown), (name, shown)  # every special escaped
        if where == "text":  # st.text: shown as it is, never parsed
            assert any(hostile in e.value for e in at.get("text")), name
        else:
            assert any(any(e in t for e in escaped) for t in shown), (name, markdown)
        for el in at.get("markdown"):
            assert not el.proto.allow_html, (name, el.value)
