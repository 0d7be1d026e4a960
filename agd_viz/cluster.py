"""Jobs on a Ray cluster: the job manager's backend when a Ray address is given (`--ray ADDRESS` on
`train` and `sweep`, `$AGD_VIZ_RAY_ADDRESS` for the app; docs/cluster.md).

A job (the runs of one `RunSpec`) becomes one Ray task instead of a worker process. The task runs
the same training code on a node (`agd_viz.remote`, started there by its module name, so neither
torch nor that module is ever imported here) and streams its records back as a Ray streaming
generator (`num_returns="streaming"`), one batch per sync. This process, the driver, writes them
into its own SQLite store through one writer thread, so no shared filesystem is needed and the
pages, the Runs table and the exports read cluster runs as they read local ones. `ray` itself is
imported only when a cluster is used: the app runs without it.

Decisions
- Streaming generator, not an actor: a task's worker process is pooled and reused by Ray, so a
  job after the first skips the process start and the torch import (an actor would start a
  process per job). Per-run stops go through one small actor of this driver (`_Flags`, on the
  driver's node), which the task asks at most every `remote.STOP_POLL_S` without waiting.
- The handle of a job (`RayJob`) answers the job manager as a `subprocess.Popen` would (`pid`,
  `poll`, `send_signal`, `kill`, `wait`), so queue, cap, cancel and shutdown stay the local ones.
  Its pid is the driver's: the store's owner of a cluster run is the process that writes it.
- Cancel: the store's cancel flag (the page's Stop, the Runs page, another server) is forwarded to
  `_Flags` within POLL_S; the task ends the run at its next sync, "cancelled", keeping its
  metrics. A task still running `kill_after` seconds later is `ray.cancel(force=True)`ed.
- Node death: the job is retried from step 0 on another node, up to `$AGD_VIZ_RAY_RETRIES` times
  (default 2), then its runs end "failed" with Ray's reason. Ray's own task retries are off
  (`max_retries=0`): a streaming generator re-executed by Ray resumes the stream where the driver
  stopped reading, which would join the first attempt's early steps to the second's later ones.
  Here the lost attempt's metrics and frames are deleted first (`Store.clear_metrics`), in the
  writer's order, so a run's metrics always come from one attempt; the summary says how many
  attempts it took. An error of the training code itself is not retried: it would fail again.
- Driver death: Ray stops the tasks of a driver that is gone (their owner died; the flags actor
  dies with it and a task that notices ends its runs "interrupted"); the runs are marked
  "interrupted" on the next start (`JobManager.recover`: their owner pid is dead).
- Unreachable cluster or Ray missing: `connect` raises `ClusterError` with one line, before
  anything is written. (A plain `ray.init` to a dead address waits minutes: a TCP check first.)
- Code on the nodes: the agd_viz installed there, or this one shipped with Ray's runtime_env
  (`ship_code`: `py_modules`, the package folder only). On connecting, one tiny task per node
  reports the version it imports; any difference from the driver's is a `ClusterError` naming the
  node. Every task checks again (nodes may join later).
- Resources (`resources`): 1 CPU per job (more for networks whose steps are large matrix
  products, up to 4); on a cluster with GPUs, a job of a GPU-capable spec asks for a share of a
  GPU sized from its memory estimate (quarters: four small comparisons share a device) and a whole
  GPU for paper-scale networks; Ray's `memory` resource gets the memory estimate.
- Ingest (`_Writer`): one thread writes every job's batches in arrival order. When a batch has
  waited more than THIN_AFTER_S to be written, the per-step rows of runs nobody watches live
  (those of sweeps) are thinned by a power-of-two stride that grows with the wait; evaluated
  steps, the first steps, each batch's last step, pictures and ends are always kept. The summary
  counts the rows dropped (`thinned_rows`). benchmarks/ray_cluster.py measures where one driver
  saturates.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import queue
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from agd_viz import cost, fmt
from agd_viz.spec import RunSpec, SpecError
from agd_viz.store import ACTIVE_STATUSES, CANCELLED, FAILED, Store

__all__ = ["ClusterError", "ClusterInfo", "RayBackend", "RayJob", "connect", "from_env", "resources",
           "setup_note", "ray_installed", "wait_runs", "ENV_ADDRESS", "INSTALL_COMMAND"]

log = logging.getLogger(__name__)

ENV_ADDRESS = "AGD_VIZ_RAY_ADDRESS"
ENV_SHIP_CODE = "AGD_VIZ_RAY_SHIP_CODE"
ENV_RETRIES = "AGD_VIZ_RAY_RETRIES"
ENV_DATA_URL = "AGD_VIZ_RAY_DATA_URL"
RAY_REQUIREMENT = "ray==2.60.0"
INSTALL_COMMAND = f"pip install '{RAY_REQUIREMENT}'"
NODE_MODULE = "agd_viz.remote"  # imported on the nodes, never here
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_RETRIES = 2
CONNECT_TIMEOUT_S = 5.0  # the TCP check before ray.init
INIT_TIMEOUT_S = 60.0  # ray.init itself
PROBE_TIMEOUT_S = 120.0  # the version probe: a node may need to start a worker process
POLL_S = 0.3  # how often a job's thread forwards cancel flags while no batch comes
INFO_TTL_S = 10.0  # the cluster's size is re-read at most this often
JOBS_PER_GPU = 4  # the smallest GPU share is 1/JOBS_PER_GPU
DEFAULT_GPU_MEMORY = 16 * 2**30  # when a node's GPUs cannot be read (no nvidia-smi)
PAPER_SCALE_MACS = 4e9  # multiply-adds per step (~25 GFLOP with the backward pass) that keep a GPU busy
THIN_AFTER_S = 1.0  # a batch that waited longer than this to be written: thin unwatched runs
MAX_STRIDE = 64


def version() -> str:
    """This agd_viz's version. Read from the package, imported before any of its modules: an
    `import agd_viz` here would put the package's lazy torch names on the server's import graph."""
    return sys.modules[__package__].__version__


class ClusterError(RuntimeError):
    """The cluster cannot be used: Ray missing, unreachable, or nodes with other code. One line."""


# ---------------------------------------------------------------------------------------------
# Is Ray here, and where is the cluster


def ray_installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def _require_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError(f"running on a Ray cluster needs Ray, which is not installed here: {INSTALL_COMMAND}") from None
    return ray


def setup_note() -> str | None:
    """A sentence for the Sweep page when $AGD_VIZ_RAY_ADDRESS is set but Ray is not installed."""
    if os.environ.get(ENV_ADDRESS, "").strip() and not ray_installed():
        return (f"{ENV_ADDRESS} is set, but Ray is not installed in this server's Python, so runs train on this "
                f"machine. To run them on the cluster: `{INSTALL_COMMAND}`, then restart the app.")
    return None


def _resolve(address: str) -> str:
    """host:port of the cluster's GCS for `address` ("auto": the cluster this machine joined)."""
    address = address.strip()
    if address.startswith("ray://"):
        raise ClusterError(f"{address}: Ray Client addresses are not supported; run the driver on a node of "
                           "the cluster (docs/cluster.md) and give its GCS address (host:6379) or auto")
    if address == "auto":
        from ray._private import services  # how `ray.init("auto")` finds it, without its minutes of retries

        try:
            return services.canonicalize_bootstrap_address_or_die("auto")
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ClusterError(f"no Ray cluster to join with address auto: {_one_line(exc)} (start one with "
                               "`ray start --head`, or join one with `ray start --address HEAD:6379`)") from None
    return address


def _check_reachable(address: str, what: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"bad Ray address {what!r}: expected host:port (e.g. 10.0.0.5:6379) or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(f"cannot reach the Ray cluster at {address}"
                           + (f" (from {what})" if what != address else "") + f": {reason.lower()}") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Connecting


@dataclass(frozen=True)
class ClusterInfo:
    """What the cluster has now: alive nodes, CPUs, GPUs, the smallest GPU's memory (bytes, None
    when unknown), and the most CPUs and memory (Ray's `memory` resource) one node offers: a job
    asking for more than any node has would wait forever."""

    address: str
    nodes: int
    cpus: float
    gpus: float
    gpu_memory: int | None = None
    node_memory: float = 0.0
    node_cpus: float = 0.0

    def describe(self) -> str:
        return (f"a Ray cluster at {self.address} ({fmt.plural(self.nodes, 'node')}, "
                f"{fmt.plural(int(self.cpus), 'CPU')}, {fmt.plural(int(self.gpus), 'GPU')})")


def _cluster_info(ray, address: str, gpu_memory: int | None = None) -> ClusterInfo:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = sum(n["Resources"].get("CPU", 0.0) for n in nodes)
    gpus = sum(n["Resources"].get("GPU", 0.0) for n in nodes)
    memory = max((n["Resources"].get("memory", 0.0) for n in nodes), default=0.0)
    node_cpus = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
    return ClusterInfo(address, len(nodes), cpus, gpus, gpu_memory, memory, node_cpus)


def _probe_nodes(ray, timeout: float = PROBE_TIMEOUT_S) -> list[dict]:
    """One tiny task on every alive node: the agd_viz it imports (or why not) and its GPUs' memory.
    Defined here, inside, so cloudpickle sends it by value: it must run where agd_viz is missing."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    def probe():
        import importlib
        import os
        import subprocess

        facts = {}
        try:
            mod = importlib.import_module("agd_viz")
            facts.update(version=mod.__version__, code=os.path.dirname(mod.__file__))
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which explains it
            facts["error"] = f"{type(exc).__name__}: {exc}"
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10)
            facts["gpu_mib"] = [int(v) for v in out.stdout.split()] if out.returncode == 0 else []
        except (OSError, ValueError, subprocess.SubprocessError):
            facts["gpu_mib"] = []
        return facts

    task = ray.remote(num_cpus=0, max_retries=0)(probe)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in nodes]
    try:
        facts = ray.get(refs, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise ClusterError(f"the cluster's nodes did not answer within {timeout:g} s (are they out of worker "
                           "processes, or still starting?)") from None
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"could not run a task on the cluster: {_one_line(exc)}") from None
    return [{**f, "node": n.get("NodeManagerAddress"), "node_id": n["NodeID"]} for f, n in zip(facts, nodes)]


def _check_versions(facts: list[dict], ship_code: bool) -> None:
    hint = ("ship this machine's code with --ray-ship-code (or AGD_VIZ_RAY_SHIP_CODE=1 for the app)"
            if not ship_code else "check the runtime_env upload (docs/cluster.md)")
    for f in facts:
        if "error" in f:
            raise ClusterError(f"node {f['node']} cannot import agd_viz ({f['error'].splitlines()[0]}): install "
                               f"agd-viz {version()} there (pip install . from this checkout), or {hint}")
        if f["version"] != version():
            raise ClusterError(f"node {f['node']} has agd_viz {f['version']} ({f['code']}), this driver "
                               f"{version()}: install the same version on every node, or {hint}")


def connect(address: str, ship_code: bool = False, *, timeout: float = PROBE_TIMEOUT_S):
    """Join the Ray cluster at `address` (host:port, or "auto") as its driver; check that every
    node runs this agd_viz. Returns (ray module, ClusterInfo). ClusterError, one line, otherwise.
    Reuses this process's connection when it is to the same cluster with the same code setting."""
    ray = _require_ray()
    resolved = _resolve(address)
    _check_reachable(resolved, address)
    runtime_env = {"py_modules": [str(PACKAGE_DIR)]} if ship_code else None
    if ray.is_initialized():
        same = _connected_to(ray) == resolved and getattr(ray, "_agd_viz_ship_code", None) == ship_code
        if not same:
            ray.shutdown()
    if not ray.is_initialized():
        _init(ray, resolved, runtime_env)
        ray._agd_viz_ship_code = ship_code
    facts = _probe_nodes(ray, timeout)
    _check_versions(facts, ship_code)
    gpu_mib = [m for f in facts for m in f.get("gpu_mib") or ()]
    return ray, _cluster_info(ray, resolved, min(gpu_mib) * 2**20 if gpu_mib else None)


_STUCK: list = []  # a ray.init that never returned: this process cannot connect again


def _init(ray, address: str, runtime_env) -> None:
    """`ray.init` as a driver of the cluster at `address`, given INIT_TIMEOUT_S: a GCS that
    accepts the connection but never answers (or a driver Ray thinks is on another node) would
    make it wait for many minutes. In a thread, since it cannot be interrupted."""
    if _STUCK:
        raise ClusterError(f"an earlier attempt to join the Ray cluster at {_STUCK[0]} never returned; restart "
                           "this process to try again")
    result: dict = {}

    def init():
        # From a thread Ray warns that it installs no SIGTERM handler: wanted here (the CLI and the
        # app keep their own), so not shown.
        logging.getLogger("ray._private.worker").setLevel(logging.ERROR)
        try:
            ray.init(address=address, namespace="agd_viz", runtime_env=runtime_env, logging_level=logging.ERROR,
                     log_to_driver=False, configure_logging=False)
            result["ok"] = True
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=init, name="agd-viz-ray-init", daemon=True)
    thread.start()
    thread.join(INIT_TIMEOUT_S)
    if thread.is_alive():
        _STUCK.append(address)
        raise ClusterError(f"the Ray cluster at {address} did not answer within {INIT_TIMEOUT_S:g} s; the driver "
                           "must run on a node of the cluster (docs/cluster.md)")
    if "error" in result:
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise ClusterError(f"cannot join the Ray cluster at {address}: {_one_line(result['error'])}")


def _connected_to(ray) -> str | None:
    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001
        return None


def from_env(db_path, address: str | None = None) -> "RayBackend | None":
    """The app's backend: None unless $AGD_VIZ_RAY_ADDRESS is set and Ray is installed (the Sweep
    page then says how to install it: `setup_note`); ClusterError if the cluster cannot be used."""
    address = (address if address is not None else os.environ.get(ENV_ADDRESS, "")).strip()
    if not address or not ray_installed():
        return None
    ship = os.environ.get(ENV_SHIP_CODE, "").strip().lower() in ("1", "true", "yes")
    backend = RayBackend.connect(address, db_path, ship_code=ship)
    backend.warm_up()  # the app's first Start then skips a worker's start and imports, as a local spare does
    return backend


# ---------------------------------------------------------------------------------------------
# What a job asks for


def resources(spec: RunSpec, info: ClusterInfo) -> dict:
    """Ray resources of one job (module docstring): num_cpus, num_gpus, memory (bytes)."""
    memory = cost.estimate_memory_bytes(spec)
    macs = cost.network_macs(spec) * spec.batch_size * len(spec.optimizers)
    on_gpu = spec.device in ("auto", "cuda") and info.gpus > 0
    if on_gpu:
        share = memory / float(info.gpu_memory or DEFAULT_GPU_MEMORY)
        if share > 0.5 or macs >= PAPER_SCALE_MACS:
            gpus = 1.0
        else:
            gpus = max(1, math.ceil(share * JOBS_PER_GPU)) / JOBS_PER_GPU
        return {"num_cpus": 1, "num_gpus": gpus, "memory": memory}
    # A step of a small network is dispatch-bound: one thread is as fast and leaves the others free.
    cpus = 1 if macs < 2e8 else 2 if macs < 2e9 else 4
    cpus = max(1, min(cpus, int(info.node_cpus or info.cpus) or 1))
    return {"num_cpus": cpus, "num_gpus": 0, "memory": memory}


def _spec_of(rows: list[dict]) -> RunSpec:
    """The one spec that trains `rows` side by side (as agd_viz.worker.spec_of_runs)."""
    specs = [RunSpec.from_dict(r["spec"]) for r in rows]
    base = specs[0]
    if any(s.replace(optimizers=base.optimizers) != base for s in specs[1:]):
        raise SpecError("runs trained together must share every setting but the optimiser")
    return base.replace(optimizers=tuple(o for s in specs for o in s.optimizers))


def _node_task(*args):
    """The Ray task (a streaming generator): `agd_viz.remote.stream` on the node."""
    node = importlib.import_module(NODE_MODULE)
    yield from node.stream(*args)


def _node_warm_up() -> None:
    importlib.import_module(NODE_MODULE).warm_up()


class _Flags:
    """The driver's stop flags for its running jobs' runs, read by their tasks (a Ray actor)."""

    def __init__(self):
        self.stop_ids: set = set()

    def stop(self, run_ids) -> None:
        self.stop_ids.update(run_ids)

    def stopped(self, run_ids) -> list:
        return [r for r in run_ids if r in self.stop_ids]

    def forget(self, run_ids) -> None:
        self.stop_ids.difference_update(run_ids)


# ---------------------------------------------------------------------------------------------
# The backend


class RayBackend:
    """Starts jobs as Ray tasks and writes what they stream into the store at `db_path`."""

    def __init__(self, ray, info: ClusterInfo, db_path, *, retries: int | None = None,
                 data_url: str | None = None, thin_after: float | None = None):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self._info, self._info_at = ray, info, time.monotonic()
        self.db_path = Path(db_path).resolve()
        self.retries = retries if retries is not None else _env_retries()
        self.data_url = data_url if data_url is not None else (os.environ.get(ENV_DATA_URL) or None)
        self.pid = os.getpid()
        self.store = Store(self.db_path)
        here = ray.get_runtime_context().get_node_id()
        # On the driver's own node: a flags actor on a node that dies would stop every job.
        self.flags = ray.remote(num_cpus=0, max_restarts=0)(_Flags).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()
        self.task = ray.remote(max_retries=0)(_node_task)
        self.writer = _Writer(self.store, thin_after)
        self.writer.start()
        self.jobs: list[RayJob] = []
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def connect(cls, address: str, db_path, ship_code: bool = False, **kwargs) -> "RayBackend":
        ray, info = connect(address, ship_code)
        return cls(ray, info, db_path, **kwargs)

    # -- what the job manager asks ---------------------------------------------------------------

    def info(self) -> ClusterInfo:
        """The cluster now (nodes join and leave), re-read at most every INFO_TTL_S."""
        if time.monotonic() - self._info_at > INFO_TTL_S:
            try:
                self._info = _cluster_info(self.ray, self._info.address, self._info.gpu_memory)
            except Exception:  # noqa: BLE001 - keep the last answer; the next call tries again
                log.exception("agd_viz cluster: cannot read the cluster's size")
            self._info_at = time.monotonic()
        return self._info

    def slots(self) -> int:
        """Jobs to keep in flight: one per CPU of the cluster (each asks for at least one). On an
        autoscaling cluster set $AGD_VIZ_MAX_WORKERS higher: Ray queues the rest and scales up."""
        return max(1, int(self.info().cpus))

    def device_kind(self, device: str = "auto") -> str:
        if device in ("cpu", "cuda", "mps"):
            return device
        return "cuda" if self.info().gpus > 0 else "cpu"

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if self.info().gpus > 0 else ("cpu",)

    def describe(self) -> str:
        return self.info().describe()

    def warm_up(self) -> list:
        """Start one task worker per node, with torch and the training path imported, without
        waiting for them (their refs are returned): Ray reuses an idle worker for the driver's
        next task, so the first job's first record skips seconds of process start and imports
        (benchmarks/ray_cluster.py)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = self.ray.remote(num_cpus=0, max_retries=0)(_node_warm_up)
        refs = []
        for node in self.ray.nodes():
            if node.get("Alive") and node["Resources"].get("CPU", 0) > 0:
                with contextlib.suppress(Exception):
                    refs.append(task.options(
                        scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)).remote())
        return refs

    def admit(self, spec: RunSpec) -> None:
        """SpecError for a spec this cluster can never run (Ray would keep it pending forever)."""
        info = self.info()
        if spec.device == "cuda" and info.gpus <= 0:
            raise SpecError(f"device 'cuda' was asked for but {info.describe()} has no GPU; use auto or cpu.")
        if spec.device == "mps":
            raise SpecError("device 'mps' is a Mac's GPU; a Ray cluster's nodes train on cpu or cuda.")
        need = resources(spec, info)["memory"]
        if info.node_memory and need > info.node_memory:
            raise SpecError(f"this run needs about {fmt.bytes_(need)} of memory, more than any node of the "
                            f"cluster offers ({fmt.bytes_(info.node_memory)}).")

    def start(self, run_ids: list[int], log_file: Path | None = None) -> "RayJob":
        """Submit the job of `run_ids` (queued runs of the store); OSError if it cannot be (the job
        manager then fails its runs with the reason, as for a worker that cannot start)."""
        try:
            rows = [self.store.get_run(r) for r in run_ids]
            if any(r is None for r in rows):
                raise OSError("a run of this job was deleted before it started")
            job = RayJob(self, list(run_ids), _spec_of(rows), log_file, watched=self._watched(rows[0]))
        except (SpecError, KeyError, ValueError) as exc:
            raise OSError(f"cannot start it on the cluster: {exc}") from None
        with self._lock:
            self.jobs = [j for j in self.jobs if j.returncode is None] + [job]
        job.begin()
        return job

    def _watched(self, row: dict) -> bool:
        """Whether someone may follow the run's every step live: a comparison's, not a sweep's."""
        group = self.store.get_group(row["group_id"]) if row.get("group_id") is not None else None
        return group is None or group.get("kind") != "sweep"

    def close(self) -> None:
        """Stop the writer (after what it holds is written) and the flags actor. The connection to
        the cluster stays: Ray closes it when this process exits."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            jobs = list(self.jobs)
        for job in jobs:
            if job.returncode is None:
                job.kill()
        for job in jobs:
            job.wait(timeout=5.0)
        self.writer.close()
        with contextlib.suppress(Exception):
            self.ray.kill(self.flags)


def _env_retries() -> int:
    text = os.environ.get(ENV_RETRIES, "").strip()
    if not text:
        return DEFAULT_RETRIES
    if not text.isdigit():
        raise ValueError(f"{ENV_RETRIES} must be a whole number >= 0, got {text!r}.")
    return int(text)


# ---------------------------------------------------------------------------------------------
# One job


@dataclass
class _Attempt:
    number: int
    run_ids: list[int]  # the runs it trains, in the order of its spec's optimisers
    node: str | None = None
    ended: set = field(default_factory=set)


class RayJob:
    """A job on the cluster, as the job manager sees a worker process (`subprocess.Popen`'s
    `pid`, `poll`, `send_signal`, `kill`, `wait`). A thread follows its task; the backend's
    writer records what it streams and, last, the exit code `poll` returns."""

    def __init__(self, backend: RayBackend, run_ids: list[int], spec: RunSpec, log_file: Path | None,
                 watched: bool = True):
        self.backend, self.run_ids, self.spec, self.log_file = backend, run_ids, spec, log_file
        self.watched = watched
        self.pid = backend.pid
        self.returncode: int | None = None
        self.resources = resources(spec, backend.info())
        self.attempt = _Attempt(1, list(run_ids))
        self.stop_requested = False
        self.killed = False
        self.stopped_ids: set = set()
        self.gen = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, name=f"agd-viz-ray-{run_ids[0]}", daemon=True)
        # the writer's bookkeeping, touched only by the writer thread
        self.grids: set = set()
        self.gone: set = set()
        self.thinned: dict = {}
        self.node: dict = {}

    # -- Popen's face --------------------------------------------------------------------------

    def begin(self) -> None:
        self.note(f"$ ray task {NODE_MODULE}.stream for runs {', '.join(map(str, self.run_ids))}, "
                  f"asking {self._asks()}")
        self._thread.start()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        self._done.wait(timeout)
        return self.returncode

    def send_signal(self, sig=None) -> None:
        """Stop every run of the job at its next sync (the local worker's SIGTERM)."""
        self.stop_requested = True
        self._stop(self.run_ids)

    terminate = send_signal

    def kill(self) -> None:
        """Stop the task now (the local worker's SIGKILL)."""
        self.stop_requested = self.killed = True
        gen = self.gen
        if gen is not None:
            with contextlib.suppress(Exception):
                self.backend.ray.cancel(gen, force=True)

    # -- following the task --------------------------------------------------------------------

    def _asks(self) -> str:
        r = self.resources
        gpu = f", {r['num_gpus']:g} GPU" if r["num_gpus"] else ""
        return f"{r['num_cpus']} CPU{gpu}, {fmt.bytes_(r['memory'])}"

    def note(self, text: str) -> None:
        """A line in the job's log (`<db>.logs/run-<id>.log`), read back with a failure."""
        if self.log_file is None:
            return
        try:
            with open(self.log_file, "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        except OSError:
            pass

    def _stop(self, run_ids) -> None:
        new = [r for r in run_ids if r not in self.stopped_ids]
        if new:
            self.stopped_ids.update(new)
            with contextlib.suppress(Exception):
                self.backend.flags.stop.remote(new)

    def _submit(self):
        a = self.attempt
        keep = [self.run_ids.index(r) for r in a.run_ids]
        spec = self.spec.replace(optimizers=tuple(self.spec.optimizers[i] for i in keep))
        r = self.resources
        self.gen = self.backend.task.options(
            num_returns="streaming", num_cpus=r["num_cpus"], num_gpus=r["num_gpus"], memory=r["memory"],
            name=f"agd_viz job {self.run_ids[0]}",
        ).remote(spec.to_dict(), a.run_ids, version(), self.backend.flags, self.backend.data_url,
                 max(1, int(r["num_cpus"])))

    def _forward_cancels(self) -> None:
        """The store's cancel flags (a page's Stop, another server's) to the task's flags."""
        store = self.backend.store
        for rid in self.attempt.run_ids:
            if rid in self.stopped_ids or rid in self.attempt.ended:
                continue
            try:
                if store.cancel_requested(rid):
                    self._stop([rid])
            except Exception:  # noqa: BLE001 - the store busy: the next poll asks again
                pass

    def _follow(self) -> None:
        code = 0
        try:
            while True:
                outcome, text = self._one_attempt()
                left = [r for r in self.attempt.run_ids if r not in self.attempt.ended]
                if outcome == "done" or not left:
                    code = 0 if not left else 1
                    break
                if outcome == "killed" or self.stop_requested:
                    code = -9 if outcome == "killed" else 0
                    break  # the job manager knows why it stopped the job and records it
                stopped = [r for r in left if r in self.stopped_ids]
                if outcome == "lost" and stopped:  # asked to stop: never trained again, metrics kept
                    self.backend.writer.put(("fail", self, stopped, None, CANCELLED))
                    left = [r for r in left if r not in stopped]
                    if not left:
                        break
                if outcome == "lost" and self.attempt.number <= self.backend.retries:
                    self.note(f"attempt {self.attempt.number} lost ({text}); retrying runs "
                              f"{', '.join(map(str, left))} from step 0")
                    self.backend.writer.put(("reset", self, left))
                    self.attempt = _Attempt(self.attempt.number + 1, left)
                    continue
                tries = f" (after {fmt.plural(self.attempt.number, 'attempt')})" if self.attempt.number > 1 else ""
                self.note(f"attempt {self.attempt.number} failed: {text}")
                self.backend.writer.put(("fail", self, left, f"{text}{tries}"))
                code = 1
                break
        except Exception as exc:  # noqa: BLE001 - whatever happens, the job must end
            log.exception("agd_viz cluster: following job %s failed", self.run_ids[0])
            self.backend.writer.put(("fail", self, [r for r in self.attempt.run_ids if r not in self.attempt.ended],
                                     f"the driver lost track of this run: {_one_line(exc)}"))
            code = 1
        with contextlib.suppress(Exception):
            self.backend.flags.forget.remote(self.run_ids)
        self.backend.writer.put(("done", self, code))

    def _one_attempt(self) -> tuple[str, str]:
        """Follow one attempt's stream to its end: ("done"|"killed"|"error"|"lost", reason)."""
        ray = self.backend.ray
        errors = ray.exceptions
        self._submit()
        if self.killed:  # killed while it was being (re)submitted
            self.kill()
        try:
            while True:
                ready, _ = ray.wait([self.gen], timeout=POLL_S)
                self._forward_cancels()
                if not ready:
                    continue
                try:
                    payload = ray.get(next(self.gen))
                except StopIteration:
                    return "done", ""
                self._take(payload)
        except StopIteration:
            return "done", ""
        except errors.TaskCancelledError:
            return "killed", "cancelled"
        except errors.RayTaskError as exc:  # the task's own code failed (not the node): not retried
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            return "error", _one_line(cause) if cause is not exc else _task_error_line(exc)
        except (errors.NodeDiedError, errors.WorkerCrashedError, errors.ObjectLostError, errors.OutOfMemoryError,
                errors.LocalRayletDiedError) as exc:
            return "lost", self._lost(exc)
        except errors.RayError as exc:
            return "error", _one_line(exc)

    def _lost(self, exc) -> str:
        """Why an attempt was lost, in one short line (Ray's own messages run to a paragraph)."""
        node = self.attempt.node or "?"
        node_id = str(self.node.get("node_id") or "")[:12]
        where = f"node {node}" + (f" ({node_id})" if node_id else "")
        errors = self.backend.ray.exceptions
        if isinstance(exc, errors.NodeDiedError):
            return f"the Ray {where} running it died or became unreachable (NodeDiedError)"
        if isinstance(exc, errors.OutOfMemoryError):
            return f"Ray's memory monitor killed it on {where}, which ran out of memory (OutOfMemoryError)"
        if isinstance(exc, errors.WorkerCrashedError):
            return f"its Ray worker process on {where} died (WorkerCrashedError)"
        return f"{_one_line(exc)[:200]} ({type(exc).__name__})"

    def _take(self, payload: dict) -> None:
        a = self.attempt
        if "hello" in payload:
            a.node = payload["hello"].get("node")
            self.node = dict(payload["hello"])
            self.note(f"attempt {a.number} on node {a.node} ({str(payload['hello'].get('node_id'))[:12]}), "
                      f"{payload['hello'].get('device')}, agd_viz {payload['hello'].get('version')} from "
                      f"{payload['hello'].get('code')}")
        for opt, *_ in payload.get("ends") or ():
            a.ended.add(a.run_ids[opt])
        self.backend.writer.put(("batch", self, a, payload))


def _task_error_line(exc) -> str:
    """The last line of a task's traceback: the exception and its message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Writing what the tasks stream


def _has(row: dict, key: str) -> bool:
    v = row.get(key)
    return v is not None and isinstance(v, float) and math.isfinite(v)


def thin(rows: list[dict], stride: int) -> list[dict]:
    """Every `stride`-th step of `rows`, and every row that must stay: evaluated steps (train and
    test loss and accuracy), steps 0 and 1, and the last row (the run's current progress)."""
    if stride <= 1 or len(rows) <= 1:
        return rows
    last = len(rows) - 1
    return [r for k, r in enumerate(rows)
            if k == last or r["step"] <= 1 or r["step"] % stride == 0
            or _has(r, "train_loss") or _has(r, "test_loss")]


def stride_for(lag: float, thin_after: float = THIN_AFTER_S) -> int:
    """1 while batches wait at most `thin_after` s to be written; past it, the power of two that
    grows with the wait (2 at up to twice it, 4 at up to four times, ...), at most MAX_STRIDE."""
    if lag <= thin_after:
        return 1
    return min(MAX_STRIDE, 2 ** math.ceil(math.log2(lag / thin_after)))


class _Writer(threading.Thread):
    """One thread writing every job's records, in the order they came (module docstring)."""

    def __init__(self, store: Store, thin_after: float | None = None):
        super().__init__(name="agd-viz-ray-writer", daemon=True)
        self.store = store
        self.q: queue.Queue = queue.Queue()
        self.thin_after = THIN_AFTER_S if thin_after is None else float(thin_after)
        self.waiting_rows = 0  # rows queued and not yet written
        self.lag = 0.0  # how long the batch being written waited for the writer
        self.written_rows = 0
        self.dropped_rows = 0
        self._lock = threading.Lock()

    def put(self, item: tuple) -> None:
        if item[0] == "batch":
            n = sum(len(rows) for _, rows in item[3].get("steps") or ())
            with self._lock:
                self.waiting_rows += n
            item = (*item, time.monotonic())
        self.q.put(item)

    def close(self) -> None:
        self.q.put(("quit",))
        self.join(timeout=30.0)

    def run(self) -> None:
        while True:
            item = self.q.get()
            if item[0] == "quit":
                return
            try:
                getattr(self, f"_{item[0]}")(*item[1:])
            except Exception:  # noqa: BLE001 - one bad write must not stop the others' records
                log.exception("agd_viz cluster: writing %s failed", item[0])
                if item[0] == "done":
                    item[1].returncode = item[2]
                    item[1]._done.set()

    def _put(self, job: RayJob, rid: int, write, *args, **kwargs) -> None:
        if rid in job.gone:
            return
        try:
            write(rid, *args, **kwargs)
        except KeyError:  # deleted while it trains: its task is told to stop
            job.gone.add(rid)
            job._stop([rid])

    def _batch(self, job: RayJob, attempt: _Attempt, payload: dict, queued_at: float) -> None:
        self.lag = time.monotonic() - queued_at
        try:
            self._write_batch(job, attempt, payload)
        finally:
            with self._lock:
                self.waiting_rows -= sum(len(rows) for _, rows in payload.get("steps") or ())

    def _write_batch(self, job: RayJob, attempt: _Attempt, payload: dict) -> None:
        store = self.store
        if "hello" in payload:
            for rid in attempt.run_ids:
                self._put(job, rid, store.start_run, payload["hello"].get("device"), job.pid)
        stride = 1 if job.watched else stride_for(self.lag, self.thin_after)
        for opt, rows in payload.get("steps") or ():
            rid = attempt.run_ids[opt]
            n = len(rows)
            kept = thin(rows, stride)
            if len(kept) < n:
                job.thinned[rid] = job.thinned.get(rid, 0) + n - len(kept)
                self.dropped_rows += n - len(kept)
            last = rows[-1]
            progress = {"step": last["step"], "steps": job.spec.steps}
            if last.get("t"):
                progress["steps_per_s"] = last["step"] / last["t"]
            self._put(job, rid, store.append_metrics, kept, progress=progress)
            self.written_rows += len(kept)
        for opt, grid in payload.get("grids") or ():
            self._put(job, attempt.run_ids[opt], store.put_frame, "boundary_grid", 0,
                      {**grid, "classes": _str_array(grid["classes"])})
        for opt, step, probs in payload.get("frames") or ():
            self._put(job, attempt.run_ids[opt], store.put_frame, "boundary", step, {"probs": probs})
        for opt, status, step, error, summary in payload.get("ends") or ():
            rid = attempt.run_ids[opt]
            summary = dict(summary or {})
            summary["attempts"] = attempt.number
            if attempt.node:
                summary["node"] = attempt.node
            if job.thinned.get(rid):
                summary["thinned_rows"] = job.thinned[rid]
            self._put(job, rid, store.finish_run, status, summary=summary, error=error)

    def _reset(self, job: RayJob, run_ids: list[int]) -> None:
        """A lost attempt's metrics and pictures out before the next attempt writes any."""
        for rid in run_ids:
            self._put(job, rid, self.store.clear_metrics)
            job.grids.discard(rid)
            job.thinned.pop(rid, None)

    def _fail(self, job: RayJob, run_ids: list[int], text: str | None, status: str = FAILED) -> None:
        """End runs whose task cannot (failed with `text`, or cancelled), their metrics kept."""
        for rid in run_ids:
            row = self.store.get_run(rid)
            if row is None or row["status"] not in ACTIVE_STATUSES:
                continue
            summary = {"attempts": job.attempt.number, **({"node": job.attempt.node} if job.attempt.node else {})}
            self._put(job, rid, self.store.finish_run, status, summary=summary, error=text)

    def _done(self, job: RayJob, code: int) -> None:
        job.returncode = code
        job._done.set()


def _str_array(values):
    import numpy as np

    return np.asarray(list(values), dtype=str)


# ---------------------------------------------------------------------------------------------
# Waiting for runs (the command line)


def wait_runs(manager, run_ids, stop: threading.Event | None = None, on_end=None, poll: float = 0.5) -> None:
    """Until every run of `run_ids` has ended; `stop` set: cancel them all and wait for that;
    `on_end(row)` as each one ends."""
    ids = [int(r) for r in run_ids]
    left = set(ids)
    stopping = False
    while left:
        if stop is not None and stop.is_set() and not stopping:
            stopping = True
            manager.stop(sorted(left), wait=0)
        progress = manager.progress(sorted(left))
        for rid in sorted(left):
            if (progress.get(rid) or {}).get("status") not in ACTIVE_STATUSES:
                left.discard(rid)
                if on_end is not None:
                    row = manager.store.get_run(rid)
                    if row is not None:
                        on_end(row)
        if left:
            time.sleep(poll)
