"""Background runs: worker subprocesses, a fair queue, a concurrency cap, cancel, crash isolation,
ownership, and liveness of every run on the store.

Why subprocesses (docs/architecture.md, "One run, from widget to chart"): training holds the GIL
for seconds at a time, so a thread running torch would freeze the Streamlit server for every
browser; a separate process also turns a crash, an out-of-memory kill or a cancel into the end of
one process, not of the app. `multiprocessing` is avoided because its spawn start method
re-imports the page script in the child. Each worker is

    python -m agd_viz.worker --run-id N --db PATH --parent-pid <app pid> --quiet

(`agd_viz.worker`, the same sink the command line's `train` writes through), and this module never
imports torch nor the worker: the app process stays light and fast to start.

Decisions
- One worker per comparison (a job): the runs of one `RunSpec` (a comparison, or one cell of a
  sweep) train in one process, side by side in lockstep on the same batches, so AGD and Adam are
  live on the projector at the same time even with one worker slot. Each run is still its own row
  with its own status: a cancel of one run flags it in the store and its worker ends that run at
  the next sync while the others go on (the process is signalled only when every run of the job
  is cancelled); a run that diverges ends alone; a crash or a kill of the process ends every run
  of the job still active `failed`, with the reason.
- The cap (`max_workers`, jobs at once): `$AGD_VIZ_MAX_WORKERS` if set; else on a machine with
  GPUs up to `$AGD_VIZ_JOBS_PER_GPU` (default 4) jobs per GPU, admitted to a GPU only while the
  memory estimates (`cost.estimate_memory_bytes`) of its jobs fit its budget (`place`); else
  max(1, cpu_count // 2), leaving cores for the server and the browser. GPUs are detected without
  importing torch here: only when the machine shows signs of one (/dev/nvidia*, /dev/kfd, macOS on
  arm64) is a short `python -c "import torch"` probe run, once per process, in the scheduler
  thread (never on a page's thread); it also reads each device's memory.
- With several GPUs each worker gets its GPU through CUDA_VISIBLE_DEVICES.
- Workers run at a lower CPU priority (`nice`, default +10) with OMP_NUM_THREADS set to their share
  of the cores but one (`worker_threads`), so a laptop demo keeps a responsive page while two runs
  train. A pre-started worker is lowered when it is handed a job: its imports, made while nothing
  trains, run at normal priority so that it is ready by the time a person presses Start.
- Pre-started workers (`prewarm`, the app keeps one; `$AGD_VIZ_PREWARM`): while nothing trains or
  waits, the manager starts `agd_viz.worker --from-stdin`, which imports torch and the training path
  and waits; the next job's run ids are handed to it on its stdin, so Start skips the seconds a new
  Python process needs before its first step. Spares are started only while idle, so their imports
  never compete with a training run for the cores; not with several GPUs (a worker's GPU is chosen
  when it starts).
- Stopping: `cancel()` sets the store's cancel flag and sends SIGTERM (the flag alone would do once
  the worker trains; the signal also stops one still importing torch); a worker alive
  `kill_after` s later is SIGKILLed. The run ends `cancelled`. Shutting down for exit (atexit)
  stops workers the same way without the flag, and their runs end `interrupted`.
- A crash is recorded by the reaper: a worker that exits while runs of its job are still active
  (killed by a signal, out of memory, died before its own error handling) leaves them `failed`
  with the signal or exit code and the last lines of its log, `<db>.logs/run-<id>.log` (the id of
  the job's first run).
- A fair queue: queued jobs start round-robin across sessions (the session served least recently
  goes next; within a session, in submission order), so one attendee's 200-cell sweep does not
  hold up everyone else's comparison. Before a job starts, its rows are read again: a run
  cancelled or deleted meanwhile (by another page, process or server) is dropped from it.
- Admission (`submit`, `submit_group`): a spec over this server's limits (steps, memory budget:
  `agd_viz.spec`; for a session, also the pages' ranges, `spec.page_limits`) is refused with a
  SpecError; a submission that would take the runs waiting or training here past
  `$AGD_VIZ_MAX_QUEUED`, or one session's past its share — `$AGD_VIZ_MAX_QUEUED_PER_SESSION`
  runs, `$AGD_VIZ_MAX_QUEUED_SECONDS_PER_SESSION` of estimated compute (`cost.run_seconds`),
  `$AGD_VIZ_MAX_QUEUED_MB_PER_SESSION` of metrics (`cost.metric_bytes`) — is refused whole with
  `QueueFull`, before anything is written; so is any submission while the store cannot record
  runs (`StoreUnavailable`: read-only, or its file deleted). `submit_group` (a sweep: many
  specs, one group) is all or nothing the same way. Work is counted while queued or running, so
  a session gets its share back as its runs end.
- Ownership: `session` (a browser session's owner id; None for this process's own code: the
  command line, a script, a test) is recorded with the group and its runs (store schema v3).
  `cancel`, `stop` and `delete_runs` on behalf of a session act only on runs it started, unless
  it holds the server's admin key (`$AGD_VIZ_ADMIN_KEY`); otherwise they refuse, with nothing
  done, with `NotYours`. Runs with no owner (the command line's, or stored before v3) are the
  operator's.
- Liveness, always: every LIVENESS_S the scheduler thread applies the recovery rule below to every
  unfinished run of the store, this server's or another process's, so a run whose worker, server
  or command-line process died is marked within seconds, with the reason; Stop and delete end
  such a run at once. It also ends this server's queued runs that another process flagged for
  cancelling, and watches the store: while it cannot record runs (`Store.problem`) no worker
  starts, the server log gets one line per incident, and a store file deleted under the server
  is saved from this server's connection (`<db>.saved-<time>.db`, named in the log).

Liveness and recovery rule (`recover()`, called by `__init__` and every LIVENESS_S). The `pid`
column says who answers for an unfinished run: for a `queued` run the server whose manager queued
it (or the command line that created it), for a `running` run its worker (or the command line
training it). A run is marked `interrupted` when that process is gone:
  - its pid is not a live process (zombies count as gone; on Linux a process that started after
    the run was created or started is a reused pid, also gone), or
  - it is `queued`, its owner pid is this very process, and no live manager here holds it, or
  - it has no pid at all and was created more than `ORPHAN_GRACE_S` ago (runs stored by an older
    version could have no pid for a moment).
Runs owned by another live server, or by a live worker, are left alone: a second manager over the
same file never interrupts another server's work. (Servers sharing a store must see each other's
processes: one machine, one pid namespace.) A run is ended only if it is still as it was read
(`Store.end_if_unchanged`), so an end its owner wrote meanwhile is never overwritten. A live
worker whose server died exits by itself (the worker's `--parent-pid` check) and records
`interrupted`. Metrics already written are never touched: each batch is one SQLite transaction in
WAL mode.

Thread safety: the app holds one manager per server process (`st.cache_resource`) shared by every
session, and a daemon scheduler thread polls it; one `threading.Lock` guards the queue and the
worker table. The scheduler thread is pure Python; it never touches torch or Streamlit.
"""

from __future__ import annotations

import atexit
import hmac
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from agd_viz import cost, fmt
from agd_viz import spec as spec_mod
from agd_viz.procs import pid_alive, signal_name
from agd_viz.store import (
    ACTIVE_STATUSES,
    CANCELLED,
    FAILED,
    FINISHED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    STORE_GONE,
    Store,
    default_db_path,
)

__all__ = ["JobManager", "NotYours", "QueueFull", "Refused", "StoreUnavailable", "default_max_workers",
           "detect_gpus", "log_path", "ENV_MAX_WORKERS"]

log = logging.getLogger(__name__)

ENV_MAX_WORKERS = "AGD_VIZ_MAX_WORKERS"
ENV_PREWARM = "AGD_VIZ_PREWARM"
ENV_JOBS_PER_GPU = "AGD_VIZ_JOBS_PER_GPU"
DEFAULT_JOBS_PER_GPU = 4
CPU = -1  # `place`'s answer for a job that runs on the CPU
POLL_S = 0.2  # scheduler period: a freed slot is refilled and a crash noticed within this
KILL_AFTER_S = 5.0  # a cancelled worker that has not exited by then is SIGKILLed
ORPHAN_GRACE_S = 30.0
LIVENESS_S = 2.0  # every run of the store whose owner died is marked within about this
SPEED_TTL_S = 10.0  # the calibrated speed is re-read from the store at most this often
STOP_WAIT_S = 3.0  # how long `stop` waits for stopped workers to record it
DELETE_WAIT_S = 8.0  # how long `delete_runs` waits for stopped workers before deleting
LOG_TAIL_LINES = 12
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the directory holding agd_viz/
WORKER_MODULE = "agd_viz.worker"  # started as a process, never imported here

# Managers alive in this process, so that recovery can tell "queued by a live manager here" from
# "queued by a manager here that was shut down" (both record this process's pid).
_LIVE: "weakref.WeakSet[JobManager]" = weakref.WeakSet()
_GPU_COUNT: int | None = None
_GPU_MEMORY: tuple[int, ...] = ()  # bytes per device, when the probe could read them
_GPU_LOCK = threading.Lock()


class Refused(RuntimeError):
    """A request the server declines; the message is one polite sentence for the user."""


class QueueFull(Refused):
    """A submission refused because the queue (this server's, or one session's share) is full."""


class StoreUnavailable(Refused):
    """A submission refused because the run store cannot record runs now (`Store.problem`)."""


class NotYours(Refused):
    """Stop or delete refused: some of the runs were started by someone else."""


# ---------------------------------------------------------------------------------------------
# capacity


def detect_gpus(python: str = sys.executable) -> int:
    """How many accelerators a worker would use: CUDA devices, or 1 for Apple MPS, else 0.

    Uses torch directly if this process already imported it; otherwise probes in a subprocess only
    where the machine shows a sign of a GPU, so a CPU-only laptop never pays for the probe and the
    app process never imports torch for it. Cached for the life of the process.
    """
    global _GPU_COUNT, _GPU_MEMORY
    with _GPU_LOCK:
        if _GPU_COUNT is not None:
            return _GPU_COUNT
        torch = sys.modules.get("torch")
        if torch is not None:
            _GPU_COUNT, _GPU_MEMORY = _torch_gpus(torch)
            return _GPU_COUNT
        if not _gpu_hint():
            _GPU_COUNT = 0
            return 0
        probe = (
            "import torch\n"
            "n = torch.cuda.device_count() if torch.cuda.is_available() else 0\n"
            "mps = getattr(torch.backends, 'mps', None)\n"
            "print(n or (1 if mps is not None and mps.is_available() else 0),\n"
            "      *[torch.cuda.get_device_properties(k).total_memory for k in range(n)])\n"
        )
        try:
            out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
            words = [int(w) for w in out.stdout.strip().splitlines()[-1].split()] if out.returncode == 0 else [0]
            _GPU_COUNT, _GPU_MEMORY = words[0], tuple(words[1:])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            _GPU_COUNT = 0
        return _GPU_COUNT


def _torch_gpus(torch) -> tuple[int, tuple[int, ...]]:
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return n, tuple(torch.cuda.get_device_properties(k).total_memory for k in range(n))
    mps = getattr(torch.backends, "mps", None)
    return (1 if mps is not None and mps.is_available() else 0), ()


def _gpu_kind() -> str:
    """What a GPU found by `detect_gpus` is: Apple's MPS on macOS, else CUDA."""
    return "mps" if sys.platform == "darwin" else "cuda"


def _gpu_hint() -> bool:
    if sys.platform == "darwin":
        import platform

        return platform.machine() == "arm64"
    dev = Path("/dev")
    try:
        return any(p.name[len("nvidia"):].isdigit() for p in dev.glob("nvidia[0-9]*")) or (dev / "kfd").exists()
    except OSError:
        return False


def _env_max_workers() -> int | None:
    return spec_mod.env_int(ENV_MAX_WORKERS, None)


def worker_threads(max_workers: int, cpus: int | None = None) -> int:
    """Intra-op threads per worker: the cores but one (the server's and the browser's), shared
    among `max_workers`, at least 1. Not all of them: an OpenMP thread that another process has
    pushed off its core stalls every parallel region until it runs again; on a busy 2-core laptop
    two threads made the first training step of a small network 8-40x slower than one did
    (0.7-3.3 s against 0.08 s; benchmarks/first_point.py, docs/performance.md)."""
    cpus = (os.cpu_count() or 1) if cpus is None else cpus
    return max(1, (cpus - 1) // max(1, int(max_workers)))


def default_prewarm(default: int = 0) -> int:
    """How many pre-started workers a manager keeps while idle: `$AGD_VIZ_PREWARM`, else `default`."""
    env = os.environ.get(ENV_PREWARM, "").strip()
    if not env:
        return default
    if not env.isdigit():
        raise ValueError(f"{ENV_PREWARM} must be a whole number >= 0, got {env!r}.")
    return int(env)


def jobs_per_gpu() -> int:
    """How many jobs may share one GPU (while their memory fits): `$AGD_VIZ_JOBS_PER_GPU`, default 4."""
    return spec_mod.env_int(ENV_JOBS_PER_GPU, DEFAULT_JOBS_PER_GPU)


def default_max_workers(python: str = sys.executable) -> int:
    """Jobs at once: `$AGD_VIZ_MAX_WORKERS`, else `jobs_per_gpu()` per GPU, else
    max(1, cpu_count // 2)."""
    n = _env_max_workers()
    if n is not None:
        return n
    gpus = detect_gpus(python)
    if gpus:
        return gpus * jobs_per_gpu()
    return max(1, (os.cpu_count() or 1) // 2)


def place(memory: int, running: list[tuple[int, int]], *, gpus: int, budget: int, per_gpu: int,
          max_jobs: int, on_gpu: bool = True) -> int | None:
    """Where a job of estimated `memory` bytes may start now: a GPU index, `CPU` (a job not on a
    GPU), or None when there is no room yet. `running`: (where, memory) of the jobs running here.

    At most `max_jobs` jobs at once. A GPU takes a job while it holds fewer than `per_gpu` jobs
    and their memory with this one fits its `budget`; a job alone on a GPU always fits (it was
    admitted against the same budget). Small comparisons thus share a GPU, large ones get it to
    themselves. The emptiest fitting GPU is chosen, so work spreads over several.
    """
    if len(running) >= max_jobs:
        return None
    if not on_gpu or gpus <= 0:
        return CPU
    best = None
    for g in range(gpus):
        here = [m for where, m in running if where == g]
        fits = not here or (len(here) < per_gpu and sum(here) + memory <= budget)
        if fits and (best is None or sum(here) < best[1]):
            best = (g, sum(here))
    return best[0] if best is not None else None


# ---------------------------------------------------------------------------------------------
# processes


def log_path(db_path: str | os.PathLike, run_id: int) -> Path:
    """Where a worker's stdout and stderr go: `<db>.logs/run-<id>.log`, next to the store."""
    db = Path(db_path)
    return db.with_name(db.name + ".logs") / f"run-{int(run_id)}.log"


def _tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 8192) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    # tqdm-style carriage returns would make one "line" of a whole progress bar
    out = [ln.rstrip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    return "\n".join(out[-lines:])


def _last_words(tail: str) -> str:
    """The line of a worker's log that says why it ended (its last line that is not the command it
    was started with), without paths: it reaches the run's error, on every attendee's page."""
    for line in reversed(tail.splitlines()):
        line = line.strip()
        if line and not line.startswith("$ ") and not line.startswith("Traceback"):
            return fmt.hide_paths(line)[:300]
    return ""


def _close_quietly(f) -> None:
    try:
        if f is not None:
            f.close()
    except OSError:
        pass


def with_quiet(fn, *args):
    """fn(*args), ignoring a failure: cleaning up after a failed write must not hide its error."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        return None


def _kill_quietly(proc: subprocess.Popen) -> None:
    try:
        proc.kill()
        proc.wait(timeout=2.0)
    except (OSError, subprocess.TimeoutExpired):
        pass


@dataclass
class _Job:
    """One worker's work: the runs of one `RunSpec` (a comparison, or a sweep cell), trained side by
    side in one process. Queued: `run_ids` loses a run cancelled before the start. Running: the
    process, where it runs, and why it is being stopped."""

    run_ids: list[int]
    session: str | None = None
    memory: int = 0  # estimated bytes on its device (cost.estimate_memory_bytes)
    seconds: float = 0.0  # estimated wall time (cost.run_seconds), for the session's share
    nbytes: int = 0  # estimated metric bytes (cost.metric_bytes), for the session's share
    seq: int = 0  # arrival order
    on_gpu: bool = False  # its device may be a GPU ("auto", "cuda", "mps"): placed on one if any
    proc: subprocess.Popen | None = None
    where: int = CPU  # the GPU it was placed on, or CPU
    log: Path | None = None
    started: float | None = None
    stop_reason: str | None = None  # None, "cancel" or "shutdown"
    stop_at: float | None = None  # when SIGTERM was sent
    crash: str | None = None  # why its worker ended early, worked out (and logged) once
    killed: bool = False  # SIGKILL sent by us

    @property
    def id(self) -> int:
        return self.run_ids[0]


@dataclass
class _Spare:
    """A worker started ahead of need (`agd_viz.worker --from-stdin`): it has imported torch and
    the training path and waits for a job's run ids on its stdin."""

    proc: subprocess.Popen
    log: Path


# ---------------------------------------------------------------------------------------------


class JobManager:
    """Runs `RunSpec`s in background worker processes, one per spec, at most `max_workers` at a time.

    `JobManager(db_path=None, max_workers=None, python=sys.executable)`: `db_path` defaults to
    the store's default (`$AGD_VIZ_DB` or ./agd_viz_runs.db); `max_workers` to
    `default_max_workers()` (resolved by the scheduler thread or on first use, never in the
    constructor, so creating a manager on a page's thread never waits for a GPU probe);
    `python` is the interpreter that runs workers. Keyword-only knobs exist for tests: the
    scheduler period, the cancel-to-SIGKILL delay, the worker's nice increment, extra environment
    for workers, and `start=False` for a manager driven only by explicit `poll()` calls.
    """

    def __init__(
        self,
        db_path: str | os.PathLike | None = None,
        max_workers: int | None = None,
        python: str = sys.executable,
        *,
        poll_interval: float = POLL_S,
        kill_after: float = KILL_AFTER_S,
        nice: int = 10,
        env: dict | None = None,
        start: bool = True,
        max_queued: int | None = None,
        max_queued_per_session: int | None = None,
        prewarm: int | None = None,
        max_queued_seconds_per_session: float | None = None,
        max_queued_bytes_per_session: int | None = None,
        liveness_interval: float = LIVENESS_S,
        backend=None,
    ):
        if max_workers is not None and int(max_workers) < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers!r}.")
        self.db_path = Path(db_path if db_path is not None else default_db_path()).resolve()
        self.store = Store(self.db_path)
        self.python = python
        self.poll_interval = float(poll_interval)
        self.kill_after = float(kill_after)
        self.nice = int(nice)
        self.extra_env = dict(env or {})
        # A bad $AGD_VIZ_MAX_WORKERS fails here, loudly, not later in the scheduler thread.
        self._max_workers = int(max_workers) if max_workers is not None else _env_max_workers()
        # Bad $AGD_VIZ_MAX_QUEUED / _PER_SESSION values fail here too.
        self.max_queued = int(max_queued) if max_queued is not None else spec_mod.max_queued()
        self.max_queued_per_session = (int(max_queued_per_session) if max_queued_per_session is not None
                                       else spec_mod.max_queued_per_session())
        self.max_queued_seconds_per_session = (
            float(max_queued_seconds_per_session) if max_queued_seconds_per_session is not None
            else spec_mod.max_queued_seconds_per_session())
        self.max_queued_bytes_per_session = (
            int(max_queued_bytes_per_session) if max_queued_bytes_per_session is not None
            else spec_mod.max_queued_bytes_per_session())
        spec_mod.page_limits()  # a bad AGD_VIZ_PAGE_MAX_* fails here too
        self.liveness_interval = float(liveness_interval)
        self._session_of: dict[int, str] = {}  # run id -> the browser session that submitted it
        self._served: dict[str | None, int] = {}  # session -> when it last had a job started (_tick)
        self._tick = 0
        self._seq = 0
        self._next_liveness = 0.0
        self._incidents: dict[str, str] = {}  # what is wrong now, by kind: logged once each
        self._saved_copy: Path | None = None
        self._speed: tuple[float, cost.Speed] | None = None  # (when, calibrated speed)
        self._lock = threading.Lock()
        self._queue: list[_Job] = []  # jobs waiting, in arrival order (they start round-robin)
        self._jobs: dict[int, _Job] = {}  # job id (its first run's) -> running job
        self._closed = False
        # Pre-started workers: a run handed to one skips process start and imports (seconds of
        # the time from Start to the first point on a chart; benchmarks/first_point.py).
        self.prewarm = default_prewarm() if prewarm is None else int(prewarm)
        if self.prewarm < 0:
            raise ValueError(f"prewarm must be >= 0, got {prewarm!r}.")
        self._spares: list[_Spare] = []
        self._spare_count = 0
        self._spare_failures = 0
        self._spare_retry_at = 0.0
        # Where jobs run: None, worker processes here; else a cluster's (agd_viz.cluster.RayBackend),
        # which starts a job as `start(run_ids, log) -> a Popen-like handle`. No spares there.
        self.backend = backend
        if backend is not None:
            self.prewarm = 0
        self._wake = threading.Event()
        self.pid = os.getpid()
        _LIVE.add(self)
        # A store that cannot be written now is said on the pages; its runs are judged once it can.
        self.recovered = self.recover() if self.store.problem() is None else []
        atexit.register(self._atexit)
        self._thread = None
        if start:
            self._thread = threading.Thread(target=self._loop, name="agd-viz-jobs", daemon=True)
            self._thread.start()

    # -- capacity ------------------------------------------------------------------------------

    @property
    def max_workers(self) -> int:
        """The cap on concurrent workers (resolved on first use; see module docstring)."""
        if self._max_workers is None and self.backend is not None:
            return self.backend.slots()  # the cluster's size now: nodes join and leave
        if self._max_workers is None:
            self._max_workers = default_max_workers(self.python)
        return self._max_workers

    # -- submitting ----------------------------------------------------------------------------

    def submit(self, spec, name: str | None = None, group_kind: str = "compare",
               group_id: int | None = None, session: str | None = None) -> tuple[int, list[int]]:
        """Queue one job for `spec` (a `RunSpec`): one run per optimiser, trained side by side by
        one worker; returns (group_id, run_ids).

        Each run's stored spec is `spec.with_optimizer(o).to_dict()`, so a run is self-contained:
        an export or a rerun needs nothing but that row. The worker starts at once if there is
        room, else when its turn comes (round-robin across sessions). `group_id` adds the runs to
        an existing group. `session` is who asks (a browser session's owner id; None: this
        process's own code): recorded as the owner of the group and runs, and charged for its
        share of the queue.

        Refused, with nothing written: a spec over this server's limits (`spec.admit`: steps,
        memory; a session's also the pages' ranges) -> SpecError; a full queue or share ->
        QueueFull; a store that cannot record runs -> StoreUnavailable.
        """
        return self.submit_group([spec], kind=group_kind, name=name, session=session,
                                 group_id=group_id)

    def submit_group(self, specs, kind: str = "sweep", name: str | None = None,
                     session: str | None = None, group_spec=None,
                     group_id: int | None = None) -> tuple[int, list[int]]:
        """Queue every spec of `specs` (a sweep's cells, one job each) as one new group of `kind`
        (or into the existing `group_id`), all or nothing; returns (group_id, run ids in
        submission order). The group stores `group_spec` (a sweep's `SweepConfig.to_dict()`),
        else the first spec. Owner, share and refusals as for `submit`.

        Every spec is checked against this server's limits and the queue's room for all of their
        runs is checked under the lock before anything is written: a refused spec (SpecError), a
        queue without room for all of them (QueueFull) or a store that cannot record them
        (StoreUnavailable) leaves the store as it was.
        """
        specs = list(specs)
        if not specs:
            raise ValueError("submit_group needs at least one spec.")
        costs = self._costs(specs, session)
        group_spec = group_spec if group_spec is not None else specs[0].to_dict()
        with self._lock:
            self._check_store()
            self._check_room(sum(len(s.optimizers) for s in specs), session,
                             sum(c[0] for c in costs), sum(c[1] for c in costs))
            try:
                if group_id is not None:
                    run_ids = self._queue_runs(specs, costs, group_id, name, session)
                else:
                    group_id = self.store.create_group(kind, name, group_spec, owner=session)
                    run_ids = self._queue_group_runs(specs, costs, group_id, name, session)
            except sqlite3.Error as exc:  # the file turned read-only or vanished just now
                raise StoreUnavailable(self.store.problem() or "The run store could not record the runs "
                                       f"({fmt.hide_paths(exc)}).") from None
            self._schedule()
        return group_id, run_ids

    def _costs(self, specs, session) -> list[tuple[float, int]]:
        """Admit `specs` (SpecError for the first that may not run here) and estimate each one's
        (seconds, metric bytes)."""
        self._admit(specs, session)
        speed = self.speed()
        return [(cost.run_seconds(s, speed, startup=True), cost.metric_bytes(s)) for s in specs]

    def check_submission(self, specs, session: str | None = None) -> str | None:
        """Why `specs` would be refused now (the sentence `submit_group` would raise), or None;
        writes nothing. A page shows it before Start is pressed."""
        try:
            specs = list(specs)
            costs = self._costs(specs, session)
            with self._lock:
                self._check_store()
                self._check_room(sum(len(s.optimizers) for s in specs), session,
                                 sum(c[0] for c in costs), sum(c[1] for c in costs))
        except (ValueError, Refused) as exc:  # SpecError is a ValueError
            return str(exc)
        return None

    def _admit(self, specs, session=None) -> None:
        """SpecError for the first spec that is invalid or over this server's limits (a session's:
        also over the pages' ranges, the same on the Live and Sweep pages)."""
        if self._closed:
            raise RuntimeError("this JobManager was shut down; create a new one.")
        ranges = spec_mod.page_limits() if session is not None else None
        for spec in specs:
            spec.validate()
            spec_mod.admit(spec, device=self.device_kind(spec.device), ranges=ranges)
            if self.backend is not None:
                self.backend.admit(spec)

    def _check_store(self) -> None:
        problem = self.store.problem()
        if problem is not None:
            raise StoreUnavailable(problem)

    def _queue_group_runs(self, specs, costs, group_id: int, name, session) -> list[int]:
        """`_queue_runs` into a group made for them: if writing fails half-way the group goes too.
        Caller holds the lock."""
        try:
            return self._queue_runs(specs, costs, group_id, name, session)
        except BaseException:
            with_quiet(self.store.delete_group, group_id)
            raise

    def _queue_runs(self, specs, costs, group_id: int, name, session) -> list[int]:
        """Write one queued run per optimiser of each spec, then queue one job per spec; if a write
        fails the runs written so far are deleted and none is queued. Caller holds the lock."""
        jobs: list[_Job] = []
        owner = str(session) if session is not None else None
        try:
            for spec, (seconds, nbytes) in zip(specs, costs):
                self._seq += 1
                job = _Job([], owner, cost.estimate_memory_bytes(spec), on_gpu=spec.device != "cpu",
                           seconds=seconds, nbytes=nbytes, seq=self._seq)
                jobs.append(job)
                for o, label in zip(spec.optimizers, spec.labels):
                    # Owner pid = this server from the first moment: recovery in another live
                    # server must leave it alone.
                    rid = self.store.create_run(spec.with_optimizer(o).to_dict(), o, group_id=group_id,
                                                name=name, label=label, owner=owner, pid=self.pid)
                    job.run_ids.append(rid)
                self.store.set_job(job.run_ids)
        except BaseException:
            for rid in (r for job in jobs for r in job.run_ids):
                with_quiet(self.store.delete_run, rid)
            raise
        self._queue += jobs
        run_ids = [r for job in jobs for r in job.run_ids]
        if owner is not None:
            self._session_of.update((rid, owner) for rid in run_ids)
        return run_ids

    def device_kind(self, device: str = "auto") -> str:
        """"cpu", "cuda" or "mps": what a worker will train `device` on, for the memory budget.
        "auto" is a GPU only when the scheduler thread has already found one (never probed here,
        on a page's thread)."""
        if self.backend is not None:
            return self.backend.device_kind(device)
        if device in ("cpu", "cuda", "mps"):
            return device
        return _gpu_kind() if (_GPU_COUNT or 0) > 0 else "cpu"

    def devices(self) -> tuple[str, ...] | None:
        """The devices a worker can train on here: ("cpu",), plus "cuda" (or "mps" on Apple
        silicon) where the scheduler thread found a GPU; None while it has not looked yet (never
        probed here, on a page's thread)."""
        if self.backend is not None:
            return self.backend.devices()
        if _GPU_COUNT is None:
            return None
        return ("cpu", _gpu_kind()) if _GPU_COUNT > 0 else ("cpu",)

    def room(self, session: str | None = None) -> dict:
        """How much more may be submitted now: {"active", "free", "session_active",
        "session_free", "max_queued", "max_queued_per_session", "session_seconds",
        "max_queued_seconds_per_session", "session_bytes", "max_queued_bytes_per_session"}
        (active = runs queued + running here; a session's seconds and bytes: the estimates of its
        jobs queued or running)."""
        with self._lock:
            active = self._active_ids()
            mine = sum(1 for r in active if session is not None and self._session_of.get(r) == str(session))
            seconds, nbytes = self._session_work(session)
        return {"active": len(active), "free": max(0, self.max_queued - len(active)),
                "session_active": mine, "session_free": max(0, self.max_queued_per_session - mine),
                "max_queued": self.max_queued, "max_queued_per_session": self.max_queued_per_session,
                "session_seconds": seconds, "max_queued_seconds_per_session": self.max_queued_seconds_per_session,
                "session_bytes": nbytes, "max_queued_bytes_per_session": self.max_queued_bytes_per_session}

    def check_room(self, n_runs: int, session: str | None = None, seconds: float = 0.0, nbytes: int = 0) -> None:
        """Raise QueueFull unless `n_runs` more runs (of `seconds` and `nbytes` estimated work)
        fit now."""
        with self._lock:
            self._check_room(int(n_runs), session, seconds, nbytes)

    def _active_ids(self) -> list[int]:
        """Run ids queued or running here; forgets the sessions of runs that left. Caller holds the lock."""
        active = [r for job in (*self._jobs.values(), *self._queue) for r in job.run_ids]
        if len(self._session_of) > len(active):
            keep = set(active)
            self._session_of = {r: s for r, s in self._session_of.items() if r in keep}
        return active

    def _session_work(self, session: str | None) -> tuple[float, int]:
        """(estimated seconds, metric bytes) of `session`'s jobs queued or running. Caller holds
        the lock."""
        if session is None:
            return 0.0, 0
        jobs = [j for j in (*self._jobs.values(), *self._queue) if j.session == str(session) and j.run_ids]
        return sum(j.seconds for j in jobs), sum(j.nbytes for j in jobs)

    def _check_room(self, n_runs: int, session: str | None, seconds: float = 0.0, nbytes: int = 0) -> None:
        active = self._active_ids()
        if len(active) + n_runs > self.max_queued:
            free = max(0, self.max_queued - len(active))
            raise QueueFull(
                f"The queue is full: {len(active)} runs are waiting or training on this server "
                f"(at most {self.max_queued}), and this would add {n_runs}"
                + (f" where only {free} fit" if free else "")
                + ". Please try again when some have finished.")
        if session is None:
            return
        mine = sum(1 for r in active if self._session_of.get(r) == str(session))
        if mine + n_runs > self.max_queued_per_session:
            raise QueueFull(
                f"You already have {mine} run{'s' if mine != 1 else ''} waiting or training, and this "
                f"would add {n_runs}; each session may have at most {self.max_queued_per_session} at once "
                "on this shared server. Stop some, or wait for them to finish.")
        have_s, have_b = self._session_work(session)
        if have_s + seconds > self.max_queued_seconds_per_session:
            raise QueueFull(
                f"This would take about {fmt.estimate(seconds)} of compute"
                + (f" on top of the {fmt.estimate(have_s)} you already have waiting or training" if have_s else "")
                + f"; each session may have at most {fmt.estimate(self.max_queued_seconds_per_session)} "
                "on this shared server. Use fewer steps, a smaller network or a smaller grid, or wait for "
                "your runs to finish.")
        if have_b + nbytes > self.max_queued_bytes_per_session:
            raise QueueFull(
                f"This would record about {fmt.bytes_(nbytes)} of metrics"
                + (f" on top of the {fmt.bytes_(have_b)} of your runs waiting or training" if have_b else "")
                + f"; each session may have at most {fmt.bytes_(self.max_queued_bytes_per_session)} on this "
                "shared server. Use fewer steps or runs, or wait for your runs to finish.")

    # -- inspecting ----------------------------------------------------------------------------

    def queue_positions(self) -> dict[int, int]:
        """{run_id: 1-based place of its job in the order the queue will start them (round-robin
        across sessions)} for runs waiting (the runs of one comparison share a place: they start
        together); no database access."""
        with self._lock:
            return {rid: k + 1 for k, job in enumerate(self._order()) for rid in job.run_ids}

    def _order(self) -> list[_Job]:
        """The queued jobs in the order they will start if nothing else arrives: each time, the
        next job of the session served least recently (one never served first; ties: the earlier
        arrival). Caller holds the lock."""
        lanes: dict[str | None, list[_Job]] = {}
        for job in sorted(self._queue, key=lambda j: j.seq):
            lanes.setdefault(job.session, []).append(job)
        served, tick, out = dict(self._served), self._tick, []
        heads = {k: 0 for k in lanes}
        while len(out) < len(self._queue):
            k = min((k for k in lanes if heads[k] < len(lanes[k])),
                    key=lambda k: (served.get(k, -1), lanes[k][heads[k]].seq))
            out.append(lanes[k][heads[k]])
            heads[k] += 1
            tick += 1
            served[k] = tick
        return out

    def _next(self) -> _Job:
        """The queued job to start next (the first of `_order`). Caller holds the lock."""
        heads: dict[str | None, _Job] = {}
        for job in self._queue:
            if job.session not in heads or job.seq < heads[job.session].seq:
                heads[job.session] = job
        return min(heads.values(), key=lambda j: (self._served.get(j.session, -1), j.seq))

    def queue_position(self, run_id: int) -> int | None:
        """1 = next to start; None if the run is not waiting here (running, done, or unknown)."""
        return self.queue_positions().get(int(run_id))

    def active_runs(self) -> list[int]:
        """Run ids this manager is running (in start order) then queuing (in queue order)."""
        with self._lock:
            return [r for job in (*self._jobs.values(), *self._queue) for r in job.run_ids]

    def _running_job(self, run_id: int) -> _Job | None:
        return next((job for job in self._jobs.values() if run_id in job.run_ids), None)

    def worker_pid(self, run_id: int) -> int | None:
        """The pid of the worker running `run_id` here, or None."""
        with self._lock:
            job = self._running_job(int(run_id))
            return job.proc.pid if job else None

    def progress(self, run_ids) -> dict[int, dict]:
        """{run_id: {status, step, steps, last_loss, steps_per_s, eta_s, updated, queue_position}}:
        one SQL query plus the in-memory queue, cheap enough for a fragment that ticks each second."""
        ids = [int(r) for r in run_ids]
        out = self.store.progress(ids)
        positions = self.queue_positions()
        for rid, p in out.items():
            p["queue_position"] = positions.get(rid)
        return out

    def where(self) -> str:
        """Where jobs run, in words: "on this machine", or "on a Ray cluster at … (2 nodes, …)"."""
        return f"on {self.backend.describe()}" if self.backend is not None else "on this machine"

    def speed(self) -> cost.Speed:
        """How fast runs go here, for time estimates: `cost.calibrate` over the store's recent
        finished runs (re-read at most every SPEED_TTL_S: pages ask on every rerun)."""
        now = time.monotonic()
        cached = self._speed
        if cached is None or now - cached[0] > SPEED_TTL_S:
            cached = self._speed = (now, cost.calibrate(self.store.list_runs(status=FINISHED, limit=200)))
        return cached[1]

    # -- cancelling ----------------------------------------------------------------------------

    def is_admin(self, admin_key: str | None) -> bool:
        """Whether `admin_key` is this server's operator key ($AGD_VIZ_ADMIN_KEY; none: no one is)."""
        key = spec_mod.admin_key()
        return bool(key and admin_key) and hmac.compare_digest(str(admin_key).encode(), key.encode())

    def may_control(self, owner: str | None, session: str | None, admin_key: str | None = None) -> bool:
        """Whether `session` may stop or delete work of `owner` (module docstring, Ownership)."""
        return session is None or (owner is not None and owner == str(session)) or self.is_admin(admin_key)

    def _check_owner(self, rows, session, admin_key, verb: str) -> None:
        """NotYours unless `session` may `verb` every run of `rows`."""
        foreign = [r["id"] for r in rows if not self.may_control(r.get("owner"), session, admin_key)]
        if not foreign:
            return
        ids = ", ".join(f"#{i}" for i in foreign[:8]) + (" …" if len(foreign) > 8 else "")
        one = len(foreign) == 1
        raise NotYours(
            f"Run{'' if one else 's'} {ids} {'was' if one else 'were'} started by someone else (another "
            f"browser session, or the command line), so only they or the server's operator can {verb} "
            f"{'it' if one else 'them'}; nothing was {'stopped' if verb == 'stop' else 'deleted'}.")

    def cancel(self, run_id: int, session: str | None = None, admin_key: str | None = None) -> bool:
        """Stop a run: queued -> `cancelled` at once; running -> ask it to stop (store flag and
        SIGTERM), it ends `cancelled` within a sync (~0.2 s) keeping its metrics; a worker still
        alive `kill_after` seconds later is SIGKILLed and its run marked `cancelled` here.

        A run this manager does not hold (another server's, a command line's) gets the store
        flag, which its worker or its server honours within a second or two; if the process
        answering for it is gone, the run is ended here at once. On behalf of a `session`, only
        its own runs (or any, with the admin key): NotYours otherwise. Returns False if the run
        is unknown or already over.
        """
        rid = int(run_id)
        if session is not None:
            row = self.store.get_run(rid)
            if row is None:
                return False
            self._check_owner([row], session, admin_key, "stop")
        with self._lock:
            queued = next((job for job in self._queue if rid in job.run_ids), None)
            if queued is not None:
                queued.run_ids.remove(rid)
                if not queued.run_ids:
                    self._queue.remove(queued)
                self.store.finish_run(rid, CANCELLED, error="cancelled before it started")
                return True
            job = self._running_job(rid)
            if job is not None and job.proc.poll() is None:
                row = self.store.get_run(rid)
                if row is None or row["status"] in ACTIVE_STATUSES:  # a deleted run: stop it too
                    self.store.request_cancel(rid)
                    # The worker ends a flagged run at its next sync and trains the others on; the
                    # process is signalled only when none of its runs is left to train.
                    if all(r is None or r["status"] not in ACTIVE_STATUSES or r["cancel_requested"]
                           for r in map(self.store.get_run, job.run_ids)):
                        self._terminate(job, "cancel")
                    return row is not None
            elif job is not None:
                self._reap()  # it just exited: record how, then answer from the store
        row = self.store.get_run(rid)
        if row is None or row["status"] not in ACTIVE_STATUSES:
            return False
        if self._owner_gone(row, self._held_here()):
            text = ("cancelled before it started" if row["status"] == QUEUED
                    else "stopped; the process training it was already gone")
            if self.store.end_if_unchanged(rid, row["status"], row["pid"], CANCELLED, text):
                return True
        return self.store.request_cancel(rid)

    def stop(self, run_ids, wait: float = STOP_WAIT_S, session: str | None = None,
             admin_key: str | None = None) -> None:
        """Cancel every run of `run_ids` still queued or running (a page's Stop button), and wait
        up to `wait` seconds for their workers to record it, so the page drawn next shows them
        stopped. On behalf of a `session`: all of them must be its own (or it holds the admin
        key), else NotYours and none is stopped."""
        ids = [int(r) for r in run_ids]
        if session is not None:
            rows = [r for r in (self.store.get_run(i) for i in ids) if r is not None]
            self._check_owner(rows, session, admin_key, "stop")
        for rid in ids:
            self.cancel(rid)
        self._wait_over(ids, wait)

    def delete_runs(self, run_ids, wait: float = DELETE_WAIT_S, session: str | None = None,
                    admin_key: str | None = None) -> tuple[list[int], list[int]]:
        """Delete runs with their metrics, frames and worker logs: those still queued or running
        are cancelled first and deleted once over (waiting up to `wait` seconds); a group left
        without runs goes too. On behalf of a `session`: all of them must be its own (or it holds
        the admin key), else NotYours and nothing is deleted. Returns (deleted ids, ids still
        active and so not deleted)."""
        rows = [r for r in (self.store.get_run(i) for i in run_ids) if r is not None]
        if session is not None:
            self._check_owner(rows, session, admin_key, "delete")
        active = [r["id"] for r in rows if r["status"] in ACTIVE_STATUSES]
        for rid in active:
            self.cancel(rid)
        active = self._wait_over(active, wait)
        deleted, groups = [], set()
        for r in rows:
            if r["id"] in active:
                continue
            if self.store.delete_run(r["id"]):
                deleted.append(r["id"])
                if r.get("group_id") is not None:
                    groups.add(r["group_id"])
        for gid in groups:  # a comparison or sweep with no runs left is gone too
            g = self.store.get_group(gid)
            if g is not None and g["n_runs"] == 0:
                self.store.delete_group(gid)
        for job in {r.get("job") or r["id"] for r in rows if r["id"] in deleted}:
            if not self.store.job_in_use(job):  # its worker's log: no run left to explain
                try:
                    log_path(self.db_path, job).unlink()
                except OSError:
                    pass
        return deleted, active

    def _wait_over(self, run_ids: list[int], wait: float) -> list[int]:
        """Wait up to `wait` s for the runs to leave the queued and running states; those still in
        them."""
        deadline = time.monotonic() + wait
        while True:
            progress = self.progress(run_ids)
            left = [r for r in run_ids if (progress.get(r) or {}).get("status") in ACTIVE_STATUSES]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.1)

    def _terminate(self, job: _Job, reason: str) -> None:
        """SIGTERM: the worker's handler ends the run at its next sync; before the handler is
        installed (still importing torch) the default action ends the process, and the reaper
        records the outcome. Caller holds the lock."""
        if job.stop_reason is None:
            job.stop_reason = reason
        if job.stop_at is None:
            job.stop_at = time.monotonic()
            try:
                job.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    # -- the scheduler -------------------------------------------------------------------------

    def _loop(self) -> None:
        try:  # resolve the cap here, off the page's thread: a GPU probe takes a few seconds
            self.max_workers
            detect_gpus(self.python)
        except Exception:  # noqa: BLE001 - detection never raises by design; be safe anyway
            log.exception("agd_viz job scheduler: cannot work out the worker cap")
            self._max_workers = 1
        while not self._closed:
            try:
                self.poll()
                if time.monotonic() >= self._next_liveness:
                    self._next_liveness = time.monotonic() + self.liveness_interval
                    self.check_liveness()
                self._incident("poll", None)
            except Exception as exc:  # noqa: BLE001 - the scheduler must outlive any one bad poll
                if "poll" not in self._incidents:
                    log.exception("agd_viz job scheduler: poll failed")
                self._incident("poll", f"poll failed: {type(exc).__name__}: {exc}")
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def poll(self) -> None:
        """Reap finished workers, record crashes, SIGKILL overdue cancels, start queued runs.

        Called by the scheduler thread every `poll_interval` seconds; safe to call from any
        thread (tests and the page may call it to see a change sooner).
        """
        with self._lock:
            self._reap()
            self._schedule()
            self._keep_spares()

    # -- pre-started workers -------------------------------------------------------------------

    def _keep_spares(self) -> None:
        """Drop spares that died; start new ones only while nothing trains or waits here, so that a
        spare's imports (seconds of CPU) never slow a run down. Not with several GPUs: a worker's
        GPU is chosen when it starts. Caller holds the lock."""
        for spare in [sp for sp in self._spares if sp.proc.poll() is not None]:
            self._spares.remove(spare)
            _close_quietly(spare.proc.stdin)
            # A spare that exits unasked is broken (its log says why): wait longer before each
            # new one, and stop after three, rather than start a process every poll.
            self._spare_failures += 1
            self._spare_retry_at = time.monotonic() + 10.0 * self._spare_failures
            log.warning("agd_viz job scheduler: a pre-started worker exited (code %s); see %s",
                        spare.proc.returncode, spare.log)
            if self._spare_failures >= 3:
                self.prewarm = 0
        if self.prewarm <= 0 or self._closed or self._jobs or self._queue:
            return
        if time.monotonic() < self._spare_retry_at:
            return
        if len(self._spares) >= min(self.prewarm, self.max_workers):
            return
        if detect_gpus(self.python) > 1:
            return
        self._spare_count += 1
        path = log_path(self.db_path, 0).with_name(f"spare-{os.getpid()}-{self._spare_count}.log")
        path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [self.python, "-m", WORKER_MODULE, "--from-stdin", "--db", str(self.db_path),
               "--parent-pid", str(self.pid), "--quiet"]
        try:
            with open(path, "ab") as logf:
                logf.write(f"$ {' '.join(cmd)}\n".encode())
                logf.flush()
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=logf, stderr=subprocess.STDOUT,
                                        env=self._worker_env(None), cwd=str(PACKAGE_ROOT),
                                        start_new_session=True, close_fds=True)
        except OSError:
            log.exception("agd_viz job scheduler: could not start a spare worker")
            self.prewarm = 0  # do not retry every poll
            return
        self._spares.append(_Spare(proc, path))

    def _hand_to_spare(self, job: _Job, path: Path) -> subprocess.Popen | None:
        """Give `job` to a live spare (its log becomes the job's); None if there is none."""
        while self._spares:
            spare = self._spares.pop(0)
            if spare.proc.poll() is not None:
                continue
            try:
                spare.proc.stdin.write((" ".join(map(str, job.run_ids)) + "\n").encode())
                spare.proc.stdin.close()
            except (OSError, ValueError):  # it died just now
                _kill_quietly(spare.proc)
                continue
            try:
                os.replace(spare.log, path)
            except OSError:
                pass
            return spare.proc
        return None

    def _stop_spares(self) -> None:
        """Close the spares' stdin (they exit at once) and reap them. Caller holds the lock."""
        for spare in self._spares:
            _close_quietly(spare.proc.stdin)
        for spare in self._spares:
            try:
                spare.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                _kill_quietly(spare.proc)
            try:
                spare.log.unlink()
            except OSError:
                pass
        self._spares.clear()

    def _renice(self, pid: int) -> None:
        if self.nice and hasattr(os, "setpriority"):
            # Linux sets priority per thread: a pre-started worker has threads already (torch's),
            # each lowered; a fresh one has only its first, whose threads inherit it.
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except (OSError, ValueError):
                tids = [pid]
            for tid in tids:
                try:  # set from here, not preexec_fn (unsafe with threads): a few ms at normal priority
                    os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.nice))
                except OSError:
                    pass

    def _reap(self, kill_now: bool = False) -> None:
        """Record workers that exited; SIGKILL stopped ones overdue (all stopped ones if
        `kill_now`). Caller holds the lock."""
        now = time.monotonic()
        for jid, job in list(self._jobs.items()):
            code = job.proc.poll()
            if code is None:
                overdue = job.stop_at is not None and (kill_now or now - job.stop_at > self.kill_after)
                if overdue and not job.killed:
                    job.killed = True
                    try:
                        job.proc.kill()
                    except ProcessLookupError:
                        pass
                continue
            try:
                self._record_exit(job, code)
            except Exception as exc:  # noqa: BLE001 - e.g. the store turned read-only: retry next poll
                self._incident(f"reap-{jid}", f"could not record the end of the worker of runs {job.run_ids} "
                                              f"(retrying): {type(exc).__name__}: {exc}")
                continue
            if f"reap-{jid}" in self._incidents:
                self._incident(f"reap-{jid}", None)
            del self._jobs[jid]

    def _record_exit(self, job: _Job, code: int) -> None:
        """Give each run of the job a final status if its worker could not: killed, crashed before
        its own error handling, or stopped by us before it installed its signal handler."""
        for rid in job.run_ids:
            row = self.store.get_run(rid)
            if row is None:  # deleted while it trained
                continue
            status = row["status"]
            try:
                if status not in ACTIVE_STATUSES:
                    if status == CANCELLED and job.stop_reason == "shutdown" and not row["cancel_requested"]:
                        # Stopped because the server is going away, not by a user: say so.
                        self.store.set_status(rid, INTERRUPTED, error="the app shut down before this run finished")
                elif job.stop_reason == "cancel":
                    note = f"did not stop within {self.kill_after:g} s and was killed" if job.killed else None
                    self.store.finish_run(rid, CANCELLED, summary=row["summary"], error=note)
                elif job.stop_reason == "shutdown":
                    self.store.finish_run(rid, INTERRUPTED, summary=row["summary"],
                                          error="the app shut down before this run finished")
                else:
                    # Once per job, however often a store that refuses writes makes this retry.
                    job.crash = job.crash or self._crash_text(job, code)
                    self.store.finish_run(rid, FAILED, summary=row["summary"], error=job.crash)
            except KeyError:
                pass  # deleted just now

    def _crash_text(self, job: _Job, code: int) -> str:
        """Why a worker ended before its runs did, in one sentence for every attendee's page: the
        signal or exit code, and its last words without paths. Its log's last lines go to the
        server log (once per crash, with the log's path)."""
        if code < 0:
            text = f"worker was killed by signal {signal_name(-code)}"
            if -code == signal.SIGKILL:
                text += " (by a user, or by the system when memory ran out)"
        else:
            text = f"worker exited with code {code} before finishing the run"
        tail = _tail(job.log)
        last = _last_words(tail)
        log.warning("agd_viz job scheduler: the worker of runs %s ended: %s; last lines of %s:\n%s",
                    job.run_ids, text, job.log, tail)
        return f"{text}: {last}" if last else text

    def _schedule(self) -> None:
        """Start queued jobs while there is room (`place`), round-robin across sessions (`_next`).
        Nothing starts while the store cannot record runs: a worker would open a file that is not
        the one this server holds, or fail at its first write. Caller holds the lock."""
        if self._closed or not self._queue or self.store.problem() is not None:
            return
        while self._queue:
            job = self._next()
            if not self._drop_gone(job):
                self._queue.remove(job)
                continue
            where = self._place(job)
            if where is None:
                return  # the next in turn waits for room; nothing overtakes it
            self._queue.remove(job)
            self._tick += 1
            self._served[job.session] = self._tick
            try:
                self._start(job, where)
            except OSError as exc:  # python missing, fork failed: this job fails, others go on
                for rid in job.run_ids:
                    self.store.finish_run(rid, FAILED, error=f"could not start a worker: {exc}")

    def _drop_gone(self, job: _Job) -> bool:
        """Read the job's rows again: drop runs deleted or ended by someone else meanwhile, end the
        ones flagged for cancelling; whether any run is left to start. If reading raises, the job
        stays first in line."""
        rows = {rid: self.store.get_run(rid) for rid in job.run_ids}
        left = []
        for rid, row in rows.items():
            if row is None or row["status"] != QUEUED:
                continue
            if row["cancel_requested"]:
                self.store.finish_run(rid, CANCELLED, error="cancelled before it started")
                continue
            left.append(rid)
        job.run_ids = left
        return bool(left)

    def _place(self, job: _Job) -> int | None:
        """Where `job` may start now (`place`), from this machine's GPUs and their budgets."""
        if self.backend is not None:  # the cluster's scheduler places it; here only the cap counts
            return place(job.memory, [(j.where, j.memory) for j in self._jobs.values()], gpus=0, budget=0,
                         per_gpu=0, max_jobs=self.max_workers, on_gpu=False)
        gpus = detect_gpus(self.python)  # cached; the scheduler thread resolved it at start
        memory = _GPU_MEMORY[0] if _GPU_MEMORY else None
        return place(job.memory, [(j.where, j.memory) for j in self._jobs.values()], gpus=gpus,
                     budget=spec_mod.budget_bytes(_gpu_kind() if gpus else "cpu", memory),
                     per_gpu=jobs_per_gpu(), max_jobs=self.max_workers, on_gpu=job.on_gpu)

    def _start(self, job: _Job, where: int) -> None:
        path = log_path(self.db_path, job.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [self.python, "-m", WORKER_MODULE, *(a for r in job.run_ids for a in ("--run-id", str(r))),
               "--db", str(self.db_path), "--parent-pid", str(self.pid), "--quiet"]
        job.where = where
        if self.backend is not None:
            proc = self.backend.start(job.run_ids, path)
        else:
            proc = self._hand_to_spare(job, path) if detect_gpus(self.python) <= 1 else None
        if proc is None:
            with open(path, "ab") as logf:
                logf.write(f"$ {' '.join(cmd)}\n".encode())
                logf.flush()
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                    env=self._worker_env(job), cwd=str(PACKAGE_ROOT),
                    # Own session: a Ctrl-C in the server's terminal reaches the server, whose exit
                    # handler stops the workers, instead of killing them mid-write.
                    start_new_session=True, close_fds=True,
                )
        if self.backend is None:  # a cluster job's handle carries this process's own pid
            self._renice(proc.pid)
        job.proc, job.log, job.started = proc, path, time.monotonic()
        self._jobs[job.id] = job
        # Running from now on, owned by the worker's pid; the worker re-stamps started and
        # records its device when it gets going.
        for rid in job.run_ids:
            self.store.set_status(rid, RUNNING, pid=proc.pid)

    def _worker_env(self, job: _Job | None) -> dict:
        env = dict(os.environ)
        # `-m agd_viz.worker` must find this very package, whatever the server's working directory.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(worker_threads(min(self.max_workers, os.cpu_count() or 1)))
        gpus = detect_gpus(self.python)  # cached; the scheduler thread resolved it at start
        if gpus > 1 and job is not None and job.where != CPU:
            visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
            visible = visible or [str(k) for k in range(gpus)]
            env["CUDA_VISIBLE_DEVICES"] = visible[job.where % len(visible)]
        env.update(self.extra_env)
        return env

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> list[int]:
        """Mark the unfinished runs whose owner is gone (rule: module docstring) `interrupted`, with
        the reason; returns their ids. Runs of live servers and live processes are left alone.
        Called when a manager starts and then every LIVENESS_S by its scheduler thread."""
        # Rows first, then what the managers here hold: a run queued here after the read cannot be
        # misjudged, and one that ended since is protected by end_if_unchanged.
        rows = self.store.list_runs(status=list(ACTIVE_STATUSES))
        mine = self._held_here()
        lost = []
        for row in rows:
            if row["id"] in mine or not self._owner_gone(row, mine):
                continue
            if row["status"] == QUEUED:
                text = ("The app server that queued this run stopped before it started (its process is "
                        "gone).")
            else:
                text = ("The process training this run stopped before it finished (its process is gone: "
                        "killed, or the terminal that ran it closed).")
            if self.store.end_if_unchanged(row["id"], row["status"], row["pid"], INTERRUPTED, text):
                lost.append(row["id"])
        return lost

    def _held_here(self) -> set[int]:
        """Run ids queued or running in a live manager of this process."""
        mine: set[int] = set()
        for m in list(_LIVE):
            if not m._closed:
                with m._lock:
                    mine.update(r for job in (*m._queue, *m._jobs.values()) for r in job.run_ids)
        return mine

    def _owner_gone(self, row: dict, mine: set[int]) -> bool:
        """Whether nothing alive answers for unfinished run `row` any more (module docstring)."""
        rid, pid, status = row["id"], row["pid"], row["status"]
        if rid in mine:
            return False
        if pid is None:
            return time.time() - (row["created"] or time.time()) > ORPHAN_GRACE_S
        if pid == self.pid:
            # Ours: a running one may be a command line training in this process; a queued one is
            # alive only while a live manager here holds it.
            return status == QUEUED
        since = row["started"] if status == RUNNING and row["started"] else row["created"]
        return not pid_alive(pid, not_after=since)

    def check_liveness(self) -> None:
        """The periodic part of the scheduler (every LIVENESS_S): the store's health, runs whose
        owner died (`recover`), queued runs here that another process flagged for cancelling."""
        problem = self.store.problem()
        self._incident("store", problem and f"the run store {self.db_path} cannot record runs: {problem}")
        if problem == STORE_GONE and self._saved_copy is None:
            self._save_what_we_hold()
        if problem is not None:
            return  # nothing can be written; the incident is logged, the pages say it
        ended = self.recover()
        if ended:
            log.warning("agd_viz job scheduler: runs %s ended interrupted: the process answering for them "
                        "is gone", ended)
        with self._lock:
            queued = [r for job in self._queue for r in job.run_ids]
            flagged = self.store.cancel_flags(queued) if queued else set()
            for job in [j for j in self._queue if flagged.intersection(j.run_ids)]:
                self._drop_gone(job)
                if not job.run_ids:
                    self._queue.remove(job)

    def _save_what_we_hold(self) -> None:
        """The store file was deleted or replaced under this server: write what its connection still
        reads to a new file beside where it was, once, and name it in the server log."""
        dest = self.db_path.with_name(f"{self.db_path.stem}.saved-{time.strftime('%Y%m%d-%H%M%S')}.db")
        try:
            self._saved_copy = self.store.save_copy(dest)
            log.warning("agd_viz job scheduler: the run store %s was deleted or replaced while this server "
                        "ran; everything it held is saved in %s (point AGD_VIZ_DB at it and restart)",
                        self.db_path, dest)
        except (sqlite3.Error, OSError) as exc:
            self._saved_copy = dest  # do not retry every tick; said once
            log.error("agd_viz job scheduler: the run store %s was deleted or replaced, and saving what "
                      "this server held to %s failed: %s", self.db_path, dest, exc)

    def _incident(self, kind: str, text: str | None) -> None:
        """Log `text` once when it starts (and once when it is over), however often it is seen: a
        problem met at every poll is one line in the server log, not one per poll."""
        before = self._incidents.get(kind)
        if text == before:
            return
        if text is None:
            self._incidents.pop(kind, None)
            log.warning("agd_viz job scheduler: resolved: %s", before)
        else:
            self._incidents[kind] = text
            log.error("agd_viz job scheduler: %s", text)

    # -- shutting down -------------------------------------------------------------------------

    def shutdown(self, cancel_running: bool = True, timeout: float | None = None) -> None:
        """Stop the scheduler and every worker; wait for them (SIGKILL after `timeout`, default
        `kill_after`). `cancel_running=True`: queued and running runs end `cancelled` (a user's
        "stop everything"); False: they end `interrupted` (the server is going away). Idempotent.
        """
        timeout = self.kill_after if timeout is None else float(timeout)
        with self._lock:
            if self._closed and not self._jobs:
                return
            self._closed = True
            self._wake.set()
            self._stop_spares()
            status = CANCELLED if cancel_running else INTERRUPTED
            reason = "cancel" if cancel_running else "shutdown"
            for rid in (r for job in self._queue for r in job.run_ids):
                try:
                    self.store.finish_run(rid, status, error="the app shut down before this run started"
                                          if not cancel_running else "cancelled before it started")
                except KeyError:
                    pass
            self._queue.clear()
            for job in self._jobs.values():
                if cancel_running:
                    for rid in job.run_ids:
                        try:
                            self.store.request_cancel(rid)
                        except Exception:  # noqa: BLE001 - stopping matters more than the flag
                            pass
                self._terminate(job, reason)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._reap(kill_now=time.monotonic() > deadline)
                if not self._jobs:
                    break
            time.sleep(0.05)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        if self.backend is not None:
            self.backend.close()
        _LIVE.discard(self)
        try:
            atexit.unregister(self._atexit)
        except Exception:  # noqa: BLE001
            pass

    def _atexit(self) -> None:
        """At interpreter exit (the server stopping normally) workers must not outlive it."""
        try:
            self.shutdown(cancel_running=False, timeout=3.0)
        except Exception:  # noqa: BLE001 - never turn exit into a traceback
            pass

    def __enter__(self) -> "JobManager":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"JobManager({str(self.db_path)!r}, jobs running={len(self._jobs)}, queued={len(self._queue)})"
