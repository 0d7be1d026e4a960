"""Headless command line: `python -m agd_viz train|sweep|runs|export|download`. Argument parsing
and printing only: training goes through the app's own worker sink (`agd_viz.worker.train_into`),
so what the app runs and what a user scripts are one code path. Bad arguments end with one line on
stderr and exit code 2, before anything is written: values out of range, a dataset not downloaded,
a store that is not a run store or is read-only (`train`, `sweep`), an output file that cannot be
written (`export`). Closing the terminal of a `train` or `sweep` (SIGHUP) ends its runs
"interrupted", so none stays "running" in the store.

`train --run-id N` (a run already queued in the store) is the worker, `python -m agd_viz.worker`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the command line; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + error over several lines; we want one
        raise UsageError(f"{self.prog}: {message}")


def _add_store_args(p):
    p.add_argument("--db", default=None, help="run store file (default: $AGD_VIZ_DB or ./agd_viz_runs.db)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="agd_viz", description="AGD Explorer: train and inspect runs from the shell.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", help="train one or more optimisers side by side")
    t.add_argument("--dataset", default=None)
    t.add_argument("--depth", type=int, default=None)
    t.add_argument("--width", type=int, default=None)
    t.add_argument("--optimizer", action="append", default=None, metavar="SPEC",
                   help="agd, agd:gain=10, adam:lr=1e-3, sgd:lr=0.1,momentum=0.9, adamw:lr=..,weight_decay=.., "
                        "prodigy, dadapt-adam, schedulefree-adamw:warmup_steps=100; repeat to compare")
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--device", default=None, choices=["auto", "cpu", "cuda", "mps"])
    t.add_argument("--metrics", default=None, choices=["full", "none"])
    t.add_argument("--eval-every", type=int, default=None)
    t.add_argument("--layer-every", type=int, default=None)
    t.add_argument("--same-init", action="store_true", help="give baselines AGD's orthogonal init too")
    _add_loss_args(t)
    t.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. noise=0.2 (repeatable)")
    t.add_argument("--name", default=None, help="a name for this comparison")
    t.add_argument("--json", action="store_true", help="print one JSON document (a list of runs) on stdout")
    t.add_argument("--no-store", action="store_true", help="do not record the runs in the store")
    t.add_argument("--run-id", type=int, action="append", default=None,
                   help="train runs already queued in the store (as python -m agd_viz.worker does)")
    t.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    t.add_argument("--run-id-from-stdin", action="store_true",
                   help="import everything, then wait for run ids on one line of stdin (as "
                        "python -m agd_viz.worker --from-stdin does); exit quietly if stdin closes first")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_store_args(t)
    _add_ray_args(t)

    r = sub.add_parser("runs", help="list stored runs")
    r.add_argument("--json", action="store_true")
    r.add_argument("--status", default=None)
    _add_store_args(r)

    e = sub.add_parser("export", help="export one run's metrics")
    e.add_argument("run_id", type=int)
    e.add_argument("--format", choices=["csv", "json"], default="csv")
    e.add_argument("--output", "-o", default=None, help="file to write (default: stdout)")
    _add_store_args(e)
    _add_sweep_parser(sub)
    _add_download_parser(sub)
    _add_paper_parser(sub)
    return parser


def _add_loss_args(p):
    p.add_argument("--loss", default=None, choices=["xent", "square"],
                   help="xent: cross-entropy (default); square: the paper's square loss, one-hot targets × √d_L")
    p.add_argument("--augment", default=None, action=argparse.BooleanOptionalAction,
                   help="random crop (4-pixel padding) and horizontal flip of each training batch, as the "
                        "paper; default: on for cifar10, off elsewhere")


# -- helpers --------------------------------------------------------------------------------------

def _parse_value(text: str):
    """A number where the text is one (dataset options are numbers); the text otherwise, for
    RunSpec to refuse with a sentence."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _data_options(items: list[str], prog: str = "agd_viz train") -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{prog}: --data-option expects KEY=VALUE, got {item!r}")
        out[key.strip()] = _parse_value(value.strip())
    return out


def _open_store(path, prog: str | None = None):
    """The store at `path`; with `prog` (a command that writes runs) also refused, exit 2, when it
    cannot record them (read-only, deleted meanwhile)."""
    from agd_viz.store import Store, StoreError

    try:
        store = Store(path)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    problem = store.problem() if prog is not None else None
    if problem is not None:
        from agd_viz.store import STORE_READ_ONLY

        store.close()
        if problem == STORE_READ_ONLY:
            raise UsageError(f"{prog}: {store.path} is read-only, so no run can be recorded in it; make it "
                             "writable or choose another --db.")
        raise UsageError(f"{prog}: {store.path}: {problem}")
    return store


def _spec_from_args(args):
    from agd_viz.spec import RunSpec, SpecError

    fields = {
        "dataset": args.dataset, "depth": args.depth, "width": args.width, "steps": args.steps,
        "batch_size": args.batch_size, "seed": args.seed, "device": args.device, "metrics": args.metrics,
        "eval_every": args.eval_every, "layer_every": args.layer_every, "loss": args.loss,
        "augment": args.augment,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    if args.optimizer:
        fields["optimizers"] = tuple(args.optimizer)
    if args.same_init:
        fields["same_init"] = True
    if args.data_option:
        fields["data_options"] = _data_options(args.data_option)
    try:
        return RunSpec(**fields)
    except SpecError as exc:
        raise UsageError(f"agd_viz train: {exc}") from None


def _clean(x):
    """JSON has no NaN: missing or non-finite numbers become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _run_json(run_id, spec, opt_text, end) -> dict:
    """One run of `train --json` / `sweep --json`; `end` is its `train.End` (None: it never ended)."""
    from agd_viz import optspec

    summary = (end.summary if end is not None else None) or {}
    return {
        "run_id": run_id,
        "optimizer": opt_text,
        "label": optspec.label(opt_text),
        "status": end.status if end is not None else "failed",
        "steps": summary.get("steps", 0),
        "final_train_loss": _clean(summary.get("final_train_loss")),
        "final_train_acc": _clean(summary.get("final_train_acc")),
        "final_test_loss": _clean(summary.get("final_test_loss")),
        "final_test_acc": _clean(summary.get("final_test_acc")),
        "mean_eta": _clean(summary.get("mean_eta")),
        "elapsed_s": summary.get("elapsed_s"),
        "dataset": spec.dataset,
        "depth": spec.depth,
        "width": spec.width,
        "device": summary.get("device"),
        "error": end.error if end is not None else None,
    }


# -- commands -------------------------------------------------------------------------------------

def cmd_train(args) -> int:
    if args.run_id or args.run_id_from_stdin:
        return _as_worker(args)
    spec = _spec_from_args(args)
    if args.ray:
        return _on_ray(args, [spec])
    _device_or_exit(spec, "agd_viz train")
    _admit_or_exit(spec, "agd_viz train")
    from agd_viz import worker

    store = None
    run_ids = [None] * len(spec.optimizers)
    if not args.no_store:
        store = _open_store(args.db, "agd_viz train")
        gid = store.create_group("compare", args.name, spec.to_dict())
        # Owned by this process from the start: a server's liveness check marks them interrupted if it dies.
        run_ids = [store.create_run(spec.with_optimizer(o).to_dict(), o, group_id=gid, name=args.name, label=label,
                                    pid=os.getpid()) for o, label in zip(spec.optimizers, spec.labels)]
    flags = worker.StopFlags(store, run_ids, args.parent_pid)
    flags.install()
    ends = worker.train_into(spec, store, run_ids, flags, show_progress=not args.quiet)

    results = [_run_json(run_ids[i], spec, spec.optimizers[i], ends.get(i)) for i in range(len(spec.optimizers))]
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    else:
        for r in results:
            print(_train_line(r))
    failed = any(r["status"] == "failed" for r in results)
    return 1 if failed else 0


def _train_line(r: dict) -> str:
    acc = r["final_train_acc"]
    acc_s = f"{100 * acc:.1f}%" if acc is not None else "n/a"
    loss = r["final_train_loss"]
    loss_s = f"{loss:.4f}" if loss is not None else "n/a"
    rid = f"run {r['run_id']}" if r["run_id"] is not None else "run"
    return (f"{rid:>8}  {r['label']:<18} {r['status']:<10} steps {r['steps']:<6} "
            f"train loss {loss_s:<8} train acc {acc_s:<7} {r['elapsed_s'] or 0:.1f}s")


def _as_worker(args) -> int:
    """`train --run-id N` / `--run-id-from-stdin`: what `python -m agd_viz.worker` does."""
    if args.no_store:
        raise UsageError("agd_viz train: --run-id needs the store; drop --no-store")
    if args.run_id and args.run_id_from_stdin:
        raise UsageError("agd_viz train: --run-id-from-stdin takes the run ids from stdin; drop --run-id")
    from agd_viz import worker

    argv = [*(["--db", args.db] if args.db else []), *(["--quiet"] if args.quiet else []),
            *(["--parent-pid", str(args.parent_pid)] if args.parent_pid is not None else [])]
    argv += ["--from-stdin"] if args.run_id_from_stdin else [a for r in args.run_id for a in ("--run-id", str(r))]
    return worker.main(argv)


def _device_or_exit(spec, prog: str) -> str:
    """The device `spec` trains on here, as "cpu", "cuda" or "mps"."""
    from agd_viz.spec import SpecError
    from agd_viz.train import resolve_device

    try:
        return str(resolve_device(spec.device))
    except SpecError as exc:
        raise UsageError(f"{prog}: {exc}") from None


def _admit_or_exit(spec, prog: str) -> None:
    """This machine's limits (steps, memory budget: agd_viz.spec) before anything is written; on a
    GPU the budget defaults to most of the device's memory, which torch can read here."""
    from agd_viz.spec import SpecError, admit
    from agd_viz.train import resolve_device

    device = resolve_device(spec.device)
    memory = None
    if device.type == "cuda":
        import torch

        memory = torch.cuda.get_device_properties(device.index or 0).total_memory
    try:
        admit(spec, device=device.type, device_memory=memory)
    except (SpecError, ValueError) as exc:  # ValueError: a bad AGD_VIZ_* variable
        raise UsageError(f"{prog}: {exc}") from None


def cmd_runs(args) -> int:
    store = _open_store(args.db)
    runs = store.list_runs(status=args.status)
    if args.json:
        out = []
        for r in runs:
            spec = r.get("spec") or {}
            summary = r.get("summary") or {}
            out.append({
                "run_id": r["id"], "group_id": r.get("group_id"), "name": r.get("name"),
                "optimizer": r["optimizer"], "status": r["status"], "dataset": spec.get("dataset"),
                "depth": spec.get("depth"), "width": spec.get("width"), "steps": r.get("step"),
                "final_train_acc": _clean(summary.get("final_train_acc")),
                "final_train_loss": _clean(summary.get("final_train_loss")),
                "created": r.get("created"), "error": r.get("error"),
            })
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    if not runs:
        print(f"no runs in {store.path}")
        return 0
    print(f"{'id':>5}  {'status':<11} {'optimizer':<22} {'dataset':<9} {'depth':>5} {'width':>6} {'step':>7}  train acc")
    for r in runs:
        spec = r.get("spec") or {}
        acc = _clean((r.get("summary") or {}).get("final_train_acc"))
        acc_s = f"{100 * acc:.1f}%" if acc is not None else ""
        print(f"{r['id']:>5}  {r['status']:<11} {r['optimizer']:<22.22} {str(spec.get('dataset')):<9} "
              f"{spec.get('depth', ''):>5} {spec.get('width', ''):>6} {r.get('step') or 0:>7}  {acc_s}")
    return 0


def cmd_export(args) -> int:
    store = _open_store(args.db)
    if store.get_run(args.run_id) is None:
        raise UsageError(f"agd_viz export: no run with id {args.run_id} in {store.path}")
    text = store.export_run(args.run_id, args.format)
    if args.output:
        _write_output(args.output, text, "agd_viz export")
    else:
        sys.stdout.write(text)
    return 0


def _write_output(path: str, text: str, prog: str) -> None:
    """Write `text` to `path`, or one line and exit 2 (a folder, a missing folder, a full disk),
    leaving no partial file of ours behind."""
    existed = os.path.exists(path)
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as exc:
        if not existed and os.path.isfile(path):
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise UsageError(f"{prog}: cannot write {path}: {exc.strerror or exc}") from None


# -- sweep ----------------------------------------------------------------------------------------


def _add_sweep_parser(sub):
    s = sub.add_parser("sweep", help="train a depth × width grid, one cell after another",
                       description="Train every optimiser at every depth × width, cell by cell in this "
                                   "process (each cell's optimisers side by side, as `train` does), "
                                   "recorded as one group of kind 'sweep'.")
    s.add_argument("--depths", required=True, help="comma-separated depths, e.g. 2,4,8,16,32")
    s.add_argument("--widths", required=True, help="comma-separated widths, e.g. 32,64,128")
    s.add_argument("--optimizer", action="append", default=None, metavar="SPEC",
                   help="as for train (default agd); repeat, e.g. --optimizer agd --optimizer adam:lr=1e-3")
    s.add_argument("--dataset", default=None)
    s.add_argument("--steps", type=int, default=None)
    s.add_argument("--batch-size", type=int, default=None)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--device", default=None, choices=["auto", "cpu", "cuda", "mps"])
    s.add_argument("--metrics", default=None, choices=["full", "none"],
                   help="per-layer metrics; default none (the heatmaps need only each run's summary)")
    s.add_argument("--eval-every", type=int, default=None)
    s.add_argument("--layer-every", type=int, default=None)
    s.add_argument("--same-init", action="store_true", help="give baselines AGD's orthogonal init too")
    _add_loss_args(s)
    s.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--name", default=None, help="a name for this sweep")
    s.add_argument("--json", action="store_true",
                   help="print one JSON document (a list of runs, as train --json) on stdout")
    s.add_argument("--no-store", action="store_true", help="do not record the runs in the store")
    s.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_store_args(s)
    _add_ray_args(s)


def cmd_sweep(args) -> int:
    """Every cell's runs are created up front (queued, owned by this process), so the sweep page
    shows the whole grid at once; then the cells train one after another."""
    from agd_viz import cost, fmt
    from agd_viz.spec import SpecError, SweepConfig, SweepError

    prog = "agd_viz sweep"
    fields = {"dataset": args.dataset, "steps": args.steps, "batch_size": args.batch_size,
              "seed": args.seed, "device": args.device, "metrics": args.metrics,
              "eval_every": args.eval_every, "layer_every": args.layer_every, "loss": args.loss,
              "augment": args.augment}
    fields = {k: v for k, v in fields.items() if v is not None}
    try:
        if args.data_option:
            fields["data_options"] = _data_options(args.data_option, prog)
        config = SweepConfig(depths=args.depths, widths=args.widths,
                             optimizers=tuple(args.optimizer or ("agd",)),
                             same_init=args.same_init, **fields)
        problems = config.check()
        if problems:
            raise SweepError(problems[0])
        specs = config.specs()
        if args.ray:
            return _on_ray(args, specs, config)
        device = _device_or_exit(specs[0], prog)
        for spec in sorted(specs, key=lambda s: -s.depth * s.width * s.width):
            _admit_or_exit(spec, prog)  # the largest cell first: its refusal is the one to read
    except SpecError as exc:  # SweepError too
        raise UsageError(f"{prog}: {exc}") from None
    from agd_viz import worker
    from agd_viz.train import End

    store = None if args.no_store else _open_store(args.db, prog)
    cells = []  # (spec, run ids)
    group_id = None
    if store is not None:
        group_id = store.create_group("sweep", args.name, config.to_dict())
        for spec in specs:
            # Owned by this process from the start: a running app leaves a live CLI's cells alone,
            # and marks them interrupted within seconds if this process dies.
            ids = [store.create_run(spec.with_optimizer(o).to_dict(), o, group_id=group_id, name=args.name,
                                    label=label, pid=os.getpid()) for o, label in zip(spec.optimizers, spec.labels)]
            cells.append((spec, ids))
    else:
        cells = [(spec, [None] * len(spec.optimizers)) for spec in specs]
    if not args.quiet:
        speed = cost.calibrate(store.list_runs(limit=400)) if store is not None else None
        est = config.seconds(speed, per_process=False)
        where = f"sweep {group_id}: " if group_id is not None else "sweep: "
        print(f"{where}{config.describe_size()} on {device}, about {fmt.estimate(est)}", file=sys.stderr)

    current: dict = {"flags": None, "stopped": False, "signum": None}

    def on_signal(signum, frame):
        current["stopped"], current["signum"] = True, signum
        if current["flags"] is not None:
            current["flags"].on_signal(signum, frame)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # SIGHUP: its terminal closed
        signal.signal(signum, on_signal)
    results = []
    for spec, run_ids in cells:
        if current["stopped"] or (current["flags"] is not None and current["flags"].parent_gone):
            orphaned = current["flags"] is not None and current["flags"].parent_gone
            hung_up = current["signum"] == signal.SIGHUP
            status = "interrupted" if orphaned or hung_up else "cancelled"
            why = ("the terminal that ran the sweep closed before this cell started" if hung_up
                   else "the process that started the sweep exited before this cell started" if orphaned
                   else "the sweep was stopped before this cell started")
            ends = {}
            for i, rid in enumerate(run_ids):
                ends[i] = End(i, status, 0, why, {})
                if store is not None:
                    store.finish_run(rid, status, error=why)
            results += [_run_json(rid, spec, o, ends[i]) for i, (rid, o) in enumerate(zip(run_ids, spec.optimizers))]
            continue
        flags = current["flags"] = worker.StopFlags(store, run_ids, args.parent_pid)
        ends = worker.train_into(spec, store, run_ids, flags, show_progress=not args.quiet)
        rows = [_run_json(run_ids[i], spec, spec.optimizers[i], ends.get(i)) for i in range(len(run_ids))]
        results += rows
        if not args.json:
            for r in rows:
                print(_sweep_line(r), flush=True)
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    else:
        print(_sweep_table(results, config))
    return 1 if any(r["status"] == "failed" for r in results) else 0


def _sweep_line(r: dict) -> str:
    acc, loss = r["final_train_acc"], r["final_train_loss"]
    acc_s = f"{100 * acc:.1f}%" if acc is not None else "n/a"
    loss_s = f"{loss:.4f}" if loss is not None else "n/a"
    rid = f"run {r['run_id']}" if r["run_id"] is not None else "run"
    return (f"{rid:>8}  depth {r['depth']:<3} width {r['width']:<5} {r['label']:<18} {r['status']:<10} "
            f"train loss {loss_s:<8} train acc {acc_s:<7} {r['elapsed_s'] or 0:.1f}s")


def _sweep_table(results: list[dict], config) -> str:
    """Final train accuracy per optimiser as a depth × width table."""
    lines = []
    for opt in config.optimizers:
        rows = {(r["depth"], r["width"]): r for r in results if r["optimizer"] == opt}
        label = next((r["label"] for r in rows.values()), opt)
        lines.append(f"\nfinal train accuracy, {label} (rows: depth, columns: width)")
        lines.append("depth " + "".join(f"{w:>8}" for w in config.widths))
        for d in config.depths:
            cells = []
            for w in config.widths:
                r = rows.get((d, w))
                acc = r["final_train_acc"] if r else None
                cells.append(f"{100 * acc:7.1f}%" if acc is not None else f"{(r or {}).get('status', '-')[:7]:>8}")
            lines.append(f"{d:>5} " + "".join(cells))
    return "\n".join(lines)


# -- on a Ray cluster -----------------------------------------------------------------------------


def _add_ray_args(p):
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="train on a Ray cluster instead: its address (host:6379), or auto for the cluster this "
                        "machine has joined; records stream back into the store here (docs/cluster.md)")
    p.add_argument("--ray-ship-code", action="store_true",
                   help="with --ray: send this agd_viz to the nodes (Ray runtime_env) instead of the one "
                        "installed on them")


def _on_ray(args, specs, config=None) -> int:
    """`train` / `sweep` with --ray: the job manager with the cluster's backend; nothing is written
    before the cluster is reached and every spec is admitted."""
    import tempfile
    import threading
    import types

    from agd_viz import cluster, cost, fmt
    from agd_viz.jobs import JobManager, QueueFull
    from agd_viz.spec import SpecError

    from agd_viz.store import StoreError, default_db_path

    prog = f"agd_viz {args.command}"
    tmp = tempfile.TemporaryDirectory(prefix="agd_viz_ray_") if args.no_store else None
    db = os.path.join(tmp.name, "runs.db") if tmp is not None else (args.db or default_db_path())
    try:  # the cluster first: unreachable, nothing is written
        backend = cluster.RayBackend.connect(args.ray, db, ship_code=args.ray_ship_code)
    except (cluster.ClusterError, StoreError, ValueError) as exc:
        raise UsageError(f"{prog}: {exc}") from None
    # The operator's own command: no shared server's queue limits.
    manager = JobManager(db, backend=backend, max_queued=10**9, max_queued_per_session=10**9)
    store = manager.store
    stop = threading.Event()
    handlers = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    results = []
    try:
        try:
            if config is not None:
                gid, ids = manager.submit_group(specs, kind="sweep", name=args.name, group_spec=config.to_dict())
            else:
                gid, ids = manager.submit(specs[0], name=args.name)
        except (SpecError, QueueFull) as exc:
            raise UsageError(f"{prog}: {exc}") from None
        if not args.quiet:
            speed = cost.calibrate(store.list_runs(limit=400))
            est = (config.seconds(speed, workers=manager.max_workers) if config is not None
                   else cost.run_seconds(specs[0], speed, startup=True))
            what = f"sweep {gid}: {config.describe_size()}" if config is not None else f"comparison {gid}"
            print(f"{what} {manager.where()}, {fmt.plural(manager.max_workers, 'job')} at a time, "
                  f"about {fmt.estimate(est)}", file=sys.stderr)
        spec_of = dict(zip(ids, (spec for spec in specs for _ in spec.optimizers)))

        def ended(row):
            end = types.SimpleNamespace(status=row["status"], summary=row["summary"], error=row["error"])
            r = _run_json(row["id"], spec_of[row["id"]], row["optimizer"], end)
            results.append(r)
            if config is not None and not args.json:
                print(_sweep_line(r), flush=True)

        cluster.wait_runs(manager, ids, stop=stop, on_end=ended)
    finally:
        manager.shutdown(cancel_running=True)
        for s, handler in handlers.items():  # called from a script or a test: leave its handlers as they were
            signal.signal(s, handler)
        if tmp is not None:
            store.close()
            tmp.cleanup()
    results.sort(key=lambda r: ids.index(r["run_id"]))
    if args.json:
        if args.no_store:
            for r in results:
                r["run_id"] = None
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    elif config is not None:
        print(_sweep_table(results, config))
    else:
        for r in results:
            print(_train_line(r))
    return 1 if any(r["status"] == "failed" for r in results) else 0


# -- download -------------------------------------------------------------------------------------


def _add_download_parser(sub):
    d = sub.add_parser("download", help="download MNIST, Fashion-MNIST or CIFAR-10 into the data cache",
                       description="Fetch a dataset's published files, check their MD5 checksums and "
                                   "keep them in the cache ($AGD_VIZ_DATA or ~/.cache/agd_viz). "
                                   "Nothing is downloaded unless asked here or in the app.")
    d.add_argument("names", nargs="*", metavar="NAME", help="mnist, fashion-mnist, cifar10")
    d.add_argument("--list", action="store_true", help="show each dataset's size and whether it is cached")
    d.add_argument("--cache-dir", default=None, help="cache folder (default: $AGD_VIZ_DATA or ~/.cache/agd_viz)")
    d.add_argument("--base-url", default=None,
                   help="fetch from this base URL instead of the official mirrors (a local mirror)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_download(args) -> int:
    from agd_viz import downloads

    prog = "agd_viz download"
    if args.list:
        for row in downloads.status(args.cache_dir):
            state = "downloaded" if row["downloaded"] else "not downloaded"
            print(f"{row['name']:<14} {row['size_bytes'] / 1e6:6.0f} MB  {state:<15} {row['path']}")
        return 0
    if not args.names:
        raise UsageError(f"{prog}: name a dataset ({', '.join(downloads.SOURCES)}), or use --list")
    unknown = [n for n in args.names if n not in downloads.SOURCES]
    if unknown:
        raise UsageError(f"{prog}: no downloadable dataset {unknown[0]!r}; available: {', '.join(downloads.SOURCES)}")
    for name in dict.fromkeys(args.names):
        bar = None
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(total=downloads.SOURCES[name].size, unit="B", unit_scale=True, unit_divisor=1024,
                       file=sys.stderr, mininterval=0.2, leave=False, desc=name)

        def progress(done, total, message, bar=bar):
            if bar is not None:
                bar.total = total
                bar.set_postfix_str(message.split(": ", 1)[-1], refresh=False)
                bar.update(done - bar.n)

        try:
            folder = downloads.download(name, cache_dir=args.cache_dir, progress=progress, base_url=args.base_url)
        except downloads.DownloadError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 1
        finally:
            if bar is not None:
                bar.close()
        print(f"{name}: ready in {folder}")
    return 0


# -- paper ----------------------------------------------------------------------------------------


def _add_paper_parser(sub):
    from agd_viz import paper

    p = sub.add_parser("paper", help="rerun one of the paper's figures (digits on a laptop, CIFAR-10 at its scale)",
                       description="Train every run of a figure of Bernstein et al. (2023) into the store as one "
                                   "group of kind 'figure' (the Paper page shows it), then print the paper's "
                                   "numbers beside ours.")
    p.add_argument("figure", nargs="?", choices=list(paper.REPRODUCTIONS), metavar="FIGURE",
                   help=f"one of {', '.join(paper.REPRODUCTIONS)}")
    p.add_argument("--scale", default="digits", choices=list(paper.SCALES),
                   help="digits: the laptop version (under two minutes on 2 cores); cifar10: the paper's scale")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--list", action="store_true", help="list the figures and their commands")
    p.add_argument("--name", default=None, help="a name for the group (default: the figure and scale)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_store_args(p)


def cmd_paper(args) -> int:
    from agd_viz import fmt, paper
    from agd_viz.spec import SpecError
    from agd_viz.views import figures

    prog = "agd_viz paper"
    if args.list or not args.figure:
        if not args.list:
            raise UsageError(f"{prog}: name a figure ({', '.join(paper.REPRODUCTIONS)}), or use --list")
        for key, rep in paper.REPRODUCTIONS.items():
            print(f"{key:<12} {rep.label:<18} {paper.ITEMS[key].name}")
            for scale in paper.SCALES:
                print(f"{'':<12} {scale:<8} {len(rep.specs[scale])} job(s): {rep.command(scale)}")
        return 0
    rep = paper.reproduction(args.figure)
    try:
        overrides = {"device": args.device} if args.device else {}
        specs = rep.run_specs(args.scale, **overrides)
        device = _device_or_exit(specs[0], prog)
        for spec in specs:
            _admit_or_exit(spec, prog)
    except SpecError as exc:
        raise UsageError(f"{prog}: {exc}") from None
    from agd_viz import worker

    store = _open_store(args.db)
    gid = store.create_group(figures.KIND, args.name or f"{rep.label} · {args.scale}",
                             figures.group_spec(args.figure, args.scale))
    cells = []
    for spec in specs:
        ids = [store.create_run(spec.with_optimizer(o).to_dict(), o, group_id=gid, name=args.name, label=label)
               for o, label in zip(spec.optimizers, spec.labels)]
        for rid in ids:
            store.set_status(rid, "queued", pid=os.getpid())
        cells.append((spec, ids))
    if not args.quiet:
        print(f"{rep.label} at {args.scale} scale, group {gid}: {len(specs)} job(s) on {device}", file=sys.stderr)
    import time

    start = time.perf_counter()
    stopped = False
    for spec, ids in cells:
        if stopped:
            for rid in ids:
                store.finish_run(rid, "cancelled", error="the reproduction was stopped before this job started")
            continue
        flags = worker.StopFlags(store, ids)
        flags.install()
        worker.train_into(spec, store, ids, flags, show_progress=not args.quiet)
        stopped = flags.signalled
    seconds = time.perf_counter() - start
    data = figures.load(store, store.get_group(gid))
    print(f"{rep.label} ({args.scale}): {len(specs)} job(s), {sum(len(s.optimizers) for s in specs)} run(s) in "
          f"{fmt.duration(seconds)}; stored as group {gid} (the Paper page shows it)")
    for row in figures.comparison(data):
        print(f"  paper: {row['Paper']}\n  here:  {row['Measured here']}")
    return 1 if any(r["status"] == "failed" for r in data.rows) else 0


COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "runs": cmd_runs, "export": cmd_export,
            "download": cmd_download, "paper": cmd_paper}


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(str(exc).splitlines()[0] if str(exc) else "agd_viz: bad arguments", file=sys.stderr)
        return EXIT_USAGE
