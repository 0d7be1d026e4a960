"""Jobs on a Ray cluster (agd_viz.cluster, docs/cluster.md), with real Ray and no mocks: a local
cluster of two nodes on this machine (a head and a worker node, `ray.cluster_utils.Cluster`),
started and stopped here, every address on loopback.

The nodes import the agd_viz of this checkout (PYTHONPATH set for them as it starts: "installed on
every node"). Ray 2.60 binds 127.0.0.1 only with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (else it
advertises the machine's network address) and wants an auth token unless RAY_AUTH_MODE=disabled,
which is fine for a cluster that never leaves loopback and lives for this module.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from agd_viz import cli, cluster
from agd_viz.cluster import ClusterInfo, RayBackend, resources, thin
from agd_viz.jobs import JobManager
from agd_viz.spec import RunSpec, SweepConfig
from agd_viz.store import ACTIVE_STATUSES, Store

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "node_ip_address": "127.0.0.1"}
HEAD = {**NODE, "include_dashboard": False}
SWEEP = ["--depths", "2,3", "--widths", "8,16", "--optimizer", "agd", "--optimizer", "adam:lr=1e-3",
         "--steps", "40", "--batch-size", "32", "--metrics", "full", "--quiet"]


@pytest.fixture(autouse=True)
def _signal_handlers():
    """The in-process CLI's local sweep installs its own SIGINT/SIGTERM handlers: put ours back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


# -- pure functions (no cluster) -------------------------------------------------------------------


def test_resources_a_gpu_share_for_small_networks_a_whole_gpu_for_paper_scale():
    gpus = ClusterInfo("h:6379", nodes=2, cpus=32, gpus=8, gpu_memory=80 * 2**30)
    small = RunSpec(dataset="digits", depth=8, width=128, optimizers=("agd", "adam"))
    paper = RunSpec(dataset="cifar10", depth=16, width=2048, batch_size=128, optimizers=("agd",))
    assert resources(small, gpus)["num_gpus"] == 0.25
    assert resources(small, gpus)["num_cpus"] == 1
    assert resources(paper, gpus)["num_gpus"] == 1.0
    assert resources(small.replace(device="cpu"), gpus)["num_gpus"] == 0  # asked for the CPU
    cpus = ClusterInfo("h:6379", nodes=2, cpus=8, gpus=0, node_cpus=4)
    assert resources(paper, cpus) == {"num_cpus": 4, "num_gpus": 0, "memory": resources(paper, gpus)["memory"]}
    assert resources(small, cpus)["num_cpus"] == 1
    narrow = ClusterInfo("h:6379", nodes=8, cpus=16, gpus=0, node_cpus=2)
    assert resources(paper, narrow)["num_cpus"] == 2  # never more than one node has


def test_thinning_keeps_evaluations_first_and_last_steps_and_grows_with_the_wait():
    nan = float("nan")
    rows = [{"step": s, "loss": 1.0, "train_loss": 0.5 if s % 25 == 0 else nan, "test_loss": nan}
            for s in range(0, 101)]
    kept = [r["step"] for r in thin(rows, 8)]
    assert {0, 1, 25, 50, 75, 100} <= set(kept)  # evaluated, first, last
    assert all(s % 8 == 0 or s in (1, 25, 50, 75, 100) for s in kept)
    assert len(kept) < 25
    assert thin(rows, 1) == rows
    assert [cluster.stride_for(w) for w in (0.5, 1.0, 1.5, 3.0, 5.0, 1000.0)] == [1, 1, 2, 4, 8, 64]


def test_without_ray_the_option_shows_its_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as where it is not installed
    monkeypatch.setenv(cluster.ENV_ADDRESS, "auto")
    assert not cluster.ray_installed()
    assert "pip install 'ray==2.60.0'" in cluster.setup_note()
    assert cluster.from_env(tmp_path / "runs.db") is None  # the app trains here and says why
    with pytest.raises(cluster.ClusterError, match=r"^running on a Ray cluster needs Ray.*pip install 'ray==2.60.0'$"):
        cluster.connect("auto")
    monkeypatch.delenv(cluster.ENV_ADDRESS)
    assert cluster.setup_note() is None


@pytest.mark.slow
def test_the_sweep_page_without_ray_trains_here_and_says_how_to_install_it(tmp_path, monkeypatch):
    from apptest_util import app_store, clean, open_page

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setenv(cluster.ENV_ADDRESS, "127.0.0.1:6379")
    with app_store(tmp_path / "runs.db", monkeypatch):
        at = clean(open_page("pages/sweep.py"))
        assert any("pip install 'ray==2.60.0'" in i.value for i in at.info), [i.value for i in at.info]
        assert any("at a time on this machine" in m.value for m in at.markdown)


def test_cli_without_ray_is_one_line_with_the_install_command(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from agd_viz.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    db = tmp_path / "runs.db"
    out = subprocess.run([sys.executable, "-c", code, "train", "--steps", "5", "--ray", "auto", "--db", str(db)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "agd_viz train: running on a Ray cluster needs Ray, which is not installed here: pip install 'ray==2.60.0'"]
    assert not db.exists()


# -- the cluster -----------------------------------------------------------------------------------


class Local:
    """The module's two-node cluster: `address`, the `worker` node, `kill_worker()`, and
    `restore()` to get two nodes with every CPU free again."""

    def __init__(self, ray, Cluster, temp_dir: str):
        self.ray = ray
        # Its own session folder (logs, sockets), removed afterwards; short: sockets live there.
        self.cluster = Cluster(initialize_head=True, head_node_args={**HEAD, "temp_dir": temp_dir})
        self.worker = self.add_worker()
        self.address = self.cluster.address
        self.killed = False

    def kill_worker(self) -> None:
        """The worker node dies at once: its raylet and its workers are killed."""
        self.cluster.remove_node(self.worker, allow_graceful=False)
        self.killed = True

    def add_worker(self):
        node = self.cluster.add_node(**NODE)
        self.cluster.wait_for_nodes()
        return node

    def restore(self) -> None:
        """A fresh worker node if a test killed the last one, and all CPUs free again."""
        if self.killed:
            self.worker = self.add_worker()
            self.killed = False
        wait_for(lambda: self.ray.available_resources().get("CPU", 0) >= 2, 60, "the cluster's CPUs to be free")


@pytest.fixture(scope="module")
def ray_cluster():
    saved = {k: os.environ.get(k) for k in [*LOOPBACK_ENV, "PYTHONPATH"]}
    # Before Ray is imported: it reads them once, at import.
    assert "ray" not in sys.modules or os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0"
    os.environ.update(LOOPBACK_ENV)
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # The nodes (and their workers) import this checkout's agd_viz: "installed on every node".
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), saved["PYTHONPATH"]) if p)
    local = None
    temp_dir = tempfile.mkdtemp(prefix="agdray-")
    # Cluster() writes the head's address (what `auto` finds) to Ray's default folder whatever temp_dir is.
    os.makedirs(os.path.join(tempfile.gettempdir(), "ray"), exist_ok=True)
    try:
        local = Local(ray, Cluster, temp_dir)
        yield local
    finally:
        ray.shutdown()
        if local is not None:
            local.cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def wait_for(cond, timeout: float, what: str, period: float = 0.1):
    end = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(period)


def by_cell(store: Store, group_id: int | None = None) -> dict:
    return {(r["depth"], r["width"], r["optimizer"]): r for r in store.list_runs(group_id=group_id)}


def same_metrics(a: Store, ra: int, b: Store, rb: int) -> None:
    """Every logged value of two runs equal, step by step (wall-clock times aside)."""
    ma, mb = a.metrics(ra).drop(columns=["t"]), b.metrics(rb).drop(columns=["t"])
    assert ma.shape == mb.shape and ma.step.is_unique, (ma.shape, mb.shape)
    assert np.array_equal(ma.to_numpy(), mb.to_numpy(), equal_nan=True), (ma - mb).abs().max()
    la, lb = a.layer_metrics(ra).drop(columns=["t"]), b.layer_metrics(rb).drop(columns=["t"])
    assert la.shape == lb.shape
    assert np.array_equal(la.to_numpy(dtype=float), lb.to_numpy(dtype=float), equal_nan=True)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The 2 x 2 sweep trained here, in this process, with the same seeds: the reference."""
    db = tmp_path_factory.mktemp("local") / "runs.db"
    assert cli.main(["sweep", *SWEEP, "--db", str(db)]) == 0
    return Store(db)


def ended(store: Store, ids) -> bool:
    return all(store.get_run(r)["status"] not in ACTIVE_STATUSES for r in ids)


@pytest.mark.slow
def test_a_sweep_through_ray_equals_the_same_sweep_run_here(ray_cluster, local_sweep, tmp_path, capsys):
    db = tmp_path / "runs.db"
    before = sorted(os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir("/proc/self/task"))
    assert cli.main(["sweep", *SWEEP, "--db", str(db), "--ray", ray_cluster.address]) == 0
    # The driver (the app's server, here the command line) is not lowered to a worker's priority:
    # a cluster job's handle carries the driver's pid, and only local workers are reniced.
    assert max(os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir("/proc/self/task")) <= max(before)
    store = Store(db)
    ours, ref = by_cell(store), by_cell(local_sweep)
    assert len(ours) == 8 and ours.keys() == ref.keys()
    for key, row in ours.items():
        assert row["status"] == "finished", (key, row["error"])
        assert row["summary"]["attempts"] == 1 and row["summary"]["node"] == "127.0.0.1"
        same_metrics(store, row["id"], local_sweep, ref[key]["id"])
        for k in ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc", "mean_eta"):
            assert row["summary"][k] == ref[key]["summary"][k], (key, k)
    out = capsys.readouterr().out
    assert "final train accuracy, agd" in out
    # Export reads a cluster run as any other.
    assert store.export_run(ours[(2, 8, "agd")]["id"], "csv").count("\n") == 42


@pytest.mark.slow
def test_cancel_through_ray_stops_a_run_within_seconds_and_keeps_its_metrics(ray_cluster, tmp_path):
    db = tmp_path / "runs.db"
    backend = RayBackend.connect(ray_cluster.address, db)
    manager = JobManager(db, backend=backend)
    try:
        spec = RunSpec(depth=2, width=16, steps=200_000, batch_size=32, optimizers=("agd", "adam:lr=1e-3"),
                       metrics="none")
        _, (a, b) = manager.submit(spec)
        store = manager.store
        wait_for(lambda: min(len(store.metrics(a)), len(store.metrics(b))) > 20, 60, "both runs to train")
        t0 = time.monotonic()
        assert manager.cancel(a)  # one run of the job: the other trains on
        wait_for(lambda: store.get_run(a)["status"] == "cancelled", 10, "run a to stop")
        assert time.monotonic() - t0 < 5
        assert store.get_run(b)["status"] == "running"
        before = len(store.metrics(b))
        wait_for(lambda: len(store.metrics(b)) > before, 10, "run b to go on")
        t0 = time.monotonic()
        manager.stop([b])  # the last run: the whole task is stopped
        wait_for(lambda: store.get_run(b)["status"] == "cancelled", 10, "run b to stop")
        assert time.monotonic() - t0 < 5
        for rid in (a, b):
            row, m = store.get_run(rid), store.metrics(rid)
            assert len(m) > 20 and m.step.tolist() == list(range(len(m)))  # kept, none lost
            assert row["summary"]["steps"] == m.step.max() and row["error"] is None
        wait_for(lambda: manager.worker_pid(a) is None, 10, "the job to be reaped")
    finally:
        manager.shutdown()
    ray_cluster.restore()  # and the cluster's CPUs are free again: the task really ended


def _wait_job_on(backend: RayBackend, node_id: str, store: Store):
    def find():
        for job in list(backend.jobs):
            if job.node.get("node_id") == node_id and job.returncode is None \
                    and len(store.metrics(job.run_ids[0])) > 10:
                return job
        return None

    return wait_for(find, 120, "a job training on the worker node")


@pytest.mark.slow
def test_a_node_dying_mid_sweep_retries_its_job_from_scratch_without_mixing_attempts(
        ray_cluster, local_sweep, tmp_path):
    db = tmp_path / "runs.db"
    # Longer runs than the reference's, so the node dies while they train; same seeds and shapes.
    config = SweepConfig(depths="2,3", widths="8,16", optimizers=("agd", "adam:lr=1e-3"), steps=1200,
                         batch_size=32, metrics="full")
    backend = RayBackend.connect(ray_cluster.address, db, retries=2)
    manager = JobManager(db, backend=backend)
    try:
        _, ids = manager.submit_group(config.specs(), group_spec=config.to_dict())
        victim = _wait_job_on(backend, ray_cluster.worker.node_id, manager.store)
        ray_cluster.kill_worker()
        wait_for(lambda: ended(manager.store, ids), 240, "every run to end")
        store = manager.store
        ref_db = tmp_path / "ref.db"
        assert cli.main(["sweep", "--depths", "2,3", "--widths", "8,16", "--optimizer", "agd", "--optimizer",
                         "adam:lr=1e-3", "--steps", "1200", "--batch-size", "32", "--metrics", "full", "--quiet",
                         "--db", str(ref_db)]) == 0
        ref = by_cell(Store(ref_db))
        for key, row in by_cell(store).items():
            assert row["status"] == "finished", (key, row["status"], row["error"])
            assert row["summary"]["attempts"] == (2 if row["id"] in victim.run_ids else 1), key
            same_metrics(store, row["id"], Store(ref_db), ref[key]["id"])  # none lost, none doubled
        log = (db.parent / "runs.db.logs" / f"run-{victim.run_ids[0]}.log").read_text()
        assert "attempt 1 lost (the Ray node 127.0.0.1" in log and "attempt 2 on node" in log
    finally:
        manager.shutdown()
        ray_cluster.restore()


@pytest.mark.slow
def test_a_node_dying_with_no_retries_left_fails_its_runs_with_the_reason(ray_cluster, tmp_path):
    db = tmp_path / "runs.db"
    config = SweepConfig(depths="2", widths="8,16", optimizers=("agd",), steps=100_000, batch_size=32,
                         metrics="none")
    backend = RayBackend.connect(ray_cluster.address, db, retries=0)
    manager = JobManager(db, backend=backend)
    try:
        _, ids = manager.submit_group(config.specs(), group_spec=config.to_dict())
        victim = _wait_job_on(backend, ray_cluster.worker.node_id, manager.store)
        ray_cluster.kill_worker()
        store = manager.store
        (lost,) = victim.run_ids
        wait_for(lambda: store.get_run(lost)["status"] == "failed", 120, "the lost run to fail")
        row = store.get_run(lost)
        assert row["error"].startswith("the Ray node 127.0.0.1") and "died" in row["error"]
        assert len(store.metrics(lost)) > 10  # what it streamed before the node died is kept
        manager.stop(ids)
        wait_for(lambda: ended(store, ids), 30, "the other run to stop")
        assert [store.get_run(r)["status"] for r in ids if r != lost] == ["cancelled"]
    finally:
        manager.shutdown()
        ray_cluster.restore()


DRIVER = ["-m", "agd_viz", "sweep", "--depths", "2", "--widths", "8,16", "--optimizer", "agd", "--steps",
          "200000", "--batch-size", "32", "--quiet"]


@pytest.mark.slow
def test_driver_death_stops_its_tasks_and_a_restart_marks_its_runs_interrupted(ray_cluster, tmp_path):
    db = tmp_path / "runs.db"
    driver = subprocess.Popen([sys.executable, *DRIVER, "--db", str(db), "--ray", ray_cluster.address],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        store = wait_for(lambda: Store(db) if db.exists() else None, 60, "the driver's store")
        wait_for(lambda: len(store.list_runs()) == 2 and all(len(store.metrics(r["id"])) > 10
                                                            for r in store.list_runs()), 90, "both runs to train")
        ray = ray_cluster.ray
        assert ray.available_resources().get("CPU", 0) < 1  # the two tasks hold the cluster's CPUs
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        ray_cluster.restore()  # the CPUs come back: Ray stopped the dead driver's tasks
        steps = [len(store.metrics(r["id"])) for r in store.list_runs()]
        time.sleep(1.0)
        assert [len(store.metrics(r["id"])) for r in store.list_runs()] == steps  # nothing trains on
        manager = JobManager(db, start=False)  # the app (or the CLI) starting again
        try:
            assert sorted(manager.recovered) == sorted(r["id"] for r in store.list_runs())
        finally:
            manager.shutdown()
        for r in store.list_runs():
            assert r["status"] == "interrupted" and len(store.metrics(r["id"])) > 10
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()


@pytest.mark.slow
def test_cli_sigterm_cancels_the_runs_on_the_cluster(ray_cluster, tmp_path):
    db = tmp_path / "runs.db"
    driver = subprocess.Popen([sys.executable, *DRIVER, "--db", str(db), "--ray", ray_cluster.address],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        store = wait_for(lambda: Store(db) if db.exists() else None, 60, "the driver's store")
        wait_for(lambda: len(store.list_runs()) == 2 and all(len(store.metrics(r["id"])) > 10
                                                            for r in store.list_runs()), 90, "both runs to train")
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=30)
        assert driver.returncode == 0, err
        assert [r["status"] for r in store.list_runs()] == ["cancelled", "cancelled"]
        assert "cancelled" in out
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    ray_cluster.restore()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_an_unreachable_cluster_is_one_line_and_queues_nothing(ray_cluster, tmp_path):
    db = tmp_path / "runs.db"
    address = f"127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "agd_viz", "sweep", "--depths", "2", "--widths", "8", "--db",
                          str(db), "--ray", address], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"agd_viz sweep: cannot reach the Ray cluster at {address}: connection refused"]
    assert not db.exists()  # nothing queued, not even a store
    assert time.monotonic() - t0 < 60
    with pytest.raises(cluster.ClusterError, match="cannot reach the Ray cluster"):
        cluster.from_env(db, address=address)


@pytest.mark.slow
def test_auto_joins_the_cluster_this_machine_runs(ray_cluster, tmp_path, capsys):
    db = tmp_path / "runs.db"
    assert cli.main(["train", "--depth", "2", "--width", "8", "--steps", "10", "--db", str(db), "--ray", "auto"]) == 0
    (row,) = Store(db).list_runs()
    assert row["status"] == "finished" and len(Store(db).metrics(row["id"])) == 11
    err = capsys.readouterr().err
    assert f"on a Ray cluster at {ray_cluster.address} (2 nodes, 2 CPUs, 0 GPUs)" in err


def _copy_of_agd_viz(tmp_path: Path, version: str) -> Path:
    """This checkout's package with another version number: a driver whose code the nodes lack."""
    root = tmp_path / "other"
    shutil.copytree(ROOT / "agd_viz", root / "agd_viz", ignore=shutil.ignore_patterns("__pycache__"))
    init = root / "agd_viz" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', f'__version__ = "{version}+', 1))
    return root


@pytest.mark.slow
def test_other_code_on_the_nodes_is_a_clear_error_and_shipping_the_code_fixes_it(ray_cluster, tmp_path):
    other = _copy_of_agd_viz(tmp_path, "9")
    cwd = tmp_path / "elsewhere"  # Ray puts the driver's working directory on the workers' path
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(other)}
    db = cwd / "runs.db"
    cmd = [sys.executable, "-m", "agd_viz", "train", "--depth", "2", "--width", "8", "--steps", "10", "--quiet",
           "--db", str(db), "--ray", ray_cluster.address]
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    import agd_viz

    assert line.startswith(f"agd_viz train: node 127.0.0.1 has agd_viz {agd_viz.__version__} ")
    assert f"this driver 9+{agd_viz.__version__}" in line and "--ray-ship-code" in line
    assert not db.exists()
    out = subprocess.run([*cmd, "--ray-ship-code"], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    (row,) = Store(db).list_runs()
    assert row["status"] == "finished"
    log = (cwd / "runs.db.logs" / f"run-{row['id']}.log").read_text()
    assert f"agd_viz 9+{agd_viz.__version__} from /" in log and "runtime_resources" in log


APP_SCRIPT = textwrap.dedent("""
    import sys, time
    from streamlit.testing.v1 import AppTest
    from agd_viz.store import Store

    db = sys.argv[1]
    at = AppTest.from_file("app.py", default_timeout=120).run()
    at.switch_page("pages/sweep.py").run()
    assert not at.exception, [e.value for e in at.exception]
    where = [m.value for m in at.markdown if "Ray cluster" in m.value]
    assert where, [m.value for m in at.markdown]
    at.switch_page("pages/live.py").run()
    for key, value in (("lv_depth", 3), ("lv_width", 8), ("lv_steps", 30), ("lv_batch_size", 16)):
        at.number_input(key=key).set_value(value)
    at.run()
    at.button(key="lv_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    store = Store(db)
    deadline = time.monotonic() + 120
    while not (store.list_runs() and all(r["status"] not in ("queued", "running") for r in store.list_runs())):
        assert time.monotonic() < deadline, [(r["id"], r["status"]) for r in store.list_runs()]
        time.sleep(0.3)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    runs = store.list_runs()
    assert [r["status"] for r in runs] == ["finished"] * 2, [(r["status"], r["error"]) for r in runs]
    assert all(r["summary"]["node"] == "127.0.0.1" for r in runs)
    charts = at.get("bidi_component") + at.get("plotly_chart")
    print("TORCH" if "torch" in sys.modules else "NO-TORCH", len(charts), where[0].replace(chr(92), ""))
""")


@pytest.mark.slow
def test_the_app_trains_on_the_cluster_and_its_server_never_imports_torch(ray_cluster, tmp_path):
    env = {**os.environ, "AGD_VIZ_DB": str(tmp_path / "runs.db"), cluster.ENV_ADDRESS: ray_cluster.address,
           "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", APP_SCRIPT, env["AGD_VIZ_DB"]], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    words = out.stdout.strip().splitlines()[-1].split(" ", 2)
    assert words[0] == "NO-TORCH" and int(words[1]) > 0, out.stdout[-2000:]
    assert "on a Ray cluster at" in words[2] and "2 nodes, 2 CPUs, 0 GPUs" in words[2]


def test_a_downloadable_set_is_fetched_once_per_node(tmp_path, monkeypatch):
    """`remote.ensure_dataset`, which every task calls before training: concurrent tasks of one node
    fetch and check the files once (a file lock), later ones find them cached."""
    pytest.importorskip("torch")
    from test_downloads import Server, mnist_files, source_for

    from agd_viz import downloads, remote

    server = Server()
    try:
        files = mnist_files()
        server.files.update(files)
        monkeypatch.setitem(downloads.SOURCES, "mnist", source_for("mnist", files, server.url))
        cache = tmp_path / "cache"
        threads = [threading.Thread(target=remote.ensure_dataset, args=("mnist", None, cache)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(server.requests) == sorted(files)  # each file once, for four tasks
        assert downloads.is_downloaded("mnist", cache)
        remote.ensure_dataset("digits", None, cache)  # generated where it runs: nothing to fetch
        assert len(server.requests) == len(files)
    finally:
        server.close()
