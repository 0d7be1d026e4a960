"""Background runs with real worker processes over a real SQLite file.

Every wait is a poll with a deadline. Specs are tiny (digits, depth 2, width 16) so a worker is
mostly its start-up; "long" runs (a million steps) exist only to be cancelled, killed or orphaned.
Where a misbehaving worker is needed (one that ignores SIGTERM, one that dies at start-up) a
two-line shell script stands in for the interpreter: no real worker can be made to do that on cue.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agd_viz.jobs import JobManager, _pid_alive, default_max_workers, log_path
from agd_viz.store import Store
from agd_viz.train import RunSpec

ROOT = Path(__file__).resolve().parents[1]
FINAL = {"finished", "failed", "cancelled", "diverged", "interrupted"}
LONG = 1_000_000


def spec(**kw):
    base = dict(dataset="digits", depth=2, width=16, batch_size=32, seed=0, device="cpu", steps=40)
    return RunSpec(**{**base, **kw})


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def manager(tmp_path):
    made = []

    def make(**kw):
        kw.setdefault("env", {"OMP_NUM_THREADS": "1"})
        m = JobManager(tmp_path / "runs.db", **kw)
        made.append(m)
        return m

    yield make
    for m in made:
        m.shutdown(cancel_running=True, timeout=3)


def fake_python(tmp_path, body, name="python-stub"):
    """An 'interpreter' that ignores its arguments and runs `body` (sh)."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def status(m, rid):
    return m.store.get_run(rid)["status"]


def step_of(m, rid):
    return m.progress([rid])[rid]["step"] or 0


def all_final(m, ids):
    return all(status(m, r) in FINAL for r in ids)


# ------------------------------------------------------------------------------------------------


def test_a_comparison_trains_in_the_background_to_finished(manager):
    m = manager(max_workers=2)
    gid, ids = m.submit(spec(optimizers=("agd", "adam:lr=1e-3"), device="auto"), name="cmp")
    assert len(ids) == 2 and m.store.get_group(gid)["run_ids"] == ids
    # submit returns at once: the runs train in other processes
    assert set(m.active_runs()) == set(ids)
    wait_for(lambda: all_final(m, ids), 60, "both runs to end")
    for rid, opt in zip(ids, ("agd", "adam:lr=1e-3")):
        row = m.store.get_run(rid)
        assert row["status"] == "finished", row["error"]
        assert row["spec"]["optimizers"] == [opt]
        assert row["device"] in ("cpu", "cuda", "mps")  # "auto" resolved by the worker
        assert row["step"] == 40
        assert list(m.store.metrics(rid)["step"]) == list(range(41))
        assert log_path(m.db_path, rid).exists()
    assert m.store.get_run(ids[1])["label"] == "adam lr=0.001"
    wait_for(lambda: not m.active_runs(), 15, "the workers to exit and be reaped")


def test_cancel_stops_a_running_worker_within_2_s_and_keeps_its_metrics(manager):
    m = manager(max_workers=1)
    _, [rid] = m.submit(spec(steps=LONG, metrics="none"))
    wait_for(lambda: step_of(m, rid) > 0, 30, "the run to make progress")
    pid = m.worker_pid(rid)
    p = m.progress([rid])[rid]
    assert p["status"] == "running" and p["steps_per_s"] > 0 and p["eta_s"] > 0
    assert p["queue_position"] is None

    assert m.cancel(rid)
    wait_for(lambda: status(m, rid) == "cancelled", 2.0, "the cancelled run to stop")
    row = m.store.get_run(rid)
    assert row["error"] is None  # a user's cancel is not an error
    df = m.store.metrics(rid)
    assert len(df) > 1 and df["step"].iloc[-1] == row["step"]
    wait_for(lambda: not _pid_alive(pid), 5, "the worker process to exit")
    assert not m.cancel(rid)  # already over


def test_a_worker_killed_by_sigkill_fails_with_a_reason_and_the_other_run_carries_on(manager):
    m = manager(max_workers=2)
    _, [a, b] = m.submit(spec(optimizers=("agd", "sgd"), steps=LONG, metrics="none"))
    wait_for(lambda: step_of(m, a) > 0 and step_of(m, b) > 0, 30, "both runs to make progress")
    os.kill(m.worker_pid(a), signal.SIGKILL)

    wait_for(lambda: status(m, a) == "failed", 5, "the killed run to be marked failed")
    row = m.store.get_run(a)
    assert "killed by signal SIGKILL" in row["error"]
    assert len(m.store.metrics(a)) > 1  # what it wrote before dying is still there
    before = step_of(m, b)
    wait_for(lambda: step_of(m, b) > before, 10, "the other run to keep training")
    assert status(m, b) == "running"
    m.cancel(b)
    wait_for(lambda: status(m, b) == "cancelled", 5, "the other run to stop")


def test_with_a_cap_of_one_runs_wait_and_start_in_submit_order(manager):
    m = manager(max_workers=1)
    _, [a, b] = m.submit(spec(optimizers=("agd", "adam:lr=1e-3")))
    _, [c] = m.submit(spec(optimizers=("sgd",)))
    assert m.queue_positions() == {b: 1, c: 2}
    prog = m.progress([a, b, c])
    assert [prog[r]["queue_position"] for r in (a, b, c)] == [None, 1, 2]
    assert prog[b]["status"] == "queued"

    assert m.cancel(c)  # a queued run is cancelled at once and never starts
    row = m.store.get_run(c)
    assert row["status"] == "cancelled" and row["started"] is None
    assert m.queue_position(b) == 1

    wait_for(lambda: all_final(m, [a, b]), 60, "the queue to drain")
    ra, rb = m.store.get_run(a), m.store.get_run(b)
    assert ra["status"] == rb["status"] == "finished"
    assert rb["started"] >= ra["ended"]  # b waited for a's slot


def test_a_server_restart_interrupts_the_dead_servers_runs_and_orphans_exit_by_themselves(tmp_path):
    """A server (child process) runs two workers with a third run queued, then dies by SIGKILL.
    Its orphaned worker must notice and exit; a worker that died with it and the queued run must
    be marked interrupted by the next manager, which must not touch them while that server lived."""
    db = tmp_path / "runs.db"
    child_code = textwrap.dedent(
        """
        import json, sys, time
        from agd_viz.jobs import JobManager
        from agd_viz.train import RunSpec
        m = JobManager(sys.argv[1], max_workers=2, env={"OMP_NUM_THREADS": "1"})
        _, ids = m.submit(RunSpec(dataset="digits", depth=2, width=16, steps=1_000_000, device="cpu",
                                  metrics="none", optimizers=("agd", "sgd", "adam")))
        print(json.dumps({"ids": ids, "pids": [m.worker_pid(r) for r in ids[:2]]}), flush=True)
        time.sleep(120)
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-c", child_code, str(db)], stdout=subprocess.PIPE,
                              text=True, env=env, cwd=ROOT)
    try:
        info = json.loads(server.stdout.readline())
        (a, b, c), (pid_a, pid_b) = info["ids"], info["pids"]
        store = Store(db)
        wait_for(lambda: all((store.get_run(r)["step"] or 0) > 0 for r in (a, b)), 30, "both workers to train")

        # Another manager over the same file while that server lives leaves its runs alone.
        other = JobManager(db, max_workers=1, start=False)
        assert other.recovered == []
        assert [store.get_run(r)["status"] for r in (a, b, c)] == ["running", "running", "queued"]

        server.kill()
        server.wait(5)
        os.kill(pid_b, signal.SIGKILL)  # as if it went down with the server

        wait_for(lambda: not _pid_alive(pid_a), 5, "the orphaned worker to exit")
        wait_for(lambda: store.get_run(a)["status"] == "interrupted", 5, "the orphan to record interrupted")
        assert "exited" in store.get_run(a)["error"]

        assert sorted(other.recover()) == [b, c]
        for r in (a, b, c):
            assert store.get_run(r)["status"] == "interrupted"
        assert len(store.metrics(b)) > 1  # nothing written before the crash is lost
        assert JobManager(db, start=False).recovered == []  # nothing left to recover
    finally:
        if server.poll() is None:
            server.kill()
        for pid in (locals().get("pid_a"), locals().get("pid_b")):
            if pid and _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_worker_that_ignores_sigterm_is_killed_and_its_run_cancelled(manager, tmp_path):
    ready = tmp_path / "ready"
    stubborn = fake_python(tmp_path, f"trap '' TERM\ntouch {ready}\nexec sleep 60")
    m = manager(max_workers=1, python=stubborn, kill_after=0.5)
    _, [rid] = m.submit(spec())
    pid = m.worker_pid(rid)
    wait_for(ready.exists, 5, "the stub to ignore SIGTERM")
    m.cancel(rid)
    wait_for(lambda: status(m, rid) == "cancelled", 5, "the stubborn worker's run to be cancelled")
    assert "killed" in m.store.get_run(rid)["error"]
    wait_for(lambda: not _pid_alive(pid), 2, "the stubborn worker to be gone")


def test_a_worker_that_dies_at_start_up_fails_with_its_last_words(manager, tmp_path):
    broken = fake_python(tmp_path, "echo 'boom: cannot initialise the device' >&2\nexit 3")
    m = manager(max_workers=1, python=broken)
    _, [a, b] = m.submit(spec(optimizers=("agd", "sgd")))
    wait_for(lambda: all_final(m, [a, b]), 10, "both runs to fail")
    for r in (a, b):  # the queue moves on after a crash
        err = m.store.get_run(r)["error"]
        assert status(m, r) == "failed"
        assert "exited with code 3" in err and "boom: cannot initialise the device" in err


def test_cancel_requested_through_the_store_drops_a_queued_run(manager, tmp_path):
    """Another server or the CLI can only flag a run; the owning manager honours it before starting."""
    sleeper = fake_python(tmp_path, "exec sleep 60")
    m = manager(max_workers=1, python=sleeper)
    _, [a, b] = m.submit(spec(optimizers=("agd", "sgd")))
    Store(m.db_path).request_cancel(b)
    m.cancel(a)
    wait_for(lambda: status(m, b) == "cancelled", 5, "the flagged queued run to be cancelled")
    assert m.store.get_run(b)["started"] is None


def test_shutdown_for_exit_interrupts_and_shutdown_to_stop_cancels(manager, tmp_path):
    sleeper = fake_python(tmp_path, "exec sleep 60")
    m1 = manager(max_workers=1, python=sleeper)
    _, [a, b] = m1.submit(spec(optimizers=("agd", "sgd")))
    # A second live manager in the same process does not take the first one's queued run.
    m2 = manager(max_workers=1, python=sleeper)
    assert m2.recovered == [] and status(m1, b) == "queued"
    m1.shutdown(cancel_running=False, timeout=2)
    assert [status(m1, r) for r in (a, b)] == ["interrupted", "interrupted"]

    _, [c, d] = m2.submit(spec(optimizers=("agd", "sgd")))
    m2.shutdown(cancel_running=True, timeout=2)
    assert [status(m2, r) for r in (c, d)] == ["cancelled", "cancelled"]
    with pytest.raises(RuntimeError):
        m2.submit(spec())


def test_workers_do_not_outlive_a_server_that_exits_normally(tmp_path):
    sleeper = fake_python(tmp_path, "exec sleep 60")
    db = tmp_path / "runs.db"
    code = textwrap.dedent(
        """
        import sys
        from agd_viz.jobs import JobManager
        from agd_viz.train import RunSpec
        m = JobManager(sys.argv[1], max_workers=1, python=sys.argv[2])
        _, ids = m.submit(RunSpec(dataset="digits", depth=2, width=16, steps=10, device="cpu"))
        print(m.worker_pid(ids[0]), ids[0], flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, str(db), sleeper], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    pid, rid = map(int, out.stdout.split())
    assert not _pid_alive(pid)  # atexit stopped it before the interpreter went
    assert Store(db).get_run(rid)["status"] == "interrupted"


def test_the_manager_does_not_import_torch_and_the_cap_follows_the_environment(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        from agd_viz.jobs import JobManager
        m = JobManager(sys.argv[1], start=False)
        m.progress([1, 2])
        print(m.max_workers, "torch" in sys.modules)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AGD_VIZ_MAX_WORKERS": "3"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.db")], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "False"]


def test_default_cap(monkeypatch, tmp_path):
    monkeypatch.setenv("AGD_VIZ_MAX_WORKERS", "0")
    with pytest.raises(ValueError, match="AGD_VIZ_MAX_WORKERS"):
        default_max_workers()
    with pytest.raises(ValueError, match="AGD_VIZ_MAX_WORKERS"):  # at start-up, not in a thread
        JobManager(tmp_path / "r.db", start=False)
    monkeypatch.delenv("AGD_VIZ_MAX_WORKERS")
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert default_max_workers() == (gpus or max(1, (os.cpu_count() or 1) // 2))
