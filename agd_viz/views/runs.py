"""The Runs page's view-model: the table of stored runs, its filters and sort, overlays of any runs
on any metric, exports, the command line that re-runs a run, and the ?run= deep link.

No streamlit, no torch (docs/architecture.md): the page (pages/runs.py) draws widgets and calls these.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from agd_viz import charts, datasets, fmt, optspec
from agd_viz.store import ACTIVE_STATUSES, LAYER_METRICS, SCALAR_METRICS, STATUSES
from agd_viz.views import links

RUN_PARAM = "run"
MAX_LINKED = 20  # runs one link may open: an overlay of more is unreadable anyway

# Table columns: (frame column, header shown).
COLUMNS = {
    "id": "run",
    "name": "name",
    "label": "optimiser",
    "status": "status",
    "dataset": "dataset",
    "depth": "depth",
    "width": "width",
    "progress": "steps",
    "final_train_loss": "train loss",
    "final_train_acc": "train acc",
    "final_test_acc": "test acc",
    "mean_eta": "mean η",
    "group_id": "group",
    "created": "created",
}
SORTS = ("id", "created", "status", "dataset", "depth", "width", "label", "final_train_loss",
         "final_train_acc", "final_test_acc", "mean_eta")

METRICS = {m: charts.metric_name(m) for m in (*SCALAR_METRICS, *LAYER_METRICS)}
SCALAR = frozenset(SCALAR_METRICS)
LAYERED = frozenset(LAYER_METRICS)


# -------------------------------------------------------------------------------------------------
# The table


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def label_of(row: Mapping) -> str:
    """The optimiser as the table names it: its canonical label, so "adam lr=1e-2" from the CLI
    and "adam lr=0.01" from the app are the same optimiser, and filter as one."""
    return optspec.label(row.get("label") or row.get("optimizer") or "")


def runs_frame(rows: Sequence[Mapping]) -> pd.DataFrame:
    """One row per stored run (as `Store.list_runs` returns them), newest first."""
    out = []
    for r in rows:
        summary = r.get("summary") or {}
        spec = r.get("spec") or {}
        step, steps = r.get("step") or 0, r.get("steps") or spec.get("steps")
        out.append({
            "id": int(r["id"]), "name": r.get("name") or "", "label": label_of(r),
            "optimizer": r["optimizer"], "status": r["status"], "dataset": spec.get("dataset"),
            "depth": spec.get("depth"), "width": spec.get("width"),
            "progress": f"{step:,} / {steps:,}" if steps else f"{step:,}",
            "final_train_loss": _num(summary.get("final_train_loss")),
            "final_train_acc": _num(summary.get("final_train_acc")),
            "final_test_acc": _num(summary.get("final_test_acc")),
            "mean_eta": _num(summary.get("mean_eta")),
            "group_id": r.get("group_id"),
            "created": pd.to_datetime(r.get("created"), unit="s") if r.get("created") else pd.NaT,
            "error": r.get("error"),
        })
    df = pd.DataFrame(out, columns=[*COLUMNS, "optimizer", "error"])
    for col in ("depth", "width", "group_id"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    return df


@dataclass
class Filters:
    """What the table shows: empty means no restriction on that column."""

    statuses: Sequence[str] = ()
    datasets: Sequence[str] = ()
    optimizers: Sequence[str] = ()  # labels, as the table shows them
    depths: Sequence[int] = ()
    widths: Sequence[int] = ()
    text: str = ""  # in the name or the optimiser, any case


def filter_options(df: pd.DataFrame) -> dict[str, list]:
    """The values each filter can take, from the runs there are."""
    def values(col):
        return sorted({v for v in df[col].dropna().tolist()}) if len(df) else []

    statuses = [s for s in STATUSES if len(df) and (df["status"] == s).any()]
    return {"statuses": statuses, "datasets": values("dataset"), "optimizers": values("label"),
            "depths": [int(v) for v in values("depth")], "widths": [int(v) for v in values("width")]}


def apply_filters(df: pd.DataFrame, f: Filters) -> pd.DataFrame:
    keep = pd.Series(True, index=df.index)
    for col, allowed in (("status", f.statuses), ("dataset", f.datasets), ("label", f.optimizers),
                         ("depth", f.depths), ("width", f.widths)):
        if allowed:
            keep &= df[col].isin(list(allowed)).fillna(False).astype(bool)
    text = (f.text or "").strip().lower()
    if text:
        keep &= (df["name"].str.lower().str.contains(text, regex=False)
                 | df["label"].str.lower().str.contains(text, regex=False))
    return df[keep]


def sort_frame(df: pd.DataFrame, by: str = "id", ascending: bool = False) -> pd.DataFrame:
    """Sorted by one column, missing values last, ties newest first."""
    if by not in df:
        raise ValueError(f"cannot sort by {by!r}; valid: {', '.join(SORTS)}")
    return df.sort_values([by, "id"], ascending=[ascending, False], na_position="last", kind="stable")


# -------------------------------------------------------------------------------------------------
# Deep link


def parse_run_param(raw: Any) -> tuple[list[int], list[str]]:
    """'?run=3' or '?run=1,2' -> ([1, 2], []); tokens that are not run ids come back second."""
    if raw is None:
        return [], []
    if isinstance(raw, (list, tuple)):
        raw = ",".join(str(x) for x in raw)
    ids, bad = [], []
    for tok in fmt.split_list(raw):
        rid = fmt.parse_id(tok)  # "²" passes str.isdigit and fails int(); 5,000 digits fail int()
        if rid is not None:
            if rid not in ids:
                ids.append(rid)
        else:
            bad.append(tok[:20])
    return ids[:MAX_LINKED], bad


def format_run_param(ids: Iterable[int]) -> str:
    return ",".join(str(int(i)) for i in ids)


# -------------------------------------------------------------------------------------------------
# Re-running a run


def rerun_command(spec: Mapping, optimizer: str | None = None, root: str | None = None,
                  db: str | None = None) -> str:
    """The command that trains this run again, exactly: same data, network, optimiser, seed, steps
    and cadence (the CLI's `train` of it gives back the spec). With `root` (the folder holding
    agd_viz) it works from any folder; with `db` the new run lands in that store."""
    opts = [optimizer] if optimizer else list(spec.get("optimizers") or ["agd"])
    args = ["python", "-m", "agd_viz", "train",
            "--dataset", str(spec.get("dataset", "digits")),
            "--depth", str(spec.get("depth")), "--width", str(spec.get("width"))]
    for o in opts:
        args += ["--optimizer", str(o)]
    for key, flag in (("steps", "--steps"), ("batch_size", "--batch-size"), ("seed", "--seed"),
                      ("device", "--device"), ("metrics", "--metrics")):
        if spec.get(key) is not None:
            args += [flag, str(spec[key])]
    for key, flag in (("eval_every", "--eval-every"), ("layer_every", "--layer-every")):
        if spec.get(key):
            args += [flag, str(spec[key])]
    if spec.get("same_init"):
        args.append("--same-init")
    if spec.get("loss", "xent") != "xent":
        args += ["--loss", str(spec["loss"])]
    augment = spec.get("augment")
    if augment is not None and bool(augment) != datasets.default_augment(str(spec.get("dataset", "digits"))):
        args.append("--augment" if augment else "--no-augment")
    for k, v in sorted((spec.get("data_options") or {}).items()):
        args += ["--data-option", f"{k}={_option_text(v)}"]
    if db:
        args += ["--db", str(db)]
    return (f"cd {shlex.quote(str(root))} && " if root else "") + shlex.join(args)


def _option_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def spec_json(spec: Mapping) -> str:
    """The run's spec as JSON: `RunSpec.from_dict(json.loads(...))` trains it again."""
    return json.dumps(dict(spec), indent=2, sort_keys=True)


# -------------------------------------------------------------------------------------------------
# Export


CONFIG_COLUMNS = ("dataset", "arch", "depth", "width", "batch_size", "steps", "seed", "optimizer", "same_init",
                  "metrics", "device")


def config_columns(row: Mapping) -> dict:
    """A run's settings as flat columns (its optimiser as the canonical spec, dataset options as
    `data.<name>`), so an exported table can be grouped by them."""
    spec = row.get("spec") or {}
    out = {k: spec.get(k) for k in CONFIG_COLUMNS if k != "optimizer"}
    parsed = optspec.try_parse(row.get("optimizer"))
    out["optimizer"] = parsed.spec if parsed is not None else row.get("optimizer")
    out.update({f"data.{k}": v for k, v in sorted((spec.get("data_options") or {}).items())})
    return {"status": row.get("status"), **{k: out.get(k) for k in CONFIG_COLUMNS},
            **{k: v for k, v in out.items() if k.startswith("data.")}}


def export_csv(store, run_ids: Sequence[int]) -> str:
    """Metrics of the runs as one CSV: `run_id`, the run's settings (`config_columns`), then
    `Store.export_run`'s columns (per step: the scalar metrics, then per-layer columns such as
    `w_fro[0]`)."""
    import io

    frames = []
    for rid in run_ids:
        text = store.export_run(int(rid), "csv")
        df = pd.read_csv(io.StringIO(text))
        config = config_columns(store.get_run(int(rid)) or {})
        for k, (name, value) in enumerate([("run_id", int(rid)), *config.items()]):
            df.insert(k, name, value)
        frames.append(df)
    if not frames:
        return ""
    return pd.concat(frames, ignore_index=True, sort=False).to_csv(index=False, lineterminator="\n")


def export_json(store, run_ids: Sequence[int]) -> str:
    """{"format": "agd_viz.runs", "runs": [one `Store.export_run` JSON document per run]}."""
    docs = [json.loads(store.export_run(int(rid), "json")) for rid in run_ids]
    return json.dumps({"format": "agd_viz.runs", "version": 1, "runs": docs}, allow_nan=False)


def export_name(run_ids: Sequence[int], ext: str) -> str:
    ids = list(run_ids)
    stem = f"agd-run-{ids[0]}" if len(ids) == 1 else f"agd-runs-{'-'.join(map(str, ids[:6]))}"
    return f"{stem}{'-etc' if len(ids) > 6 else ''}.{ext}"


# -------------------------------------------------------------------------------------------------
# Overlay


def run_data(store, rows: Sequence[Mapping], layers: bool = False) -> list[charts.RunData]:
    """The runs as the charts take them; per-layer frames only when a per-layer metric is shown
    (they are the heavy part of a read)."""
    frames = store.metrics_many([r["id"] for r in rows])
    out = []
    for r in rows:
        out.append(charts.RunData(
            run_id=int(r["id"]), label=_legend(r), optimizer=r["optimizer"], scalars=frames[r["id"]],
            layers=store.layer_metrics(r["id"]) if layers else None, status=r["status"]))
    return out


def _legend(r: Mapping) -> str:
    spec = r.get("spec") or {}
    shape = f" · {spec.get('depth')}×{spec.get('width')}" if spec.get("depth") else ""
    return f"#{r['id']} {label_of(r)}{shape}"


def layer_count(runs: Sequence[charts.RunData]) -> int:
    """Weight matrices of the deepest run with per-layer data (0 if none has any)."""
    n = 0
    for run in runs:
        if run.layers is not None and len(run.layers):
            n = max(n, int(run.layers["layer"].max()) + 1)
    return n


def smooth_layers(df: pd.DataFrame, metric: str, alpha: float) -> pd.DataFrame:
    """EMA (charts.ema) of one per-layer metric along steps, layer by layer."""
    if df is None or not len(df) or alpha <= 0 or metric not in df:
        return df
    out = df.copy()
    out[metric] = out.groupby("layer", sort=False)[metric].transform(lambda s: charts.ema(s.to_numpy(), alpha))
    return out


def overlay_figure(runs: Sequence[charts.RunData], metric: str, *, layers: Sequence[int] | None = None,
                   smoothing: float = 0.0, log_y: bool = False, x: str = "step"):
    """Any scalar metric (one line per run) or per-layer metric (one line per run and chosen
    layer; all layers if `layers` is empty) of the runs, on a common axis."""
    if metric in SCALAR:
        return charts.scalar_figure(runs, metric, smoothing, log_y, x)
    if metric not in LAYERED:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if smoothing > 0:
        runs = [charts.RunData(run_id=r.run_id, label=r.label, optimizer=r.optimizer, scalars=r.scalars,
                               layers=smooth_layers(r.layers, metric, smoothing), status=r.status)
                for r in runs]
    chosen = list(layers) if layers else None
    fig = charts.layer_lines_figure(runs, metric, chosen, x, log_y)
    if smoothing > 0:
        fig.update_layout(yaxis_title_text=f"{charts.metric_name(metric)} (EMA {smoothing:g})")
    return fig


def image_config(fmt: str = "png", filename: str = "agd-chart") -> dict:
    """Plotly's own modebar with its "download plot" button saving as `fmt` (png or svg)."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"image format must be png or svg, got {fmt!r}")
    return {"displayModeBar": True, "displaylogo": False,
            "toImageButtonOptions": {"format": fmt, "filename": filename, "scale": 2 if fmt == "png" else 1}}


# -------------------------------------------------------------------------------------------------
# Delete


def split_active(rows: Sequence[Mapping], ids: Iterable[int]) -> tuple[list[int], list[int]]:
    """(runs still queued or running, runs that are over) among `ids`."""
    status = {int(r["id"]): r["status"] for r in rows}
    wanted = [int(i) for i in ids if int(i) in status]
    return ([i for i in wanted if status[i] in ACTIVE_STATUSES],
            [i for i in wanted if status[i] not in ACTIVE_STATUSES])


def describe_runs(rows: Sequence[Mapping], ids: Iterable[int], limit: int = 8) -> str:
    """'#3 agd (finished), #4 adam lr=0.001 (running) and 2 more' — plain text."""
    by_id = {int(r["id"]): r for r in rows}
    parts = [f"#{i} {label_of(by_id[i])} ({by_id[i]['status']})"
             for i in ids if i in by_id]
    more = len(parts) - limit
    text = ", ".join(parts[:limit])
    return f"{text} and {more} more" if more > 0 else text


# -------------------------------------------------------------------------------------------------
# Hyperparameters: a final value against one setting, across runs

HPARAM_X = ("depth", "width", "batch_size", "optimizer")
HPARAM_METRICS = ("final_train_acc", "final_test_acc", "final_train_loss", "final_test_loss", "mean_eta")
# What else tells two runs apart; the seed never does (seeds of one setting are averaged).
_SETTINGS = ("dataset", "arch", "depth", "width", "batch_size", "steps", "optimizer")


def _settings(row: Mapping) -> dict:
    spec = row.get("spec") or {}
    out = {k: spec.get(k) for k in _SETTINGS if k != "optimizer"}
    out["optimizer"] = label_of(row)
    out.update({f"data.{k}": v for k, v in sorted((spec.get("data_options") or {}).items())})
    return out


def hparam_frame(rows: Sequence[Mapping], x: str, metric: str) -> pd.DataFrame:
    """The final `metric` of finished runs against setting `x` (depth, width, batch_size or
    optimizer): one row per (line, x) with the mean, lowest and highest value over the runs that
    differ only in their seed, and how many there are. A line is the optimiser and whichever other
    settings vary among these runs ("adam lr=0.001 · depth 8"), so runs of different networks are
    never averaged together."""
    if x not in HPARAM_X:
        raise ValueError(f"x must be one of {', '.join(HPARAM_X)}, got {x!r}")
    if metric not in HPARAM_METRICS:
        raise ValueError(f"metric must be one of {', '.join(HPARAM_METRICS)}, got {metric!r}")
    cols = ["line", "optimizer", "x", "mean", "lo", "hi", "n"]
    points = []
    for r in rows:
        value = _num((r.get("summary") or {}).get(metric))
        if r.get("status") != "finished" or not math.isfinite(value):
            continue
        settings = _settings(r)
        if settings.get(x) is None:
            continue
        points.append((settings, value))
    if not points:
        return pd.DataFrame(columns=cols)
    keys = sorted({k for s, _ in points for k in s})
    varying = [k for k in keys if k != x and len({repr(s.get(k)) for s, _ in points}) > 1]
    groups: dict[tuple, list[float]] = {}
    for s, value in points:
        parts = [s["optimizer"]] if x != "optimizer" else []
        parts += [f"{k.replace('_', ' ')} {s.get(k)}" for k in varying if k != "optimizer"]
        line = " · ".join(parts) or "all runs"
        groups.setdefault((line, s["optimizer"], s[x]), []).append(value)
    out = [(line, opt, xv, float(np.mean(v)), float(np.min(v)), float(np.max(v)), len(v))
           for (line, opt, xv), v in groups.items()]
    return pd.DataFrame(out, columns=cols)


# -------------------------------------------------------------------------------------------------
# The page's link: filters, sort, charts (only what differs from the defaults)

DASHBOARD_DEFAULT = ("loss", "acc")
URL_PARAMS = (
    links.Param("status", "rn_f_status", "list", ()),
    links.Param("dataset", "rn_f_dataset", "list", ()),
    links.Param("opt", "rn_f_opt", "list", ()),
    links.Param("depth", "rn_f_depth", "ints", ()),
    links.Param("width", "rn_f_width", "ints", ()),
    links.Param("q", "rn_f_text", "text", ""),
    links.Param("sort", "rn_sort", "choice", "id", SORTS),
    links.Param("asc", "rn_asc", "bool", False),
    links.Param("metric", "rn_metrics", "list", DASHBOARD_DEFAULT, tuple(METRICS)),
    links.Param("smooth", "rn_smooth", "float", 0.0, lo=0.0, hi=0.99),
    links.Param("logy", "rn_logy", "bool", False),
    links.Param("x", "rn_x", "choice", "step", ("step", "time")),
    links.Param("hx", "rn_hp_x", "choice", "width", HPARAM_X),
    links.Param("hm", "rn_hp_metric", "choice", "final_train_acc", HPARAM_METRICS),
)


def link_choices(options: Mapping[str, list]) -> dict[str, list]:
    """The values a link's filters may take: those of the runs there are (`filter_options`)."""
    return {"status": options["statuses"], "dataset": options["datasets"], "opt": options["optimizers"],
            "depth": options["depths"], "width": options["widths"]}
