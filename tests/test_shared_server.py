"""A workshop server many attendees share (issue 14), one test per numbered case of the issue, with
real processes and a real store: `streamlit run` servers driven over their websocket
(benchmarks/st_client.py, what a browser speaks), job managers with real or stub workers, the
command line as a subprocess.

1. sessions own their work; 2. dead owners are noticed at any time; 3. a fair queue with a
session's share in compute time and metric bytes, the Sweep page capped as Live is; 4. links that
crashed a page; 5. a store that turned read-only or vanished; 6. a damaged cached dataset; 7. and
8. the command line's one-line refusals, before anything is written; 9. deleting runs deletes
their logs; 10. no server path on a page.

Every wait is for the work to end, with a generous bound: the machine may be busy (README, Tests).
"""

import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import streamlit as st

from agd_viz import cost, downloads, jobs
from agd_viz.jobs import JobManager, NotYours, QueueFull, StoreUnavailable, log_path
from agd_viz.procs import pid_alive
from agd_viz.spec import RunSpec, SpecError, SweepConfig
from agd_viz.store import STORE_GONE, STORE_READ_ONLY, Store
from agd_viz.views import datasets as data_view
from apptest_util import app_store, clean, open_page
from benchmarks.st_client import Session
from test_downloads import Server, mnist_files, source_for
from test_robustness import kill_leftover_workers, server, training, wait_for
from test_store import make_read_only

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FINAL = ("finished", "failed", "cancelled", "diverged", "interrupted")
# Long enough to be training whenever it is looked at, on any machine; always stopped or killed.
LONG = "depth=2&width=16&batch_size=32&steps=20000&optimizers=agd,sgd&sgd_lr=0.1"
SHORT = "depth=2&width=16&batch_size=32&steps=30&optimizers=agd,adam&adam_lr=1e-3"
WAIT = 180  # seconds: a bound for work on a busy 2-core machine, not a performance target
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def owner_id(token: str) -> str:
    """What the app records for a browser whose owner cookie is `token` (app_resources.session_id)."""
    return hashlib.sha256(f"agd_viz owner {token}".encode()).hexdigest()[:32]


def start(session, query=None):
    page = session.goto("", query) if query is not None else session.run()
    assert not page.exceptions, page.exceptions
    page = session.run(triggers=(page.widget("lv_start"),))
    assert not page.exceptions, page.exceptions
    return page


def statuses(store, group_id):
    return [r["status"] for r in sorted(store.list_runs(group_id=group_id), key=lambda r: r["id"])]


def spec(**kw):
    base = dict(dataset="digits", depth=2, width=16, batch_size=32, seed=0, device="cpu", steps=40)
    return RunSpec(**{**base, **kw})


def stub(tmp_path, body, name="python-stub"):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# -------------------------------------------------------------------------------------------------
# 1. Sessions own their work


def test_1_two_sessions_on_one_server_each_sees_and_stops_only_its_own(tmp_path):
    """The second attendee opens the Live page after the first is training: a clean page, its own
    Start, its own Stop; the first's comparison only by link, read-only; the first, reloading
    (its cookie), is back on its comparison and the only one who can stop it."""
    db, log = tmp_path / "runs.db", tmp_path / "streamlit.log"
    alice = {"agd_owner": "a" * 32}
    try:
        with server(db, log, env={"AGD_VIZ_PREWARM": "0"}) as (url, _):
            with Session(url, cookies=alice) as a:
                page = start(a, LONG)
                assert "Comparison 1" in page.texts and "lv_stop" not in page.disabled
            store = Store(db)
            wait_for(lambda: training(store, 2, min_step=5), WAIT, "the first comparison to train")

            with Session(url) as b:  # arrives while it trains
                page = b.goto("", SHORT)
                assert not [t for t in page.texts if t.startswith("Comparison")], page.texts
                assert "lv_stop" in page.disabled and "lv_start" not in page.disabled
                page = b.run(triggers=(page.widget("lv_start"),))
                assert "Comparison 2" in page.texts and not [x for x in page.alerts if "Could not" in x]
                page = b.run(triggers=(page.widget("lv_stop"),))  # its own Stop: its own runs
                wait_for(lambda: all(s in FINAL for s in statuses(store, 2)), WAIT, "the second to stop")
                assert statuses(store, 1) == ["running", "running"]

                page = b.goto("", "group=1")  # the first's link: watched, never stopped
                assert "Comparison 1" in page.texts and "lv_stop" in page.disabled
                b.run(triggers=(page.widget("lv_stop"),))  # a forged click on the disabled button
                time.sleep(1.0)
                assert statuses(store, 1) == ["running", "running"]
                other = JobManager(db, start=False)  # and server-side, whatever a page would send
                with pytest.raises(NotYours, match="started by someone else"):
                    other.stop(store.get_group(1)["run_ids"], session=owner_id("b" * 32))
                other.shutdown()

            with Session(url, cookies=alice) as again:  # a reload: the same browser
                page = again.run()
                assert "Comparison 1" in page.texts and "lv_stop" not in page.disabled
                again.run(triggers=(page.widget("lv_stop"),))
            wait_for(lambda: statuses(store, 1) == ["cancelled", "cancelled"], WAIT, "the first to stop")
            groups = {g["id"]: g["owner"] for g in store.list_groups()}
            assert groups[1] == owner_id("a" * 32) and groups[2] not in (None, groups[1])
            assert {r["owner"] for r in store.list_runs(group_id=1)} == {groups[1]}
            store.close()
    finally:
        kill_leftover_workers(db)


def test_1_ownership_is_checked_by_the_job_manager_and_the_operator_key_opens_everything(tmp_path, monkeypatch):
    sleeper = stub(tmp_path, "exec sleep 60")
    m = JobManager(tmp_path / "runs.db", max_workers=1, python=sleeper, kill_after=1.0)
    try:
        _, mine = m.submit(spec(optimizers=("agd", "sgd")), session="alice")
        _, theirs = m.submit(spec(), session="bob")
        _, cli = m.submit(spec(optimizers=("adam",)))  # no session: the command line, a script
        for ids in (mine + theirs, cli):
            with pytest.raises(NotYours, match=r"^Runs? #.* started by someone else .* nothing was stopped"):
                m.stop(ids, wait=0, session="alice")
            with pytest.raises(NotYours, match="nothing was deleted"):
                m.delete_runs(ids, wait=0, session="alice")
        assert all(m.store.get_run(r)["status"] in ("queued", "running") for r in mine + theirs + cli)
        with pytest.raises(NotYours):
            m.cancel(theirs[0], session="alice", admin_key="guess")
        monkeypatch.setenv("AGD_VIZ_ADMIN_KEY", "s3cret")
        with pytest.raises(NotYours):
            m.cancel(theirs[0], session="alice", admin_key="guess")
        m.stop(mine, session="alice")  # one's own: yes
        m.stop(theirs + cli, session="alice", admin_key="s3cret")  # the operator: anyone's
        assert {m.store.get_run(r)["status"] for r in mine + theirs + cli} == {"cancelled"}
        assert m.delete_runs(theirs, session="carol", admin_key="s3cret")[0] == theirs
    finally:
        m.shutdown(timeout=2)


# -------------------------------------------------------------------------------------------------
# 2. Liveness, always


SERVER_X = """
import json, sys, time
from agd_viz.jobs import JobManager
from agd_viz.spec import RunSpec
m = JobManager(sys.argv[1], max_workers=1, env={"OMP_NUM_THREADS": "1"}, prewarm=0)
groups = [m.submit(RunSpec(dataset="digits", depth=2, width=16, steps=1_000_000, device="cpu", metrics="none",
                           optimizers=(o,)))[0] for o in ("agd", "sgd", "adam", "nadam")]
print(json.dumps(groups), flush=True)
time.sleep(600)
"""


def test_2_a_dead_server_s_runs_are_marked_by_the_other_server_within_seconds(tmp_path):
    """Two servers on one store; one is killed with a run going and three queued: the other marks
    them (the orphaned worker marks its own), its pages say so, and nothing committed is lost."""
    db, log = tmp_path / "runs.db", tmp_path / "streamlit.log"
    x = subprocess.Popen([sys.executable, "-c", SERVER_X, str(db)], stdout=subprocess.PIPE, text=True, env=ENV,
                         cwd=ROOT)
    try:
        groups = json.loads(x.stdout.readline())
        store = Store(db)
        first = store.get_group(groups[0])["run_ids"][0]
        wait_for(lambda: (store.get_run(first)["step"] or 0) > 10, WAIT, "server X's first run to train")
        with server(db, log, env={"AGD_VIZ_PREWARM": "0"}) as (url, _):
            with Session(url) as s:  # the other server's manager starts with this page
                assert not s.run().exceptions
            assert [statuses(store, g) for g in groups] == [["running"], ["queued"], ["queued"], ["queued"]]
            committed = len(store.metrics(first))
            x.kill()
            x.wait(10)
            killed = time.monotonic()
            wait_for(lambda: all(statuses(store, g)[0] in FINAL for g in groups), WAIT, "its runs to be marked")
            took = time.monotonic() - killed
            print(f"\nserver killed: its 4 runs marked in {took:.1f} s")
            rows = [store.list_runs(group_id=g)[0] for g in groups]
            assert [r["status"] for r in rows] == ["interrupted"] * 4
            assert "exited" in rows[0]["error"]  # its worker noticed its parent go
            assert all("its process is gone" in r["error"] for r in rows[1:])
            assert len(store.metrics(first)) >= committed
            with Session(url) as s:
                page = s.goto("", f"group={groups[1]}")
                assert any(a.startswith("Interrupted: The app server that queued this run") for a in page.alerts)
        store.close()
    finally:
        if x.poll() is None:
            x.kill()
        kill_leftover_workers(db)


def test_2_stop_and_delete_end_runs_of_a_dead_owner_at_once(tmp_path):
    db = tmp_path / "runs.db"
    m = JobManager(db, start=False)  # made first: its start-up recovery has nothing to judge
    gid = m.store.create_group("compare", owner="alice")
    gone = dead_pid()
    queued = m.store.create_run(spec().to_dict(), "agd", group_id=gid, owner="alice", pid=gone)
    running = m.store.create_run(spec().to_dict(), "sgd", group_id=gid, owner="alice", pid=gone)
    m.store.start_run(running, "cpu", gone)
    other = m.store.create_run(spec().to_dict(), "adam", group_id=gid, owner="alice", pid=gone)
    t0 = time.monotonic()
    m.stop([queued, running], session="alice")
    assert [m.store.get_run(r)["status"] for r in (queued, running)] == ["cancelled", "cancelled"]
    deleted, left = m.delete_runs([other], session="alice")
    assert (deleted, left) == ([other], []) and time.monotonic() - t0 < jobs.DELETE_WAIT_S
    m.shutdown()


def test_2_a_command_line_closed_with_its_terminal_ends_its_runs(tmp_path):
    """SIGHUP (the terminal closed) to `train` and to `sweep`: their runs end interrupted, saying
    why; a `train` killed outright is marked by the running server's liveness check."""
    db, log = tmp_path / "runs.db", tmp_path / "streamlit.log"
    cli = [sys.executable, "-m", "agd_viz"]
    common = ["--db", str(db), "--dataset", "digits", "--depth", "2", "--width", "16", "--batch-size", "32",
              "--device", "cpu", "--quiet"]
    procs = []
    try:
        with server(db, log, env={"AGD_VIZ_PREWARM": "0"}) as (url, _):
            with Session(url) as s:
                assert not s.run().exceptions
            store = Store(db)
            for args in (["train", "--optimizer", "agd", "--optimizer", "sgd:lr=0.1", "--steps", "1000000"],
                         ["sweep", "--depths", "2,3", "--widths", "16", "--optimizer", "agd", "--steps", "1000000"],
                         ["train", "--optimizer", "adam", "--steps", "1000000"]):
                procs.append(subprocess.Popen([*cli, *args[:1], *common, *args[1:]], env=ENV, cwd=ROOT,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                              start_new_session=True))
            wait_for(lambda: len([r for r in store.list_runs(status="running") if (r["step"] or 0) > 5]) == 4,
                     WAIT, "the three command lines to train")
            train, sweep, killed = procs
            train.send_signal(signal.SIGHUP)
            sweep.send_signal(signal.SIGHUP)
            killed.kill()
            for p in procs:
                p.wait(WAIT)
            assert train.returncode == 0 and sweep.returncode == 0
            wait_for(lambda: not store.list_runs(status=["queued", "running"]), WAIT, "every run to be over")
            by = {(r["group_id"], r["optimizer"], r["spec"]["depth"]): r for r in store.list_runs()}
            assert {r["status"] for r in by.values()} == {"interrupted"}
            terminal = [r["error"] for r in by.values() if (r["error"] or "").startswith("the terminal that ran")]
            assert len(terminal) == 4 and any("before this cell started" in e for e in terminal)
            gone = [r for r in by.values() if "process is gone" in (r["error"] or "")]
            assert [r["optimizer"] for r in gone] == ["adam"]
            store.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


# -------------------------------------------------------------------------------------------------
# 3. A fair queue


def test_3_jobs_start_round_robin_across_sessions(tmp_path):
    sleeper = stub(tmp_path, "exec sleep 60")
    m = JobManager(tmp_path / "runs.db", max_workers=1, python=sleeper, kill_after=1.0, start=False)
    try:
        _, a = m.submit_group([spec(depth=d) for d in (2, 3, 4)], kind="sweep", session="alice")
        _, [b] = m.submit(spec(), session="bob")
        _, [c] = m.submit(spec(), session="carol")
        _, [b2] = m.submit(spec(depth=3), session="bob")
        assert m.store.get_run(a[0])["status"] == "running"
        order = [b, c, a[1], b2, a[2]]  # not alice's whole sweep first
        assert [m.queue_position(r) for r in order] == [1, 2, 3, 4, 5]
        started = [a[0]]
        while len(started) < 6:
            m.cancel(started[-1])
            wait_for(lambda: (m.poll() or True) and m.store.get_run(started[-1])["status"] == "cancelled", 30,
                     "the running stub to stop")
            m.poll()
            running = [r for r in [b, c, *a, b2] if m.store.get_run(r)["status"] == "running"]
            assert len(running) == 1, running
            started.append(running[0])
            if started[-1] == a[1]:  # alice comes back for more: she waits her turn again
                _, [a4] = m.submit(spec(depth=5), session="alice")
                order.append(a4)
        assert started == [a[0], *order[:5]]
        assert m.queue_position(a4) == 1
    finally:
        m.shutdown(timeout=2)


ISSUE_SWEEP = dict(depths=range(1, 11), widths=range(1, 11), optimizers=("agd", "adam:lr=1e-3"),
                   steps=1_000_000, batch_size=65_536)


def test_3_a_sessions_share_is_counted_in_compute_time_and_metric_bytes(tmp_path, monkeypatch):
    """The issue's sweep ("200 runs … about 583 h", ~13 GB of metrics) is refused from a page: over
    the pages' steps and batch; with those raised by the operator, over a session's compute share.
    A share in bytes refuses a long run that would write too much."""
    config = SweepConfig(**ISSUE_SWEEP)
    assert 10e9 < sum(cost.metric_bytes(s) for s in config.specs()) < 16e9
    m = JobManager(tmp_path / "runs.db", max_workers=1, python=stub(tmp_path, "exec sleep 60"), start=False)
    try:
        with pytest.raises(SpecError, match="pages allow at most 4,096 examples per batch"):
            m.submit_group(config.specs(), session="alice")
        monkeypatch.setenv("AGD_VIZ_PAGE_MAX_STEPS", "1000000")
        monkeypatch.setenv("AGD_VIZ_PAGE_MAX_BATCH", "65536")
        with pytest.raises(QueueFull, match=r"^This would take about \d+ h \d+ min of compute; each session "
                                            r"may have at most 2 h 00 min on this shared server"):
            m.submit_group(config.specs(), session="alice")
        assert m.store.list_runs() == [] and m.store.list_groups() == []
        assert "of compute" in m.check_submission(config.specs(), "alice")
        m.submit_group(config.specs()[:1], session=None)  # the operator's own script: no share
    finally:
        m.shutdown(timeout=2)
    m = JobManager(tmp_path / "other.db", python=stub(tmp_path, "exec sleep 60"), start=False,
                   max_queued_bytes_per_session=200_000)
    try:
        m.submit(spec(steps=1000, metrics="none"), session="bob")  # ~64 kB
        with pytest.raises(QueueFull, match=r"^This would record about .* of metrics on top of the .* of your "
                                            r"runs waiting or training; each session may have at most 200 kB"):
            m.submit(spec(steps=3000, metrics="none"), session="bob")
        m.submit(spec(steps=3000, metrics="none"), session="carol")  # another session's share is its own
    finally:
        m.shutdown(timeout=2)


@pytest.fixture
def app_db(tmp_path, monkeypatch):
    for name in ("AGD_VIZ_MAX_GRID", "AGD_VIZ_PAGE_MAX_STEPS", "AGD_VIZ_PAGE_MAX_BATCH", "AGD_VIZ_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(downloads.ENV_DIR, str(tmp_path / "cache"))
    with app_store(tmp_path / "runs.db", monkeypatch) as path:
        yield path


def sweep_errors(at) -> str:
    return " ".join(e.value for e in at.error).replace("\\", "")


def test_3_the_sweep_page_has_the_live_pages_caps_and_shows_a_sessions_share(app_db, monkeypatch):
    at = clean(open_page("pages/sweep.py"))
    for key_, over in (("sw_steps", 20_001), ("sw_batch", 4097)):  # one past the Live page's caps: refused
        at.number_input(key=key_).set_value(over)
        clean(at.run())
        assert f"{over - 1:,}" in sweep_errors(at) and at.button(key="sw_start").disabled, key_
        at.number_input(key=key_).set_value(100)
    at.text_input(key="sw_depths").input("1, 2, 3, 4, 5, 6, 7, 8, 9, 10")
    at.text_input(key="sw_widths").input("1, 2, 3, 4, 5, 6, 7, 8, 9, 10")
    at.number_input(key="sw_steps").set_value(20_000)
    at.number_input(key="sw_batch").set_value(4096)
    clean(at.run())  # the most the widgets allow, on the issue's grid: weeks of work, refused
    assert re.search(r"This would take about \d+ h \d+ min of compute; each session may have at most 2 h",
                     sweep_errors(at)) and at.button(key="sw_start").disabled
    at.number_input(key="sw_steps").set_value(100)
    at.number_input(key="sw_batch").set_value(32)
    for more in ("sgd:nesterov=true", "adam:lr=1e308"):  # passed as "More optimisers" before
        at.text_input(key="sw_more").input(more)
        clean(at.run())
        assert "More optimisers: " in sweep_errors(at) and at.button(key="sw_start").disabled, more
    at.text_input(key="sw_more").input("")
    monkeypatch.setenv("AGD_VIZ_MAX_QUEUED_SECONDS_PER_SESSION", "5")  # the operator's setting
    st.cache_resource.clear()
    at = clean(open_page("pages/sweep.py"))
    assert "each session may have at most 5 s" in sweep_errors(at) and at.button(key="sw_start").disabled
    assert Store(app_db).list_runs() == []


# -------------------------------------------------------------------------------------------------
# 4. Links that crashed a page


def test_4_links_with_impossible_ids_are_explained_and_the_session_recovers(app_db):
    for page_name, query, words in (
            ("pages/live.py", {"group": "9223372036854775808"}, "is not a run group number"),
            ("pages/live.py", {"group": "²"}, "is not a run group number"),
            ("pages/runs.py", {"run": "²"}, "are not run numbers"),
            ("pages/runs.py", {"run": "1,²"}, "are not run numbers"),
            ("pages/runs.py", {"run": "9" * 4400}, "are not run numbers"),
            ("pages/sweep.py", {"sweep": "①"}, "is not in the run store")):
        at = clean(open_page(page_name, query))
        assert words in " ".join(w.value for w in at.warning).replace("\\", ""), (query, at.warning)
        at.query_params.clear()
        clean(at.run())  # without the parameter the same session carries on
    at = clean(open_page("pages/live.py"))
    at.session_state["live_group"] = 2**63  # as a link used to leave it in the session
    clean(at.run())
    assert "is not in the run store" in " ".join(w.value for w in at.warning).replace("\\", "")


# -------------------------------------------------------------------------------------------------
# 5. A store that turned read-only or vanished


def server_log_lines(log: Path, words: str) -> int:
    """Lines of the server log saying `words` (not counting the one saying the incident is over)."""
    return sum(words in line and "resolved:" not in line for line in log.read_text(errors="replace").splitlines())


def test_5_a_store_made_read_only_mid_run_is_said_everywhere_and_logged_once(tmp_path):
    db, log = tmp_path / "runs.db", tmp_path / "streamlit.log"
    try:
        with server(db, log, env={"AGD_VIZ_PREWARM": "0", "AGD_VIZ_MAX_WORKERS": "1"}) as (url, _):
            with Session(url) as s:
                start(s, LONG)
            store = Store(db)
            a, b = wait_for(lambda: training(store, 2, min_step=20), WAIT, "the comparison to train")
            wal = Path(f"{db}-wal")
            undo = [make_read_only(db), make_read_only(wal)]
            try:
                wait_for(lambda: not pid_alive(a["pid"]), WAIT, "the worker to end when it cannot write")
                with Session(url) as s:
                    for name in ("", "runs", "sweep", "how_agd_works"):
                        page = s.goto(name)
                        assert STORE_READ_ONLY in [x.replace("\\", "") for x in page.alerts], (name, page.alerts)
                        assert not page.exceptions
                    page = start(s, SHORT)
                    assert any(x.replace("\\", "").startswith(f"Could not start: {STORE_READ_ONLY}")
                               for x in page.alerts), page.alerts
                time.sleep(3 * jobs.LIVENESS_S)  # many polls of a scheduler that cannot record the end
            finally:
                for u in undo:
                    u()
            for r in (a, b):
                row = wait_for(lambda: (x := store.get_run(r["id"]))["status"] in FINAL and x, WAIT,
                               "the worker's end to be recorded once the store is writable")
                assert row["status"] == "failed" and row["error"].startswith("worker exited with code 1")
                assert "run store could not be written" in row["error"] and not re.search(r"(^|\s)/\w", row["error"])
                assert "Traceback" not in row["error"] and len(store.metrics(r["id"])) > 20
            store.close()
        assert server_log_lines(log, "cannot record runs: The run store has become read-only") == 1
        assert server_log_lines(log, "could not record the end of the worker") == 1
        assert server_log_lines(log, "the worker of runs [1, 2] ended") == 1
        assert server_log_lines(log, "Traceback") <= 2, log.read_text()[-3000:]
    finally:
        kill_leftover_workers(db)


def test_5_a_store_deleted_while_the_server_runs_is_said_and_saved(tmp_path):
    db, log = tmp_path / "runs.db", tmp_path / "streamlit.log"
    with server(db, log, env={"AGD_VIZ_PREWARM": "0"}) as (url, _):
        with Session(url) as s:
            start(s, SHORT)
        store = Store(db)
        wait_for(lambda: len(store.list_runs()) == 2 and not store.list_runs(status=["queued", "running"]),
                 WAIT, "the comparison to finish")
        steps = {r["id"]: len(store.metrics(r["id"])) for r in store.list_runs()}
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        saved = wait_for(lambda: sorted(tmp_path.glob("runs.saved-*.db")), WAIT, "the server to save its copy")
        with Session(url) as s:
            for name in ("", "runs", "how_agd_works"):
                page = s.goto(name)
                assert STORE_GONE in [x.replace("\\", "") for x in page.alerts], (name, page.alerts)
            page = start(s, SHORT)
            assert any(x.replace("\\", "").startswith(f"Could not start: {STORE_GONE}") for x in page.alerts)
        assert not db.exists()  # no worker opened a new, empty file under the old name
    with Store(saved[0]) as copy:
        assert {r["id"]: len(copy.metrics(r["id"])) for r in copy.list_runs()} == steps
    assert server_log_lines(log, "everything it held is saved in") == 1


def test_5_start_on_a_read_only_store_is_a_sentence(app_db):
    at = clean(open_page("pages/live.py", {"depth": "2", "width": "8", "steps": "5"}))
    undo = make_read_only(app_db)
    try:
        clean(at.button(key="lv_start").click().run())
        assert [e.value.replace("\\", "") for e in at.error] == [f"Could not start: {STORE_READ_ONLY}"]
        manager = next(m for m in jobs._LIVE if m.db_path == app_db.resolve())  # the app's
        with pytest.raises(StoreUnavailable, match="read-only"):
            manager.submit(spec())
    finally:
        undo()


# -------------------------------------------------------------------------------------------------
# 6. A damaged cached dataset


def test_6_a_damaged_download_is_deleted_and_fetched_again_from_the_page(app_db, monkeypatch, tmp_path):
    files = mnist_files(n_train=40, n_test=10)
    web = Server()
    try:
        web.files.update(files)
        monkeypatch.setitem(downloads.SOURCES, "mnist", source_for("mnist", files, web.url))
        monkeypatch.setenv(data_view.ENV_DATA_URL, web.url)
        downloads.download("mnist")
        damaged = downloads.dataset_dir("mnist") / "train-labels-idx1-ubyte.gz"
        damaged.write_bytes(damaged.read_bytes()[:-7] + b"garbage")  # same size, other bytes
        web.requests.clear()
        at = clean(open_page("pages/live.py", {"dataset": "mnist"}))
        notes = " ".join(e.value for e in at.sidebar.error).replace("\\", "")
        assert "MNIST on this server is damaged (train-labels-idx1-ubyte.gz" in notes
        assert at.button(key="lv_start").disabled and str(tmp_path) not in notes
        button = at.button(key="lv_download")
        assert button.label.startswith("Download MNIST again (")
        clean(button.click().run())
        assert web.requests == ["train-labels-idx1-ubyte.gz"]  # only the damaged file
        assert downloads.damaged_files("mnist") == [] and data_view.data_status("mnist").downloaded
        assert "MNIST is downloaded and checked." in [e.value.replace("\\", "") for e in at.sidebar.success]
    finally:
        web.close()


# -------------------------------------------------------------------------------------------------
# 7 and 8. The command line: one line, exit 2, nothing written


def cli(*args, db=None, env=None):
    return subprocess.run([sys.executable, "-m", "agd_viz", *args, *(["--db", str(db)] if db else [])],
                          capture_output=True, text=True, env={**ENV, **(env or {})}, cwd=ROOT, timeout=WAIT)


@pytest.mark.parametrize("args, words", [
    (["export", "9223372036854775808"], "no run with id 9223372036854775808"),
    (["train", "--run-id", "18446744073709551616"], "no run with id 18446744073709551616"),
    (["export", "1", "-o", "{dir}"], "cannot write {dir}: Is a directory"),
    (["export", "1", "-o", "/nonexistent/dir/x.csv"], "No such file or directory"),
    (["export", "1", "-o", "/dev/full"], "No space left on device"),
    (["train", "--data-option", "evil=1"], "unknown option(s) evil"),
    (["train", "--dataset", "moons", "--data-option", "noise=nan"], "option noise must be a number"),
    (["train", "--data-option", "test_fraction=0"], "must be between 0.01 and 0.9"),
    (["train", "--dataset", "spirals", "--data-option", "classes=1000"], "classes must be between 2 and 10"),
    (["train", "--dataset", "mnist"], "is not downloaded on this machine yet"),
    (["sweep", "--depths", "2", "--widths", "8", "--dataset", "mnist"], "is not downloaded on this machine yet"),
    (["train", "--optimizer", "sgd:nesterov=true"], "nesterov=true needs momentum > 0"),
    (["train", "--optimizer", "adam:lr=1e308"], "lr must be > 0 and at most 10"),
])
def test_7_8_the_command_line_refuses_in_one_line_before_writing(tmp_path, args, words):
    db = tmp_path / "runs.db"
    with Store(db) as s:
        s.create_run(spec().to_dict(), "agd")  # run 1, to export
    args = [a.format(dir=tmp_path) for a in args]
    more = ["--steps", "2"] if args[0] in ("train", "sweep") else []
    p = cli(*args, *more, db=db, env={downloads.ENV_DIR: str(tmp_path / "cache")})  # nothing downloaded
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert words.format(dir=tmp_path) in p.stderr and "Traceback" not in p.stderr
    with Store(db) as s:
        assert [r["id"] for r in s.list_runs()] == [1] and len(s.list_groups()) == 0
    assert sorted(x.name for x in tmp_path.iterdir() if x.name != "runs.db") == []  # no partial output


def test_7_a_read_only_store_or_a_device_leaves_nothing_behind(tmp_path):
    db = tmp_path / "runs.db"
    assert cli("train", "--depth", "2", "--width", "8", "--steps", "2", "--quiet", db=db).returncode == 0
    for suffix in ("-wal", "-shm"):
        assert not Path(f"{db}{suffix}").exists()  # the last connection checkpointed and removed them
    undo = make_read_only(db)
    try:
        for args in (["train", "--depth", "2", "--width", "8", "--steps", "2"],
                     ["sweep", "--depths", "2", "--widths", "8", "--steps", "2"]):
            p = cli(*args, db=db)
            assert p.returncode == 2 and p.stderr.strip().endswith("is read-only, so no run can be recorded in it; "
                                                                   "make it writable or choose another --db.")
        p = cli("runs", db=db)
        assert p.returncode == 0 and "finished" in p.stdout
        assert sorted(x.name for x in tmp_path.iterdir()) == ["runs.db"]  # no -wal, -shm beside it
    finally:
        undo()
    had = Path("/dev/null-journal").exists()
    p = cli("runs", db="/dev/null")
    assert p.returncode == 2 and "is not a regular file" in p.stderr
    assert Path("/dev/null-journal").exists() == had


# -------------------------------------------------------------------------------------------------
# 9. Deleting runs deletes their files


def test_9_deleting_runs_deletes_their_worker_logs(tmp_path):
    m = JobManager(tmp_path / "runs.db", max_workers=1, env={"OMP_NUM_THREADS": "1"}, prewarm=0)
    try:
        _, (a, b) = m.submit(spec(dataset="moons", optimizers=("agd", "sgd")))
        wait_for(lambda: all(m.store.get_run(r)["status"] in FINAL for r in (a, b)), WAIT, "both to finish")
        wait_for(lambda: not m.active_runs(), WAIT, "the worker to be reaped")
        log = log_path(m.db_path, a)
        assert log.exists() and m.store.frame_steps(a, "boundary")
        assert m.delete_runs([b])[0] == [b] and log.exists()  # its partner still needs the log
        assert m.delete_runs([a])[0] == [a] and not log.exists()
        assert m.store.frame_steps(a, "boundary") == [] and m.store.list_groups() == []
    finally:
        m.shutdown(timeout=2)


# -------------------------------------------------------------------------------------------------
# 10. No server path on a page


def test_10_failure_messages_name_no_server_path(app_db, tmp_path, caplog, monkeypatch):
    secret = "/srv/secret-place/agd"
    crash = stub(tmp_path, f"echo '$ {secret}/python -m agd_viz.worker --db {secret}/runs.db'\n"
                           f"echo 'ValueError: {secret}/data/train.bin is truncated' >&2\nexit 1")
    m = JobManager(app_db, max_workers=1, python=crash)
    try:
        with caplog.at_level(logging.WARNING, logger="agd_viz.jobs"):
            gid, [rid] = m.submit(spec())
            wait_for(lambda: m.store.get_run(rid)["status"] == "failed", WAIT, "the run to fail")
        error = m.store.get_run(rid)["error"]
        assert error == "worker exited with code 1 before finishing the run: ValueError: train.bin is truncated"
        assert f"{secret}/data/train.bin" in caplog.text  # the server log keeps the whole story
    finally:
        m.shutdown(timeout=2)
    at = clean(open_page("pages/live.py", {"group": str(gid)}))
    shown = " ".join(e.value for e in at.error)
    assert "train.bin is truncated" in shown.replace("\\", "") and "secret" not in shown
    bad = tmp_path / "notes.db"
    bad.write_text("not a database\n" * 10)
    monkeypatch.setenv("AGD_VIZ_DB", str(bad))
    st.cache_resource.clear()
    at = clean(open_page("pages/runs.py"))
    shown = " ".join(e.value for e in at.error)
    assert shown.startswith("The app cannot open its run store:") and str(tmp_path) not in shown.replace("\\", "")
