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

from agd_viz.jobs import JobManager, QueueFull, default_max_workers, log_path
from agd_viz.procs import pid_alive as _pid_alive
from agd_viz.spec import RunSpec, SpecError, SweepConfig
from agd_viz.store import Store

# Real worker processes and servers, seconds each: left out of the quick loop (README, "Tests").
pytestmark = pytest.mark.slow

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
    # One job: both optimisers in one worker process, side by side
    assert f"-m agd_viz.worker --run-id {ids[0]} --run-id {ids[1]}" in log_path(m.db_path, ids[0]).read_text()
    assert m.store.get_run(ids[0])["pid"] == m.store.get_run(ids[1])["pid"]
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


def test_a_worker_killed_by_sigkill_fails_every_run_of_its_job_and_the_other_job_carries_on(manager):
    m = manager(max_workers=2)
    _, [a, b] = m.submit(spec(optimizers=("agd", "sgd"), steps=LONG, metrics="none"))
    _, [c] = m.submit(spec(optimizers=("adam",), steps=LONG, metrics="none"))
    wait_for(lambda: all(step_of(m, r) > 0 for r in (a, b, c)), 30, "every run to make progress")
    assert m.worker_pid(a) == m.worker_pid(b) != m.worker_pid(c)
    os.kill(m.worker_pid(a), signal.SIGKILL)

    wait_for(lambda: status(m, a) == status(m, b) == "failed", 5, "the killed job's runs to be marked failed")
    for r in (a, b):
        assert "killed by signal SIGKILL" in m.store.get_run(r)["error"]
        assert len(m.store.metrics(r)) > 1  # what it wrote before dying is still there
    before = step_of(m, c)
    wait_for(lambda: step_of(m, c) > before, 10, "the other job to keep training")
    assert status(m, c) == "running"
    m.cancel(c)
    wait_for(lambda: status(m, c) == "cancelled", 5, "the other job to stop")


def test_cancelling_one_run_of_a_comparison_stops_only_it(manager):
    m = manager(max_workers=1)
    _, [a, b] = m.submit(spec(optimizers=("agd", "sgd"), steps=LONG, metrics="none"))
    wait_for(lambda: step_of(m, a) > 0 and step_of(m, b) > 0, 30, "both runs to make progress")
    pid = m.worker_pid(a)
    assert m.cancel(b)
    wait_for(lambda: status(m, b) == "cancelled", 3, "the cancelled run to stop")
    assert m.store.get_run(b)["error"] is None
    before = step_of(m, a)
    wait_for(lambda: step_of(m, a) > before + 5, 10, "its partner to train on in the same worker")
    assert status(m, a) == "running" and m.worker_pid(a) == pid and _pid_alive(pid)
    assert m.cancel(a)  # the last run: now the process itself is stopped
    wait_for(lambda: status(m, a) == "cancelled", 3, "the last run to stop")
    wait_for(lambda: not _pid_alive(pid), 5, "the worker to exit")


def test_with_a_cap_of_one_a_comparison_trains_side_by_side_and_jobs_wait_in_submit_order(manager):
    m = manager(max_workers=1)
    _, [a, b] = m.submit(spec(optimizers=("agd", "adam:lr=1e-3")))
    _, [c] = m.submit(spec(optimizers=("sgd",)))
    _, [d] = m.submit(spec(optimizers=("sgd:lr=0.01",)))
    assert m.queue_positions() == {c: 1, d: 2}
    prog = m.progress([a, b, c, d])
    assert [prog[r]["queue_position"] for r in (a, b, c, d)] == [None, None, 1, 2]
    assert prog[a]["status"] == prog[b]["status"] == "running"  # one slot, both optimisers

    assert m.cancel(c)  # a queued run is cancelled at once and never starts
    row = m.store.get_run(c)
    assert row["status"] == "cancelled" and row["started"] is None
    assert m.queue_position(d) == 1

    wait_for(lambda: all_final(m, [a, b, d]), 60, "the queue to drain")
    ra, rb, rd = (m.store.get_run(r) for r in (a, b, d))
    assert ra["status"] == rb["status"] == rd["status"] == "finished"
    assert rd["started"] >= max(ra["ended"], rb["ended"])  # d waited for the comparison's slot


def test_a_server_restart_interrupts_the_dead_servers_runs_and_orphans_exit_by_themselves(tmp_path):
    """A server (child process) runs two workers with a third run queued, then dies by SIGKILL.
    Its orphaned worker must notice and exit; a worker that died with it and the queued run must
    be marked interrupted by the next manager, which must not touch them while that server lived."""
    db = tmp_path / "runs.db"
    child_code = textwrap.dedent(
        """
        import json, sys, time
        from agd_viz.jobs import JobManager
        from agd_viz.spec import RunSpec
        m = JobManager(sys.argv[1], max_workers=2, env={"OMP_NUM_THREADS": "1"})
        ids = [m.submit(RunSpec(dataset="digits", depth=2, width=16, steps=1_000_000, device="cpu",
                                metrics="none", optimizers=(o,)))[1][0] for o in ("agd", "sgd", "adam")]
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
    _, [a] = m.submit(spec(optimizers=("agd",)))
    _, [b] = m.submit(spec(optimizers=("sgd",)))
    Store(m.db_path).request_cancel(b)
    m.cancel(a)
    wait_for(lambda: status(m, b) == "cancelled", 5, "the flagged queued run to be cancelled")
    assert m.store.get_run(b)["started"] is None


def test_shutdown_for_exit_interrupts_and_shutdown_to_stop_cancels(manager, tmp_path):
    sleeper = fake_python(tmp_path, "exec sleep 60")
    m1 = manager(max_workers=1, python=sleeper)
    _, [a] = m1.submit(spec(optimizers=("agd",)))
    _, [b] = m1.submit(spec(optimizers=("sgd",)))
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
        from agd_viz.spec import RunSpec
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
        from agd_viz.spec import RunSpec
        m = JobManager(sys.argv[1], start=False, max_workers=1, python="true")  # no real worker
        m.progress([1, 2])
        m.submit(RunSpec(dataset="moons", depth=2, width=8, steps=5, optimizers=("agd", "adam:lr=1e-3")))
        m.submit_group([RunSpec(depth=2, width=8, steps=5)], group_spec={"kind": "sweep"})
        print(m.max_workers, "torch" in sys.modules, "agd_viz.worker" in sys.modules)
        m.shutdown()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.db")], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "False", "False"]
    code = "import sys; from agd_viz.jobs import JobManager; print(JobManager(sys.argv[1], start=False).max_workers)"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.db")], capture_output=True,
                         text=True, env={**env, "AGD_VIZ_MAX_WORKERS": "3"}, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3"]


def test_default_cap(monkeypatch, tmp_path):
    monkeypatch.setenv("AGD_VIZ_MAX_WORKERS", "0")
    with pytest.raises(ValueError, match="AGD_VIZ_MAX_WORKERS"):
        default_max_workers()
    with pytest.raises(ValueError, match="AGD_VIZ_MAX_WORKERS"):  # at start-up, not in a thread
        JobManager(tmp_path / "r.db", start=False)
    monkeypatch.delenv("AGD_VIZ_MAX_WORKERS")
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert default_max_workers() == (gpus * 4 if gpus else max(1, (os.cpu_count() or 1) // 2))


# ------------------------------------------------------------------------------------------------
# Submitting a group: all or nothing


def test_submit_group_queues_every_cell_in_one_group(manager, tmp_path):
    sleeper = fake_python(tmp_path, "exec sleep 60")
    m = manager(max_workers=1, python=sleeper)
    config = SweepConfig(depths=(1, 2), widths=(8,), optimizers=("agd", "adam:lr=1e-3"), steps=10, device="cpu")
    gid, ids = m.submit_group(config.specs(), name="grid", session="s1", group_spec=config.to_dict())
    group = m.store.get_group(gid)
    assert group["kind"] == "sweep" and group["run_ids"] == sorted(ids) and len(ids) == 4
    assert SweepConfig.from_dict(group["spec"]) == config
    rows = [m.store.get_run(r) for r in ids]
    assert [(r["depth"], r["optimizer"]) for r in rows] == [(s.depth, o) for s in config.specs() for o in s.optimizers]
    assert {r["depth"] for r in rows} == {1, 2} and [r["label"] for r in rows[:2]] == ["agd", "adam lr=0.001"]
    assert set(m.active_runs()) == set(ids) and m.room("s1")["session_active"] == 4


def test_a_refused_spec_in_the_middle_writes_nothing(manager, tmp_path, monkeypatch):
    sleeper = fake_python(tmp_path, "exec sleep 60")
    m = manager(max_workers=1, python=sleeper)
    monkeypatch.setenv("AGD_VIZ_MAX_STEPS", "100")
    specs = [spec(steps=10), spec(steps=1000), spec(steps=10)]  # the middle one is over the limit
    with pytest.raises(SpecError, match="at most 100 steps"):
        m.submit_group(specs)
    assert m.store.list_groups() == [] and m.store.list_runs() == [] and m.active_runs() == []

    m2 = manager(max_workers=1, python=sleeper, max_queued_per_session=3)
    with pytest.raises(QueueFull):  # 2 cells × 2 optimisers: more than the session's 3
        m2.submit_group([spec(optimizers=("agd", "sgd")), spec(optimizers=("agd", "sgd"))], session="s")
    assert m2.store.list_groups() == [] and m2.store.list_runs() == [] and m2.active_runs() == []
    gid, ids = m2.submit_group([spec(), spec(optimizers=("agd", "sgd"))], session="s")  # 3 fit
    assert len(ids) == 3 and m2.store.get_group(gid)["n_runs"] == 3


# ------------------------------------------------------------------------------------------------
# The worker process


def worker(db, *args, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "agd_viz.worker", "--db", str(db), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def test_the_worker_entry_trains_queued_runs_into_the_store(tmp_path):
    db = tmp_path / "runs.db"
    store = Store(db)
    moons = spec(dataset="moons", depth=3, width=16, steps=40, optimizers=("agd", "adam:lr=1e-2"))
    ids = [store.create_run(moons.with_optimizer(o).to_dict(), o) for o in moons.optimizers]
    digits = store.create_run(spec(steps=5).to_dict(), "agd")

    p = worker(db, "--run-id", str(ids[0]), "--run-id", str(ids[1]), "--quiet", "--parent-pid", str(os.getpid()))
    assert p.returncode == 0, p.stderr
    for rid in ids:
        row = store.get_run(rid)
        assert row["status"] == "finished" and row["step"] == 40 and row["pid"] != os.getpid()
        assert list(store.metrics(rid)["step"]) == list(range(41))
        steps = store.frame_steps(rid, "boundary")  # the decision boundary, start to finish
        assert steps[0] == 0 and steps[-1] == 40
        assert store.frame_steps(rid, "boundary_grid") == [0]  # the grid and points, once
    assert worker(db, "--run-id", str(digits)).returncode == 0
    assert store.get_run(digits)["status"] == "finished"
    assert store.frame_steps(digits, "boundary") == [] and store.frame_steps(digits, "boundary_grid") == []

    from agd_viz.views import boundary

    pictures = boundary.boundary_figures(store, [store.get_run(r) for r in (*ids, digits)])
    assert [p.run_id for p in pictures] == [*ids, digits]
    for pic in pictures[:2]:
        assert pic.message is None and pic.figure.layout.title.text.endswith("· step 40")
        names = [t.name for t in pic.figure.data if t.type in ("scatter", "scattergl")]
        assert names == ["upper", "lower"]  # the training points, by class
    assert pictures[2].figure is None and "2-D" in pictures[2].message
    early = boundary.boundary_figures(store, [store.get_run(ids[0])], step=0)[0]
    assert early.figure.layout.title.text.endswith("· step 0")  # a replay's first picture
    assert boundary.boundary_steps(store, ids[0]) == store.frame_steps(ids[0], "boundary")

    store.delete_run(ids[0])  # its pictures go with it
    assert store.frames(ids[0], "boundary") == [] and store.frame_steps(ids[1], "boundary")


def test_the_worker_refuses_bad_input_with_one_line_and_fails_what_it_cannot_train(tmp_path):
    db = tmp_path / "runs.db"
    store = Store(db)
    p = worker(db, "--run-id", "99")
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [f"agd_viz worker: no run with id 99 in {db}"]
    p = worker(db)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    a = store.create_run(spec().to_dict(), "agd")
    b = store.create_run(spec(depth=3).to_dict(), "agd")
    p = worker(db, "--run-id", str(a), "--run-id", str(b))
    assert p.returncode == 2 and "share every setting but the optimiser" in p.stderr
    assert [store.get_run(r)["status"] for r in (a, b)] == ["failed", "failed"]  # not queued forever


def test_train_run_id_on_the_command_line_is_the_worker(tmp_path):
    db = tmp_path / "runs.db"
    store = Store(db)
    rid = store.create_run(spec(steps=7).to_dict(), "agd")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "agd_viz", "train", "--run-id", str(rid), "--db", str(db), "--quiet"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert store.get_run(rid)["status"] == "finished" and store.get_run(rid)["step"] == 7


# ------------------------------------------------------------------------------------------------
# What the pages ask of the manager: stop, delete, devices, speed


def test_stop_cancels_a_comparison_and_returns_once_it_is_recorded(manager, tmp_path):
    sleeper = fake_python(tmp_path, "exec sleep 60")
    m = manager(max_workers=1, python=sleeper)
    _, [a, b] = m.submit(spec(optimizers=("agd", "sgd")))  # a runs, b waits
    m.stop([a, b])
    assert [status(m, r) for r in (a, b)] == ["cancelled", "cancelled"]


def test_delete_runs_stops_deletes_and_drops_emptied_groups(manager, tmp_path):
    sleeper = fake_python(tmp_path, "exec sleep 60")
    m = manager(max_workers=1, python=sleeper)
    gid, [a, b] = m.submit(spec(optimizers=("agd", "sgd")))
    other_gid, [c, d] = m.submit(spec(optimizers=("agd", "sgd")))
    deleted, active = m.delete_runs([a, b, c, 9999])
    assert sorted(deleted) == [a, b, c] and active == []
    assert m.store.get_group(gid) is None  # no runs left in it
    assert m.store.get_group(other_gid)["run_ids"] == [d]

    ready = tmp_path / "ready"
    stubborn = fake_python(tmp_path, f"trap '' TERM\ntouch {ready}\nexec sleep 60", name="stubborn")
    m2 = manager(max_workers=1, python=stubborn, kill_after=30)
    _, [e] = m2.submit(spec())
    wait_for(ready.exists, 5, "the stub to ignore SIGTERM")
    deleted, active = m2.delete_runs([e], wait=0.5)
    assert (deleted, active) == ([], [e]) and m2.store.get_run(e) is not None  # not deleted while alive


def test_devices_and_speed_are_answered_without_torch(manager):
    from agd_viz import jobs

    m = manager(max_workers=1)
    gpus = jobs.detect_gpus()
    assert m.devices() == (("cpu", "cuda") if gpus else ("cpu",))
    speed = m.speed()
    assert speed.n_runs == 0 and speed.flops_per_s > 0 and speed.ratio == 1.0


def test_deleting_one_run_of_a_comparison_lets_its_partner_finish(tmp_path):
    db = tmp_path / "runs.db"
    store = Store(db)
    pair = spec(steps=8000, metrics="none", optimizers=("agd", "sgd"))
    a, b = (store.create_run(pair.with_optimizer(o).to_dict(), o) for o in pair.optimizers)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "agd_viz.worker", "--db", str(db), "--run-id", str(a),
                             "--run-id", str(b), "--quiet"], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (store.get_run(a)["step"] or 0) > 0, 60, "the pair to train")
        store.delete_run(a)  # e.g. from the Runs page, by another browser
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert store.get_run(a) is None and store.metrics(a).empty  # nothing written after the delete
    row = store.get_run(b)
    assert row["status"] == "finished" and row["step"] == 8000
