"""The job manager's pre-started worker: a run submitted while it waits is trained by that process
(started before the run existed), its output lands in the run's log, and nothing is left behind."""

import os
import time
from pathlib import Path

import pytest

from agd_viz import jobs, procs
from agd_viz.jobs import JobManager, log_path
from agd_viz.spec import RunSpec
from agd_viz.store import Store

# Real worker processes and servers, seconds each: left out of the quick loop (README, "Tests").
pytestmark = pytest.mark.slow

SPEC = RunSpec(dataset="digits", depth=2, width=8, steps=30, batch_size=32, device="cpu", optimizers=("agd",))


def spare_pids(db: Path) -> set[int]:
    """Live processes waiting as pre-started workers of this store."""
    found = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (b"agd_viz.worker" in cmd and b"--from-stdin" in cmd and str(db).encode() in cmd
                and procs.pid_alive(int(d.name))):
            found.add(int(d.name))
    return found


def wait_for(cond, timeout=120.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="reads /proc to find the worker processes")
def test_a_run_goes_to_the_pre_started_worker_and_shutdown_leaves_no_process(tmp_path):
    db = (tmp_path / "runs.db").resolve()
    manager = JobManager(db, max_workers=1, prewarm=1, poll_interval=0.05)
    try:
        (spare,) = wait_for(lambda: spare_pids(db), what="a pre-started worker")
        time.sleep(0.5)
        submitted = time.time()
        _, (rid,) = manager.submit(SPEC)
        assert manager.worker_pid(rid) == spare
        # Handed a job, it trains at the workers' lower priority, every thread of it (a laptop
        # demo keeps a responsive page); it imported at normal priority while nothing trained.
        if manager.nice and hasattr(os, "getpriority"):
            mine = os.getpriority(os.PRIO_PROCESS, 0)
            niceness = [os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir(f"/proc/{spare}/task")]
            assert niceness and all(n > mine for n in niceness), niceness
        started = procs.proc_stat(spare)[1]
        assert started is None or started < submitted  # the process existed before the run
        store = Store(db)
        wait_for(lambda: store.get_run(rid)["status"] not in ("queued", "running"), what="the run to end")
        row = store.get_run(rid)
        assert row["status"] == "finished", row["error"]
        assert row["step"] == SPEC.steps
        assert "-m agd_viz.worker --from-stdin" in log_path(db, rid).read_text()
        # Idle again: a fresh worker is made ready for the next run.
        assert wait_for(lambda: spare_pids(db) - {spare}, what="a new pre-started worker")
    finally:
        manager.shutdown()
    assert not spare_pids(db)
    assert not [p for p in os.listdir(log_path(db, 0).parent) if p.startswith("spare-")]


def test_prewarm_setting_is_checked():
    with pytest.raises(ValueError, match="AGD_VIZ_PREWARM"):
        os.environ[jobs.ENV_PREWARM] = "lots"
        try:
            jobs.default_prewarm()
        finally:
            del os.environ[jobs.ENV_PREWARM]
    assert jobs.default_prewarm(1) == 1
