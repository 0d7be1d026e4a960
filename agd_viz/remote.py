"""What a Ray task runs on a cluster node (docs/cluster.md): one job's `RunSpec` trained by
`train.run`, its records turned into plain data (dicts of floats, numpy arrays) and yielded in
batches, one batch per `Sync`, to the process that submitted the task. That process
(`agd_viz.cluster`) writes them into its store: a node has no store and needs no shared
filesystem, and the driver never unpickles anything of torch's.

`agd_viz.cluster` starts this by its module name on the node (`NODE_MODULE`), the way the job
manager starts `python -m agd_viz.worker`: the driver, the app's server included, never imports
this module nor torch.

A batch is a dict with any of
    "hello":  {"node", "node_id", "pid", "device", "version", "code", "threads"} (first, once)
    "steps":  [(opt, [row, ...]), ...], a row {"step", "t", <scalar metrics>, "layers"?}
              (NaN where not logged, as `Store.append_metrics` takes it)
    "grids":  [(opt, {"x", "y", "points", "labels", "classes"})], a run's boundary plane, once
    "frames": [(opt, step, probs)], decision-boundary pictures (uint8 arrays)
    "ends":   [(opt, status, step, error, summary)]

Stopping: `stop(i)` of `train.run` asks the driver's flags actor (`agd_viz.cluster._Flags`) which
runs to stop, at most every STOP_POLL_S and without waiting for its answer, so training never
blocks on the network. A flags actor that is gone means the driver is gone: every run ends
"interrupted" (Ray also ends a task whose owner died).

Datasets: digits and the toy sets are generated here by their loaders; a downloadable set is
fetched into this node's cache once (a file lock makes concurrent tasks of one node wait for
the first), checked against its MD5 sums by `agd_viz.downloads`, and read without unpickling.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from pathlib import Path

import agd_viz
from agd_viz import datasets, downloads, train
from agd_viz.spec import RunSpec

__all__ = ["stream", "warm_up", "VersionMismatch", "ensure_dataset", "node_facts", "step_row"]

STOP_POLL_S = 0.25
SCALARS = ("loss", "acc", "eta", "G", "lr", "train_loss", "train_acc", "test_loss", "test_acc")


class VersionMismatch(RuntimeError):
    """This node's agd_viz is not the driver's: its records could mean something else."""


def node_facts(threads: int | None = None) -> dict:
    """Where this task runs: node address and id, process, the code's version and location."""
    import ray

    ctx = ray.get_runtime_context()
    return {"node": _node_ip(), "node_id": ctx.get_node_id(), "pid": os.getpid(),
            "version": agd_viz.__version__, "code": str(Path(agd_viz.__file__).resolve().parent),
            "threads": threads}


def _node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - a name for a log line, nothing depends on it
        return socket.gethostname()


def check_version(driver_version: str) -> None:
    if agd_viz.__version__ != driver_version:
        raise VersionMismatch(
            f"node {_node_ip()} runs agd_viz {agd_viz.__version__} from {Path(agd_viz.__file__).parent}, "
            f"the driver {driver_version}: install the driver's version on every node "
            f"(pip install agd-viz=={driver_version}, or pip install . from the same checkout), or ship "
            "the driver's code with --ray-ship-code / AGD_VIZ_RAY_SHIP_CODE=1")


def ensure_dataset(name: str, base_url: str | None = None, cache_dir=None) -> None:
    """A downloadable set in this node's cache: fetched and checksummed once per node (concurrent
    tasks wait on a file lock for the first one), nothing for a generated set."""
    info = datasets.DATASETS.get(name)
    if info is None or not info.downloadable or downloads.is_downloaded(name, cache_dir):
        return
    import fcntl

    root = downloads.cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not downloads.is_downloaded(name, cache_dir):  # the first task of this node fetched it meanwhile
            downloads.download(name, cache_dir=cache_dir, base_url=base_url)


def warm_up() -> None:
    """What a task's worker process does once, ahead of the first job (`RayBackend.warm_up`): import
    torch and the training path, read the default dataset, run two tiny steps. Ray keeps the process
    for the driver's next task, whose first record then comes without those seconds."""
    from agd_viz import data

    data.load(datasets.DEFAULT_DATASET)
    for _ in train.run(RunSpec(depth=2, width=8, steps=2, batch_size=8, device="cpu")):
        pass


def step_row(rec: train.Step) -> dict:
    row = {"step": rec.step, "t": rec.t}
    for k in SCALARS:
        row[k] = getattr(rec, k)
    if rec.layers is not None:
        row["layers"] = rec.layers
    return row


class _Stop:
    """`train.run`'s stop(i): whether run i was asked to stop, from the flags actor's last answer."""

    def __init__(self, flags, run_ids):
        self.flags, self.run_ids = flags, list(run_ids)
        self.stopped: set = set()
        self.driver_gone = False
        self.pending = None
        self.asked_at = 0.0

    def __call__(self, i: int) -> bool:
        import ray

        if self.flags is None:
            return False
        if self.pending is not None:
            ready, _ = ray.wait([self.pending], timeout=0)
            if ready:
                try:
                    self.stopped = set(ray.get(self.pending))
                except ray.exceptions.RayActorError:
                    self.driver_gone = True
                self.pending = None
        now = time.monotonic()
        if self.pending is None and not self.driver_gone and now - self.asked_at >= STOP_POLL_S:
            self.asked_at = now
            self.pending = self.flags.stopped.remote(self.run_ids)
        return self.driver_gone or self.run_ids[i] in self.stopped


class _Batch:
    def __init__(self):
        self.data: dict = {}

    def add(self, key: str, item) -> None:
        self.data.setdefault(key, []).append(item)

    def take(self) -> dict | None:
        out, self.data = self.data, {}
        return out or None


def stream(spec_dict: dict, run_ids: list, driver_version: str, flags=None, data_url: str | None = None,
           threads: int = 1):
    """Train `spec_dict` (a RunSpec's fields; its optimisers are runs `run_ids` of the driver's
    store) and yield batches of plain records (module docstring)."""
    check_version(driver_version)
    import torch

    torch.set_num_threads(max(1, int(threads)))
    spec = RunSpec.from_dict(spec_dict)
    yield {"hello": {**node_facts(threads), "device": str(train.resolve_device(spec.device))}}
    ensure_dataset(spec.dataset, data_url)
    stop = _Stop(flags, run_ids)
    batch, per_opt = _Batch(), {}
    ended: set[int] = set()
    grids: set[int] = set()
    try:
        for rec in train.run(spec, stop=stop):
            if isinstance(rec, train.Step):
                per_opt.setdefault(rec.opt, []).append(step_row(rec))
            elif isinstance(rec, train.Boundary):
                if rec.opt not in grids:
                    g = rec.grid
                    batch.add("grids", (rec.opt, {"x": g.x, "y": g.y, "points": g.points, "labels": g.labels,
                                                  "classes": list(g.classes)}))
                    grids.add(rec.opt)
                batch.add("frames", (rec.opt, rec.step, rec.probs))
            elif isinstance(rec, train.End):
                status, error = rec.status, rec.error
                if status == "cancelled" and stop.driver_gone:
                    status, error = "interrupted", "the app that started this run exited"
                _flush_steps(batch, per_opt)
                batch.add("ends", (rec.opt, status, rec.step, error, rec.summary))
                ended.add(rec.opt)
            if isinstance(rec, (train.Sync, train.End)):
                _flush_steps(batch, per_opt)
                out = batch.take()
                if out is not None:
                    yield out
    except Exception as exc:  # as the local worker does: every unfinished run failed, with the reason
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        _flush_steps(batch, per_opt)
        for i in range(len(spec.optimizers)):
            if i not in ended:
                batch.add("ends", (i, "failed", 0, text, {"device": None}))
        yield batch.take()
        return
    _flush_steps(batch, per_opt)
    out = batch.take()
    if out is not None:
        yield out


def _flush_steps(batch: _Batch, per_opt: dict) -> None:
    for opt, rows in per_opt.items():
        if rows:
            batch.add("steps", (opt, list(rows)))
            rows.clear()

