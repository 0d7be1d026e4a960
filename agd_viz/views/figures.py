"""The paper's figures, rerun here (`agd_viz.paper.REPRODUCTIONS`): start one as a stored group of
kind "figure", read its runs back, reduce them the way the paper plots them (per epoch: η's mean,
min and max, the objective, accuracies, the relative update), and set the paper's numbers beside
ours. No streamlit, no torch; the figures themselves are `agd_viz.charts.figures`.

A reproduction is one group: {"figure": key, "scale": "digits" | "cifar10"} as its spec, one job per
RunSpec of the reproduction (a comparison, a grid cell, a batch size). The Paper page starts one
with a click; `python -m agd_viz paper KEY --scale SCALE` writes the same group from the shell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from agd_viz import cost, datasets, fmt, optspec, paper
from agd_viz.charts import figures as fig_charts
from agd_viz.store import ACTIVE_STATUSES
from agd_viz.views.paper import training_shape

__all__ = ["KIND", "FigureData", "group_spec", "latest_group", "groups_of", "submit", "load", "steps_per_epoch",
           "per_epoch", "rel_update_per_epoch", "lr_grid", "comparison", "eta_phases", "SCALE_TITLES", "figures", "estimate_seconds", "where_in_app", "items_table", "progress_text", "section_text",
           "size_text", "missing_text", "group_text"]

KIND = "figure"
SCALE_TITLES = {"digits": "digits (laptop, one click)", "cifar10": "CIFAR-10 (the paper's scale, command line)"}


def group_spec(key: str, scale: str) -> dict:
    return {"figure": key, "scale": scale, "title": paper.ref(key)}


def groups_of(store, key: str | None = None, scale: str | None = None) -> list[dict]:
    """Stored reproductions, newest first, of figure `key` at `scale` (None: any)."""
    out = []
    for g in store.list_groups(kind=KIND):
        spec = g.get("spec") or {}
        if (key is None or spec.get("figure") == key) and (scale is None or spec.get("scale") == scale):
            out.append(g)
    return out


def latest_group(store, key: str, scale: str) -> dict | None:
    found = groups_of(store, key, scale)
    return found[0] if found else None


def submit(manager, key: str, scale: str = "digits", session: str | None = None) -> tuple[int, list[int]]:
    """Queue reproduction `key` at `scale` as one group of kind "figure": every spec one job."""
    rep = paper.reproduction(key)
    return manager.submit_group(rep.run_specs(scale), kind=KIND, name=f"{rep.label} · {scale}",
                                session=session, group_spec=group_spec(key, scale))


# -------------------------------------------------------------------------------------------------
# Reading a reproduction back


@dataclass
class FigureData:
    """One stored reproduction: its runs (store rows, by id), their scalar metrics, and per-layer
    metrics where the figure needs them (Figure 5's relative update)."""

    key: str
    scale: str
    group_id: int
    rows: list[dict]
    scalars: dict[int, pd.DataFrame]
    layers: dict[int, pd.DataFrame] = field(default_factory=dict)

    @property
    def finished(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "finished"]

    @property
    def active(self) -> bool:
        return any(r["status"] in ACTIVE_STATUSES for r in self.rows)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    def wall_seconds(self) -> float | None:
        """From the first run's start to the last one's end (None until one has ended)."""
        starts = [r["started"] for r in self.rows if r.get("started")]
        ends = [r["ended"] for r in self.rows if r.get("ended")]
        return (max(ends) - min(starts)) if starts and ends else None

    def train_seconds(self) -> float:
        """Training time summed over jobs: one per distinct spec (runs of a job share its time)."""
        per_job: dict[tuple, float] = {}
        for r in self.finished:
            spec = r.get("spec") or {}
            job = (spec.get("depth"), spec.get("width"), spec.get("batch_size"))
            per_job[job] = max(per_job.get(job, 0.0), float((r.get("summary") or {}).get("elapsed_s") or 0.0))
        return sum(per_job.values())


def progress_text(fd: FigureData) -> str:
    """"12 of 15 runs ended · 40 s so far · 3 queued"."""
    counts = fd.counts
    done = sum(v for k, v in counts.items() if k not in ACTIVE_STATUSES)
    wall = fd.wall_seconds()
    text = f"{done} of {len(fd.rows)} runs ended"
    if wall:
        text += f" · {fmt.duration(wall)} {'so far' if fd.active else 'from first start to last end'}"
    return text + "".join(f" · {n} {s}" for s, n in sorted(counts.items()) if s != "finished")


def section_text(key: str) -> dict[str, str]:
    """The Paper page's words for figure `key`: title, what the paper says, how ours differs, the
    button's label (plain text: the page escapes it)."""
    item, rep = paper.ITEMS[key], paper.reproduction(key)
    return {"title": f"{item.label}: {item.name}", "says": f"({item.section}): {item.says}",
            "differs": f"How this differs: {rep.note}", "run": f"Run {item.label} on digits"}


def size_text(key: str, seconds: float) -> str:
    """"10 jobs, 10 runs · about 1 min here"."""
    specs = paper.reproduction(key).specs["digits"]
    runs = sum(len(s["optimizers"]) for s in specs)
    return f"{fmt.plural(len(specs), 'job')}, {runs} runs · about {fmt.estimate(seconds)} here"


def missing_text(key: str, scale: str) -> str:
    """What to do when the store has no reproduction of `key` at `scale` yet."""
    how = ("Press the button above." if scale == "digits"
           else f"Run {paper.reproduction(key).command(scale)} (the command above).")
    return f"No {paper.ref(key)} reproduction at {scale} scale in the run store yet. {how}"


def group_text(group: Mapping) -> str:
    """"Group 12 · Figure 6 · digits" (its name as stored: the CLI's --name may be anything)."""
    return " · ".join(str(v) for v in (f"Group {group['id']}", group.get("name")) if v)


def load(store, group: Mapping, layers: bool | None = None) -> FigureData:
    spec = group.get("spec") or {}
    key = spec.get("figure", "")
    rows = sorted(store.list_runs(group_id=group["id"]), key=lambda r: r["id"])
    ids = [r["id"] for r in rows]
    scalars = store.metrics_many(ids) if ids else {}
    want_layers = key == "fig5" if layers is None else layers
    per_layer = {i: store.layer_metrics(i) for i in ids} if want_layers else {}
    return FigureData(key, spec.get("scale", ""), int(group["id"]), rows, scalars, per_layer)


def steps_per_epoch(spec: Mapping[str, Any]) -> int:
    """Steps of one pass over the training set, as agd_viz.train draws batches (the remainder of
    each permutation is dropped)."""
    n = datasets.shape(spec.get("dataset", "digits"), spec.get("data_options") or {}).n_train
    return max(1, n // max(1, min(int(spec.get("batch_size", 128)), n)))


def per_epoch(scalars: pd.DataFrame, epoch_steps: int) -> pd.DataFrame:
    """The paper's per-epoch view of one run: for each epoch e ≥ 1 (steps (e−1)·k+1 … e·k) η's
    mean, min and max, the objective (mean minibatch loss) and the mean minibatch accuracy; the
    evaluations at the epoch's last step (train_loss, train_acc, test_loss, test_acc). Epoch 0:
    the evaluation at initialisation."""
    cols = ["epoch", "eta_mean", "eta_min", "eta_max", "objective", "batch_acc", "train_loss", "train_acc",
            "test_loss", "test_acc"]
    if scalars is None or not len(scalars):
        return pd.DataFrame(columns=cols)
    df = scalars.copy()
    df["epoch"] = np.ceil(df["step"].to_numpy() / epoch_steps).astype(int)
    train = df[df["step"] > 0].groupby("epoch")
    out = pd.DataFrame({
        "eta_mean": train["eta"].mean(), "eta_min": train["eta"].min(), "eta_max": train["eta"].max(),
        "objective": train["loss"].mean(), "batch_acc": train["acc"].mean(),
    })
    evals = df[np.isfinite(df["test_acc"]) & ((df["step"] % epoch_steps == 0) | (df["step"] == df["step"].max()))]
    evals = evals.groupby("epoch")[["train_loss", "train_acc", "test_loss", "test_acc"]].last()
    out = out.join(evals, how="outer").reset_index().rename(columns={"index": "epoch"})
    return out[cols].sort_values("epoch").reset_index(drop=True)


def rel_update_per_epoch(layers: pd.DataFrame, epoch_steps: int) -> pd.DataFrame:
    """Figure 5's right panel: (1/L) Σ_k ‖ΔW_k‖_F/‖W_k‖_F at every logged step, then its max, min
    and mean over each epoch."""
    cols = ["epoch", "rel_mean", "rel_min", "rel_max"]
    if layers is None or not len(layers) or "rel_update" not in layers:
        return pd.DataFrame(columns=cols)
    per_step = layers[layers["step"] > 0].groupby("step")["rel_update"].mean().dropna()
    if not len(per_step):
        return pd.DataFrame(columns=cols)
    epoch = np.ceil(per_step.index.to_numpy() / epoch_steps).astype(int)
    g = per_step.groupby(epoch)
    return pd.DataFrame({"epoch": g.mean().index, "rel_mean": g.mean().to_numpy(), "rel_min": g.min().to_numpy(),
                         "rel_max": g.max().to_numpy()})


def eta_phases(epochs: pd.DataFrame) -> dict | None:
    """How η moved over a run, per epoch means: its first value, its peak (and the epoch), its last,
    rise = peak/first and fall = last/peak. None without η."""
    eta = epochs.dropna(subset=["eta_mean"]) if len(epochs) else epochs
    if not len(eta):
        return None
    values = eta["eta_mean"].to_numpy()
    k = int(np.argmax(values))
    return {"first": float(values[0]), "peak": float(values[k]), "peak_epoch": int(eta["epoch"].iloc[k]),
            "last": float(values[-1]), "rise": float(values[k] / values[0]) if values[0] > 0 else math.nan,
            "fall": float(values[-1] / values[k]) if values[k] > 0 else math.nan}


def lr_grid(rows: Sequence[Mapping]) -> pd.DataFrame:
    """Figure 1 (middle): one row per finished or diverged run: family, lr (None for AGD), final
    train and test accuracy (NaN if it diverged), status."""
    out = []
    for r in rows:
        parsed = optspec.try_parse(r.get("optimizer"))
        if parsed is None or r.get("status") not in ("finished", "diverged"):
            continue
        s = r.get("summary") or {}
        ok = r["status"] == "finished"
        out.append({"family": parsed.name, "lr": parsed.lr, "run_id": r["id"], "status": r["status"],
                    "train_acc": s.get("final_train_acc") if ok else math.nan,
                    "test_acc": s.get("final_test_acc") if ok else math.nan, "steps": s.get("steps")})
    return pd.DataFrame(out, columns=["family", "lr", "run_id", "status", "train_acc", "test_acc", "steps"])


# -------------------------------------------------------------------------------------------------
# Paper beside ours


def _acc(v) -> str:
    return fmt.percent(v) if v is not None and np.isfinite(v) else "–"


def _summary(row: Mapping, key: str):
    v = (row.get("summary") or {}).get(key)
    return float(v) if v is not None else math.nan


def _by_opt(fd: FigureData) -> dict[str, dict]:
    return {r["optimizer"]: r for r in fd.finished}


def comparison(fd: FigureData) -> list[dict]:
    """Rows "Paper" | "Measured here" for a stored reproduction (empty until a run has finished)."""
    if not fd.finished:
        return []
    rows = _COMPARE.get(fd.key, lambda fd: [])(fd)
    return [{"Paper": paper_text, "Measured here": ours} for paper_text, ours in rows]


def _fig1_left(fd):
    runs = _by_opt(fd)
    ours = "; ".join(f"{optspec.label(o)}: {_acc(_summary(r, 'final_train_acc'))} train, "
                     f"{_acc(_summary(r, 'final_test_acc'))} test" for o, r in runs.items())
    return [(paper.PAPER_RESULTS["fcn32_defaults"].display, ours)]


def _fig1_middle(fd):
    grid = lr_grid(fd.rows)
    agd = grid[grid["family"] == "agd"]
    parts, lines = [], []
    for fam in ("adam", "sgd"):
        sub = grid[grid["family"] == fam].dropna(subset=["test_acc"])
        if len(sub):
            best = sub.loc[sub["test_acc"].idxmax()]
            parts.append(f"best {optspec.title(fam)} {_acc(best['test_acc'])} test (lr {best['lr']:g})")
            lines.append(f"tuning {optspec.title(fam)} took {int((grid['family'] == fam).sum())} runs")
    if len(agd):
        parts.insert(0, f"AGD {_acc(agd['test_acc'].iloc[0])} test")
        lines.append("AGD took 1")
    steps = int(grid["steps"].dropna().max()) if len(grid["steps"].dropna()) else 0
    seconds = fd.train_seconds()
    cost = (f"{'; '.join(lines)} ({len(grid)} runs × {steps:,} steps = {len(grid) * steps:,} steps in all, "
            f"trained side by side in {fmt.duration(seconds)}, about {fmt.duration(seconds / max(len(grid), 1))} "
            "a run)") if len(grid) else ""
    return [(paper.PAPER_RESULTS["resnet18_lr_grid"].display, ", ".join(parts)),
            ("(not a number of the paper: what the grid cost here)", cost)]


def _fig4(fd):
    runs = _by_opt(fd)
    agd = next((r for o, r in runs.items() if optspec.family(o) == "agd"), None)
    adam = {o: _summary(r, "final_test_acc") for o, r in runs.items() if optspec.family(o) == "adam"}
    out = []
    if agd is not None:
        out.append((paper.PAPER_RESULTS["fcn16_cifar10_agd"].display, f"AGD {_acc(_summary(agd, 'final_test_acc'))}"))
    finite = {o: v for o, v in adam.items() if np.isfinite(v)}
    if finite:
        best = max(finite, key=finite.get)
        out.append((paper.PAPER_RESULTS["fcn16_cifar10_adam"].display,
                    f"best Adam {_acc(finite[best])} ({optspec.label(best)}, of {len(adam)} rates)"))
    return out


def _fig5(fd):
    runs = _by_opt(fd)
    parts = [f"{optspec.label(o)}: final train loss {fmt.number(_summary(r, 'final_train_loss'))}, test "
             f"{_acc(_summary(r, 'final_test_acc'))}" for o, r in runs.items()]
    return [(paper.PAPER_RESULTS["fcn8_w256_best_lrs"].display, "; ".join(parts))]


def _cells(fd) -> pd.DataFrame:
    out = []
    for r in fd.finished:
        spec = r.get("spec") or {}
        out.append({"depth": spec.get("depth"), "width": spec.get("width"), "optimizer": "agd", "status": "finished",
                    "final_test_acc": _summary(r, "final_test_acc"), "final_train_loss": _summary(r, "final_train_loss"),
                    "run_id": r["id"], "spec": spec})
    return pd.DataFrame(out)


def _fig6(fd):
    cells = _cells(fd)
    if not len(cells):
        return []
    best, worst = cells.loc[cells["final_test_acc"].idxmax()], cells.loc[cells["final_test_acc"].idxmin()]
    out = [(paper.PAPER_RESULTS["fcn_grid_best"].display,
            f"best test cell: depth {best['depth']}, width {best['width']}, {_acc(best['final_test_acc'])}"),
           (paper.PAPER_RESULTS["fcn_grid_worst"].display,
            f"worst test cell: depth {worst['depth']}, width {worst['width']}, {_acc(worst['final_test_acc'])}"),
           (paper.PAPER_RESULTS["fcn_grid_shape"].display, training_shape(cells) or "–")]
    phases = [eta_phases(per_epoch(fd.scalars.get(r), steps_per_epoch(s))) for r, s in zip(cells["run_id"], cells["spec"])]
    phases = [p for p in phases if p]
    if phases:
        both = sum(1 for p in phases if p["rise"] > 1.2 and p["fall"] < 0.5)
        rise = np.median([p["rise"] for p in phases])
        out.append((paper.PAPER_RESULTS["fcn_grid_phases"].display,
                    f"η rose to its peak then fell below half of it in {both} of {len(phases)} cells (median rise "
                    f"{rise:.2g}× from the first epoch's mean)"))
    return out


def _fig7(fd):
    """Each batch size beside the paper's at the same place in its list (digits has 1,438 training
    images: its two largest batches stand for the paper's 1024 and 4096), and how far η dipped."""
    out = []
    papers = (32, 128, 1024, 4096)
    runs = sorted(fd.finished, key=lambda r: (r.get("spec") or {}).get("batch_size", 0))
    ours = sorted({(r.get("spec") or {}).get("batch_size") for r in fd.rows})
    for r in runs:
        spec = r.get("spec") or {}
        b = spec.get("batch_size")
        theirs = papers[ours.index(b)] if b in ours and ours.index(b) < len(papers) else None
        paper_text = paper.PAPER_RESULTS[f"fcn4_batch{theirs}"].display if theirs else "–"
        dip = _eta_dip(fd.scalars.get(r["id"]), steps_per_epoch(spec))
        text = f"batch {b}: {_acc(_summary(r, 'final_test_acc'))} test"
        if dip is not None:
            text += f"; η fell to {dip:.0%} of its first value in the first 5 epochs"
        out.append((paper_text, text))
    out.append((paper.PAPER_RESULTS["fcn4_batch_eta"].display, "the η panel; the dips in the rows above"))
    return out


def _eta_dip(scalars: pd.DataFrame | None, epoch_steps: int, epochs: int = 5) -> float | None:
    """The lowest η over the first `epochs` epochs as a fraction of η at step 1."""
    if scalars is None or not len(scalars):
        return None
    early = scalars[(scalars["step"] > 0) & (scalars["step"] <= epochs * epoch_steps)]["eta"].dropna().to_numpy()
    return float(early.min() / early[0]) if len(early) > 1 and early[0] > 0 else None


_COMPARE = {"fig1_left": _fig1_left, "fig1_middle": _fig1_middle, "fig4": _fig4, "fig5": _fig5, "fig6": _fig6,
            "fig7": _fig7}


# -------------------------------------------------------------------------------------------------
# The figures of a reproduction


def _series(fd: FigureData, rows: Sequence[Mapping] | None = None) -> list[dict]:
    out = []
    for r in rows if rows is not None else fd.rows:
        spec = r.get("spec") or {}
        k = steps_per_epoch(spec)
        out.append({"label": r.get("label") or optspec.label(r["optimizer"]), "optimizer": r["optimizer"],
                    "epochs": per_epoch(fd.scalars.get(r["id"]), k), "spec": spec,
                    "rel": rel_update_per_epoch(fd.layers.get(r["id"]), k) if r["id"] in fd.layers else None})
    return out


def figures(fd: FigureData) -> list[tuple[str, Any]]:
    """(name, Plotly figure) pairs that redraw the paper's figure from this reproduction's runs."""
    started = [r for r in fd.rows if r["id"] in fd.scalars and len(fd.scalars[r["id"]])]
    if fd.key == "fig1_left":
        return [("accuracy", fig_charts.accuracy_curves_figure(_series(fd, started)))]
    if fd.key == "fig1_middle":
        grid = lr_grid(fd.rows)
        n = int((grid["family"] != "agd").sum()) if len(grid) else 0
        return [("lr_grid", fig_charts.lr_grid_figure(grid, f"the grid: {n} runs; AGD: 1" if n else ""))]
    if fd.key == "fig4":
        series = _series(fd, started)
        adam = [s for s in series if optspec.family(s["optimizer"]) == "adam"]
        best = _best_by_test(fd, adam)
        keep = [s for s in series if optspec.family(s["optimizer"]) == "agd"] + ([best] if best else [])
        return [("epochs", fig_charts.epoch_figure(keep, "fig4", "eta"))]
    if fd.key == "fig5":
        series = _series(fd, started)
        return [("rel_update", fig_charts.epoch_figure(series, "fig5", "rel_update"))]
    if fd.key == "fig6":
        cells = []
        for r in started:
            spec = r.get("spec") or {}
            cells.append({"depth": spec.get("depth"), "width": spec.get("width"),
                          "epochs": per_epoch(fd.scalars[r["id"]], steps_per_epoch(spec))})
        return [("eta", fig_charts.cells_figure(cells, "eta")), ("objective", fig_charts.cells_figure(cells, "objective"))]
    if fd.key == "fig7":
        series = []
        for r in started:
            spec, df = r.get("spec") or {}, fd.scalars[r["id"]]
            k = steps_per_epoch(spec)
            e = per_epoch(df, k)
            # As the paper plots it: every iteration of the first epoch, then once per epoch.
            first = df[(df["step"] > 0) & (df["step"] <= k)]
            later = e[e["epoch"] >= 2]
            series.append({"batch": spec.get("batch_size"),
                           "epoch_x": np.r_[first["step"].to_numpy() / k, later["epoch"].to_numpy()],
                           "eta": np.r_[first["eta"].to_numpy(), later["eta_mean"].to_numpy()], "epochs": e})
        return [("batches", fig_charts.batch_figure(series))]
    return []


def _best_by_test(fd: FigureData, series: list[dict]) -> dict | None:
    """The series whose run ended with the highest final test accuracy (the paper's "tuned")."""
    acc = {r["optimizer"]: _summary(r, "final_test_acc") for r in fd.finished}
    ranked = [s for s in series if np.isfinite(acc.get(s["optimizer"], math.nan))]
    if not ranked:
        return series[0] if series else None
    best = max(ranked, key=lambda s: acc[s["optimizer"]])
    return {**best, "label": f"{best['label']} (best of {len(series)} Adam rates)"}


def estimate_seconds(key: str, scale: str = "digits", speed: "cost.Speed | None" = None, workers: int = 1) -> float:
    """Modelled wall time of a reproduction through the app: every job's time plus a worker's
    start-up each, `workers` jobs at a time."""
    specs = paper.reproduction(key).run_specs(scale)
    total = sum(cost.run_seconds(s, speed, startup=True) for s in specs)
    return total / max(1, min(workers, len(specs)))


def where_in_app(key: str) -> str:
    """Where the app shows or reruns item `key` of the paper."""
    if key in paper.REPRODUCTIONS:
        return "Paper page: one click on digits; `python -m agd_viz paper " + key + " --scale cifar10` at the paper's scale"
    if key == "fig1":
        return "Paper page: its left and middle panels"
    if key in ("fig1_right",):
        return "not rerun here: ResNet-50 on ImageNet is not built by this app"
    if key in ("fig2", "fig3", "table2"):
        return "not redrawn: a diagram or table of theory frameworks"
    if key == "table1":
        return "How AGD works, section 1"
    if key in ("lemma8", "assumption2"):
        return "How AGD works, section 4; the Live page's G panel and gradient stable rank"
    return "How AGD works, sections 3–4"


def items_table() -> pd.DataFrame:
    """Every item of the paper the app cites (agd_viz.paper.ITEMS): label, section, name, what it
    says and where the app shows it."""
    return pd.DataFrame([{"Item": it.label, "Section": it.section, "Name": it.name, "What it says": it.says,
                          "In this app": where_in_app(k)} for k, it in paper.ITEMS.items()])
