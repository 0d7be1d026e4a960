"""The worker: the process that trains queued runs of the store with `train.run` and writes every
record into the store (docs/architecture.md, "One run, from widget to chart").

    python -m agd_viz.worker --db PATH --run-id N [--run-id M ...] [--parent-pid P] [--quiet]
    python -m agd_viz.worker --db PATH --from-stdin [--parent-pid P] [--quiet]

The job manager starts one per run; with `--from-stdin` it is started ahead of need (a pre-started
worker): it imports torch and the training path, runs two tiny steps, then waits for the run ids on
one line of stdin, and exits quietly if stdin closes first. Runs trained together must share every
setting but the optimiser. The command line's `train` and `sweep` write through the same sink,
`train_into`, so what the app runs and what a user scripts are one code path.

Stopping: SIGTERM or SIGINT, a cancel request in the store, or a parent (`--parent-pid`) that is
gone ends the runs at the next sync (`StopFlags`): "cancelled", or "interrupted" when the app that
started them went away or the terminal that ran them closed (SIGHUP: a command line's `train`
closed with its window). A crash ends every unfinished run "failed" with the reason; what reaches
the store (and so every attendee's page) says it without the server's paths, which the process's
own output (the server log) keeps.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import sys
import time
import traceback

import numpy as np

from agd_viz import fmt, procs, store as store_mod, train
from agd_viz.spec import RunSpec, SpecError

__all__ = ["StopFlags", "train_into", "spec_of_runs", "work", "main"]

EXIT_USAGE = 2


class StopFlags:
    """Why each run should stop: SIGTERM/SIGINT, a cancel request in the store, or a vanished
    parent. Called as `train.run`'s `stop(i)`."""

    PARENT_CHECK_S = 0.5  # at most this often: a /proc read per sync would be wasted work

    def __init__(self, store, run_ids, parent_pid: int | None = None):
        self.store, self.run_ids, self.parent_pid = store, list(run_ids), parent_pid
        self.signalled = False
        self.signum: int | None = None
        self.parent_gone = False
        self._last_check = 0.0

    def on_signal(self, signum, frame) -> None:
        self.signalled = True
        self.signum = signum

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGHUP, self.on_signal)

    def __call__(self, i: int) -> bool:
        if self.signalled or self.parent_gone:
            return True
        now = time.monotonic()
        if self.parent_pid is not None and now - self._last_check > self.PARENT_CHECK_S:
            self._last_check = now
            # Reparented (our parent exited and init adopted us) counts as gone even if the pid
            # was reused meanwhile.
            if not procs.pid_alive(self.parent_pid) or os.getppid() != self.parent_pid:
                self.parent_gone = True
                return True
        if self.store is not None and self.run_ids[i] is not None:
            return self.store.cancel_requested(self.run_ids[i])
        return False


# -------------------------------------------------------------------------------------------------
# The sink


class _Sink:
    """Records on their way into the store: Steps buffered per run and written at each Sync in one
    transaction per run, with the run's progress; Boundary pictures written as they come, the grid
    they are drawn on once per run; each End as its run's final status. With no store
    (`--no-store`) it only counts steps. A run deleted while it trains (the store raises KeyError)
    is written no more; the others carry on."""

    def __init__(self, store, run_ids, steps: int):
        self.store, self.run_ids, self.steps = store, list(run_ids), steps
        self.buffers: list[list[train.Step]] = [[] for _ in self.run_ids]
        self.grid_written: set[int] = set()
        self.gone: set[int] = set()
        self.start = time.perf_counter()

    def _put(self, opt: int, write, *args, **kwargs) -> None:
        rid = self.run_ids[opt]
        if self.store is None or rid is None or rid in self.gone:
            return
        try:
            write(rid, *args, **kwargs)
        except KeyError:
            self.gone.add(rid)

    def add(self, rec: train.Step) -> None:
        self.buffers[rec.opt].append(rec)

    def picture(self, rec: train.Boundary) -> None:
        if self.run_ids[rec.opt] not in self.grid_written:
            g = rec.grid
            self._put(rec.opt, self.store.put_frame, store_mod.FRAME_BOUNDARY_GRID, 0, {
                "x": g.x, "y": g.y, "points": g.points, "labels": g.labels,
                "classes": np.asarray(g.classes, dtype=str)})
            self.grid_written.add(self.run_ids[rec.opt])
        self._put(rec.opt, self.store.put_frame, store_mod.FRAME_BOUNDARY, rec.step, {"probs": rec.probs})

    def write(self) -> int:
        """Flush the buffered Steps; returns the furthest step written."""
        top = 0
        for opt, buf in enumerate(self.buffers):
            if not buf:
                continue
            last = buf[-1]
            top = max(top, last.step)
            if self.store is not None:
                elapsed = max(time.perf_counter() - self.start, 1e-9)
                progress = {"step": last.step, "steps": self.steps, "last_loss": last.loss,
                            "steps_per_s": last.step / elapsed}
                self._put(opt, self.store.append_metrics, buf, progress=progress)
            buf.clear()
        return top

    def finish(self, end: train.End) -> None:
        if self.store is not None:
            error = None if end.error is None else fmt.hide_paths(end.error)
            self._put(end.opt, self.store.finish_run, end.status, summary=end.summary, error=error)


def train_into(spec: RunSpec, store, run_ids, flags: StopFlags | None = None,
               show_progress: bool = False) -> dict[int, train.End]:
    """Train `spec` and write its records into `store` (None: nowhere) as runs `run_ids` (one per
    optimiser, in order); returns each optimiser's End. The runs are marked running here, on the
    device `spec` resolves to, owned by this process."""
    flags = flags if flags is not None else StopFlags(store, run_ids)
    n = len(spec.optimizers)
    device = str(train.resolve_device(spec.device))
    if store is not None:
        for rid in run_ids:
            store.start_run(rid, device, os.getpid())
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=spec.steps, file=sys.stderr, unit="step", mininterval=0.5, leave=False,
                   desc=", ".join(spec.optimizers)[:40])
    sink = _Sink(store, run_ids, spec.steps)
    ends: dict[int, train.End] = {}
    shown = 0
    try:
        for rec in train.run(spec, stop=flags):
            if isinstance(rec, train.Step):
                sink.add(rec)
            elif isinstance(rec, train.Boundary):
                sink.picture(rec)
            elif isinstance(rec, train.Sync):
                top = sink.write()
                if bar is not None and top > shown:
                    bar.update(top - shown)
                    shown = top
            elif isinstance(rec, train.End):
                sink.write()
                ends[rec.opt] = rec = _explained(rec, flags, store, run_ids[rec.opt])
                sink.finish(rec)
    except BaseException as exc:  # a crash marks every unfinished run failed, with the reason
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if isinstance(exc, KeyboardInterrupt):
            text = "interrupted from the keyboard"
        elif isinstance(exc, sqlite3.Error):  # a read-only, full or vanished store: say that
            text = f"the run store could not be written ({exc})"
        with contextlib.suppress(Exception):  # what it can: the store may be what failed
            sink.write()
        for i in range(n):
            if i not in ends:
                ends[i] = train.End(i, "failed", 0, text, {})
                with contextlib.suppress(Exception):  # the store may be what failed
                    sink.finish(ends[i])
        if bar is not None:
            bar.close()
        if not isinstance(exc, Exception):
            raise
        print(f"agd_viz: training failed: {text}", file=sys.stderr)
        return ends
    if bar is not None:
        bar.close()
    return ends


def _explained(end: train.End, flags: StopFlags, store, run_id) -> train.End:
    """A "cancelled" End says why: the app that started it exited ("interrupted"), or a signal
    that was not a user's cancel."""
    if end.status != "cancelled":
        return end
    if flags.parent_gone:
        return train.End(end.opt, "interrupted", end.step, "the app that started this run exited", end.summary)
    if flags.signum == signal.SIGHUP:
        return train.End(end.opt, "interrupted", end.step, "the terminal that ran this run closed (SIGHUP)",
                         end.summary)
    # The job manager sends SIGTERM with a user's cancel: that one is no error.
    if flags.signalled and not (store is not None and store.cancel_requested(run_id)):
        return train.End(end.opt, end.status, end.step, "stopped by a signal", end.summary)
    return end


# -------------------------------------------------------------------------------------------------
# Worker mode: runs already queued in the store


class WorkerError(Exception):
    """Bad input to the worker; one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + error over several lines; we want one
        raise WorkerError(message)


def spec_of_runs(rows: list[dict]) -> RunSpec:
    """The one spec that trains `rows` (stored runs) side by side: their shared settings and every
    optimiser in row order. SpecError if a stored spec is invalid or the settings differ."""
    specs = [RunSpec.from_dict(r["spec"]) for r in rows]
    base = specs[0]
    if any(s.replace(optimizers=base.optimizers) != base for s in specs[1:]):
        raise SpecError("runs trained together must share every setting but the optimiser")
    return base.replace(optimizers=tuple(o for s in specs for o in s.optimizers))


def _warm_up() -> None:
    """What a pre-started worker does before it is given a run, so that the run's first step comes
    within a fraction of a second of Start: import torch and the training path, read the default
    dataset once (its loader's imports; the file into the OS cache), and run two tiny steps (torch's
    lazy initialisation of the autograd engine and the matmul kernels)."""
    from agd_viz import data, datasets

    data.load(datasets.DEFAULT_DATASET)
    for _ in train.run(RunSpec(depth=2, width=8, steps=2, batch_size=8, device="cpu")):
        pass


def _read_run_ids() -> list[int] | None:
    line = sys.stdin.readline()
    if not line.strip():
        return None  # the app closed the pipe (shut down, or no run came): never used
    try:
        return [int(v) for v in line.split()]
    except ValueError:
        raise WorkerError(f"expected run ids on stdin, got {line.strip()[:80]!r}") from None


def _fail_all(store, run_ids, text: str) -> None:
    """Queued runs must not stay queued forever when their worker cannot train them."""
    for rid in run_ids:
        try:
            store.finish_run(rid, "failed", error=text)
        except KeyError:
            pass  # deleted meanwhile


def work(db, run_ids: list[int], parent_pid: int | None = None, quiet: bool = False) -> int:
    """Train stored runs `run_ids` of the store at `db`; 0 if none failed, 1 if one did."""
    try:
        store = store_mod.Store(db)
    except store_mod.StoreError as exc:
        raise WorkerError(str(exc)) from None
    rows = []
    for rid in run_ids:
        row = store.get_run(rid)
        if row is None:
            raise WorkerError(f"no run with id {rid} in {store.path}")
        rows.append(row)
    try:
        spec = spec_of_runs(rows)
        train.resolve_device(spec.device)
    except SpecError as exc:
        _fail_all(store, run_ids, f"invalid spec: {exc}")
        raise WorkerError(f"stored spec cannot be trained here: {exc}") from None
    flags = StopFlags(store, run_ids, parent_pid)
    flags.install()
    ends = train_into(spec, store, run_ids, flags, show_progress=not quiet)
    for i, rid in enumerate(run_ids):  # the log's last lines, shown with a crash
        end = ends.get(i)
        print(f"run {rid}: {end.status if end else 'failed'} at step {end.step if end else 0}"
              + (f" ({end.error})" if end and end.error else ""), flush=True)
    return 1 if any(e.status == "failed" for e in ends.values()) else 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m agd_viz.worker",
                                description="Train runs queued in an agd_viz store (the app's worker).")
    p.add_argument("--db", default=None, help="run store file (default: $AGD_VIZ_DB or ./agd_viz_runs.db)")
    p.add_argument("--run-id", type=int, action="append", default=None, help="a queued run (repeatable)")
    p.add_argument("--from-stdin", action="store_true",
                   help="import everything, then wait for run ids on one line of stdin; exit quietly "
                        "if stdin closes first")
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    prog = "agd_viz worker"
    try:
        args = build_parser().parse_args(argv)
        if args.from_stdin == bool(args.run_id):
            raise WorkerError("give --run-id, or --from-stdin to read the run ids from stdin")
        run_ids = args.run_id
        if args.from_stdin:
            _warm_up()
            run_ids = _read_run_ids()
            if run_ids is None:
                return 0
        return work(args.db, run_ids, args.parent_pid, args.quiet)
    except WorkerError as exc:
        print(f"{prog}: {str(exc).splitlines()[0] if str(exc) else 'bad arguments'}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
