"""The Sweep page's view-model: its form (the grid and the optimisers of every cell), the results of
a stored sweep as one frame (a row per cell and optimiser), and the per-cell comparison of AGD with
a baseline's best learning rate. The sweep itself is `agd_viz.spec.SweepConfig`; its figures are
`agd_viz.charts` (sweep grids). No streamlit, no torch.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from agd_viz import fmt, optspec, paper
from agd_viz.spec import SweepConfig
from agd_viz.store import ACTIVE_STATUSES, FINAL_STATUSES
from agd_viz.views.live_form import RATE_OPTIMIZERS, parse_rates

DEFAULT_CONFIG = SweepConfig()
BASELINES = RATE_OPTIMIZERS  # baselines with learning rates to pick the best of
DEFAULT_RATES = {n: f"{optspec.OPTIMIZERS[n].defaults['lr']:g}" for n in BASELINES}
PENDING = "pending"  # a cell of the sweep's grid with no run (yet): shown, but nothing to wait for

RESULT_COLUMNS = ("run_id", "optimizer", "label", "depth", "width", "status", "final_train_loss",
                  "final_train_acc", "final_test_loss", "final_test_acc", "mean_eta", "step",
                  "steps", "elapsed_s", "error")
VALUES = ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc", "mean_eta")


# -------------------------------------------------------------------------------------------------
# The form


def optimizer_specs(agd: bool, rates: Mapping[str, str | None], more: str = "") -> list[str]:
    """The optimisers of a sweep from the page's form: AGD (no learning rate) and each chosen
    baseline at each of its rates: ["agd", "adam:lr=0.0001", "adam:lr=0.001"]. `rates` maps a
    baseline to its rate list ("1e-4, 1e-3"), None for a baseline left out; `more` holds any
    other optimiser specs separated by spaces or semicolons ("prodigy; sgd:lr=0.1,momentum=0.9").
    ValueError says which entry is wrong."""
    out = ["agd"] if agd else []
    extra = [t for t in re.split(r"[;\s]+", more or "") if t]
    for text in extra:
        try:
            optspec.parse(text)
        except ValueError as exc:
            raise ValueError(f"more optimisers: {exc}") from None
    for name in BASELINES:
        text = rates.get(name)
        if text is None:
            continue
        try:
            out += [f"{name}:lr={r:g}" for r in parse_rates(text)]
        except ValueError as exc:
            raise ValueError(f"{name} learning rates: {exc}") from None
    return list(dict.fromkeys(out + extra))


def baseline_families(optimizers: Iterable[str]) -> list[str]:
    """Baselines of the sweep that have learning rates to pick the best of, in form order."""
    have = {optspec.family(o) for o in optimizers}
    return [f for f in BASELINES if f in have]


PAPER_PRESETS = {key: p for key, p in paper.PRESETS.items() if p.kind == "sweep"}
PAGE_CAPTION = (
    "Train every optimiser at every depth and width, in the background, and compare them cell by cell. "
    f"AGD needs no learning rate at any size. The paper's depth × width grid ({paper.cite('fig6')}) trains AGD "
    "alone; whether a baseline's best rate moves with depth and width is this page's own measurement (the "
    f"paper's {paper.ref('table1')} says only that Adam and SGD give no guidance on scaling with the architecture).")
PRESETS_CAPTION = (f"Grids that rerun {paper.cite('fig6')}; the paper's numbers are shown beside this sweep's as its "
                   "runs finish. Every figure of the paper, one click each: the Paper page.")


def paper_preset_form(key: str) -> dict[str, Any]:
    """The page's form for a sweep preset of agd_viz.paper: depths and widths (text), dataset,
    steps, batch_size, full (per-layer metrics), agd (bool), rates (baseline -> rate text, None
    when left out), lr_free (names ticked) and more (any other optimiser specs)."""
    preset = PAPER_PRESETS[key]
    return _form_of(preset.spec, preset.depths, preset.widths)


def form_of_config(config: SweepConfig) -> dict[str, Any]:
    """The page's form for a stored sweep (what `paper_preset_form` returns, with its seed and
    device): opening a sweep puts its grid and settings in the form."""
    return {**_form_of(config.to_dict(), config.depths, config.widths), "seed": config.seed, "device": config.device}


def form_state(form: Mapping[str, Any]) -> dict[str, Any]:
    """A form (`paper_preset_form`, `form_of_config`) as the values of the Sweep page's widgets
    (keys "sw_…"), every field at once: a baseline left out keeps its default rates, unticked."""
    out = dict(sw_depths=form["depths"], sw_widths=form["widths"], sw_dataset=form["dataset"], sw_steps=form["steps"],
               sw_batch=form["batch_size"], sw_full=form["full"], sw_use_agd=form["agd"], sw_more=form["more"],
               sw_loss=form.get("loss", "xent"))
    out.update({f"sw_{k}": form[k] for k in ("seed", "device") if k in form})
    for name, rates in form["rates"].items():
        out[f"sw_use_{name}"] = rates is not None
        out[f"sw_lr_{name}"] = rates if rates is not None else DEFAULT_RATES[name]
    out.update({f"sw_use_{name}": name in form["lr_free"] for name in optspec.names("options")})
    return out


def _form_of(spec: Mapping[str, Any], depths: Iterable[int], widths: Iterable[int]) -> dict[str, Any]:
    rates: dict[str, list[str]] = {name: [] for name in BASELINES}
    agd, lr_free, more = False, [], []
    for text in spec.get("optimizers") or ():
        parsed = optspec.try_parse(text)
        if parsed is None:
            more.append(str(text))
            continue
        changed = set(parsed.changed)
        if parsed.is_agd and not changed:
            agd = True
        elif parsed.name in BASELINES and changed <= {"lr"}:
            rates[parsed.name].append(dict(parsed.given).get("lr", f"{parsed.lr:g}"))  # as the preset spells it
        elif parsed.info.kind == "options" and not changed:
            lr_free.append(parsed.name)
        else:
            more.append(parsed.spec)
    return dict(depths=fmt.sizes(depths), widths=fmt.sizes(widths),
                dataset=spec.get("dataset", "digits"), steps=int(spec.get("steps", 300)),
                batch_size=int(spec.get("batch_size", 128)), full=spec.get("metrics") == "full",
                agd=agd, rates={k: ", ".join(v) if v else None for k, v in rates.items()},
                lr_free=lr_free, more="; ".join(more), loss=spec.get("loss", "xent"))


def paper_preset_note(key: str) -> str | None:
    """For a preset made for a GPU: that it is slow on a CPU."""
    preset = PAPER_PRESETS[key]
    if not preset.gpu:
        return None
    return (f"Made for a GPU: {preset.spec.get('steps', 0):,} steps per run on "
            f"{len(preset.depths) * len(preset.widths)} networks is slow on a CPU (see the estimate "
            "under New sweep). Choose device cuda if this server has one, or fewer steps for a first look.")


def describe(group_id: int, config: SweepConfig | None) -> str:
    if config is None:
        return f"Sweep {group_id}"
    from agd_viz import datasets

    return (f"{datasets.title(config.dataset)} · depths {fmt.sizes(config.depths)} × widths "
            f"{fmt.sizes(config.widths)} · {', '.join(config.optimizers)} · {config.steps:,} steps · batch "
            f"{config.batch_size} · seed {config.seed}"
            + (" · square loss" if config.loss == "square" else "") + (" · augmented (crop + flip)" if config.augment else ""))


def linked_sweep(raw: Any, sweep_ids: Sequence[int]) -> tuple[int | None, str | None]:
    """The sweep a `?sweep=` link opens, or (None, a note saying the link names no stored sweep).
    Ids are read with `fmt.parse_id`: "²" passes `str.isdigit` and 5,000 digits fail `int`."""
    sweep_id = fmt.parse_id(raw)
    if sweep_id is not None and sweep_id in sweep_ids:
        return sweep_id, None
    return None, f"The link's sweep {str(raw)[:20]!r} is not in the run store; showing your latest sweep instead."


def config_of(group: Mapping) -> SweepConfig | None:
    """The SweepConfig of a stored sweep group, or None if its spec no longer reads as one."""
    try:
        return SweepConfig.from_dict(group.get("spec") or {})
    except (ValueError, TypeError):
        return None


# -------------------------------------------------------------------------------------------------
# Results


def _finite(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def results_frame(rows: Sequence[Mapping], config: SweepConfig | None = None) -> pd.DataFrame:
    """One row per (cell, optimiser) of a sweep: each stored run's status and summary values;
    with `config`, cells not started yet appear as status "pending" (NaN values), so heatmaps
    show the whole grid from the start."""
    out = []
    labels: dict[str, str] = {}
    for r in rows:
        spec, summary = r.get("spec") or {}, r.get("summary") or {}
        opt = str(r.get("optimizer"))
        labels.setdefault(opt, r.get("label") or optspec.label(opt))
        out.append({
            "run_id": int(r["id"]), "optimizer": opt, "label": labels[opt],
            "depth": spec.get("depth"), "width": spec.get("width"), "status": r.get("status"),
            **{k: _finite(summary.get(k)) for k in VALUES},
            "step": r.get("step") or 0, "steps": r.get("steps") or spec.get("steps"),
            "elapsed_s": _finite(summary.get("elapsed_s")), "error": r.get("error"),
        })
    if config is not None:
        have = {(o["depth"], o["width"], o["optimizer"]) for o in out}
        for d, w in config.cells():
            for opt in config.optimizers:
                if (d, w, opt) not in have:
                    out.append({"run_id": None, "optimizer": opt, "label": labels.get(opt, optspec.label(opt)),
                                "depth": d, "width": w, "status": PENDING,
                                **{k: math.nan for k in VALUES}, "step": 0, "steps": config.steps,
                                "elapsed_s": math.nan, "error": None})
    df = pd.DataFrame(out, columns=list(RESULT_COLUMNS))
    if len(df):
        df = df.sort_values(["depth", "width", "run_id"], na_position="last", kind="stable")
        df["depth"] = df["depth"].astype(int)
        df["width"] = df["width"].astype(int)
    return df.reset_index(drop=True)


def panel_order(df: pd.DataFrame, config: SweepConfig | None = None) -> list[str]:
    """Optimiser spec strings in display order: the sweep's own order, AGD first."""
    opts = list(config.optimizers) if config is not None else []
    opts += [o for o in pd.unique(df["optimizer"]) if o not in opts] if len(df) else []
    return sorted(opts, key=lambda o: (optspec.family(o) != "agd", opts.index(o)))


def progress(df: pd.DataFrame) -> dict[str, int]:
    """Runs per status, plus 'total' and 'done' (every final status)."""
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    counts = {str(k): int(v) for k, v in counts.items()}
    counts["total"] = len(df)
    counts["done"] = int(sum(v for k, v in counts.items() if k in FINAL_STATUSES))
    return counts


def progress_text(counts: Mapping[str, int]) -> str:
    """"3 of 30 runs done · 1 running · 26 queued"."""
    parts = [f"{counts['done']} of {counts['total']} runs done"]
    for status in ("running", "queued", "diverged", "failed", "cancelled", "interrupted", PENDING):
        if counts.get(status):
            parts.append(f"{counts[status]} {status if status != PENDING else 'not started'}")
    return " · ".join(parts)


def is_active(df: pd.DataFrame) -> bool:
    return bool(len(df)) and bool(df["status"].isin(ACTIVE_STATUSES).any())


def best_rate_frame(df: pd.DataFrame, family_name: str = "adam",
                    value: str = "final_train_loss") -> pd.DataFrame:
    """Per cell, the best of a baseline's runs over its learning rates: columns depth, width,
    <value>, best_lr, run_id, n_rates, status. Lower is better for a loss, higher otherwise; a
    run that diverged or has no value counts as the worst. Cells where none has a value keep NaN
    (status says why: 'diverged' if they all diverged, else the furthest-behind status)."""
    cols = ["depth", "width", value, "best_lr", "run_id", "n_rates", "status"]
    sub = df[df["optimizer"].map(optspec.family) == family_name] if len(df) else df
    if not len(sub):
        return pd.DataFrame(columns=cols)
    lower = "loss" in value
    out = []
    for (d, w), cell in sub.groupby(["depth", "width"], sort=True):
        vals = cell[value].to_numpy(dtype=np.float64)
        ok = np.isfinite(vals) & (cell["status"] == "finished").to_numpy()
        if ok.any():
            idx = np.flatnonzero(ok)
            k = idx[np.argmin(vals[idx])] if lower else idx[np.argmax(vals[idx])]
            row = cell.iloc[k]
            parsed = optspec.try_parse(row["optimizer"])
            out.append((d, w, float(vals[k]), parsed.lr if parsed else None, row["run_id"], len(cell), "finished"))
        else:
            statuses = set(cell["status"])
            status = next((s for s in (*ACTIVE_STATUSES, PENDING) if s in statuses), None) or (
                "diverged" if statuses == {"diverged"} else sorted(statuses)[0])
            out.append((d, w, math.nan, None, None, len(cell), status))
    return pd.DataFrame(out, columns=cols)


def agd_vs_best(df: pd.DataFrame, family_name: str = "adam", value: str = "final_train_loss",
                agd: str | None = None) -> pd.DataFrame:
    """Per cell: AGD's value beside the baseline's best over its rates (columns depth, width,
    agd, best, best_lr, agd_run_id, best_run_id). `agd` picks the AGD variant (default: the
    first AGD optimiser of the frame)."""
    agd_rows = df[df["optimizer"].map(optspec.family) == "agd"] if len(df) else df
    if agd is None and len(agd_rows):
        agd = agd_rows["optimizer"].iloc[0]
    agd_rows = agd_rows[agd_rows["optimizer"] == agd] if len(agd_rows) else agd_rows
    best = best_rate_frame(df, family_name, value)
    cols = ["depth", "width", "agd", "best", "best_lr", "agd_run_id", "best_run_id"]
    if not len(agd_rows) or not len(best):
        return pd.DataFrame(columns=cols)
    a = agd_rows[["depth", "width", value, "run_id"]].rename(columns={value: "agd", "run_id": "agd_run_id"})
    b = best[["depth", "width", value, "best_lr", "run_id"]].rename(columns={value: "best", "run_id": "best_run_id"})
    return a.merge(b, on=["depth", "width"], how="outer").sort_values(["depth", "width"]).reset_index(drop=True)[cols]


def best_rate_panels(df: pd.DataFrame, family_name: str = "adam", value: str = "final_train_loss",
                     agd: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The frame the best-rate figure draws: for each cell, AGD's row and the baseline's best row
    (optimizer, label, depth, width, status, <value>, run_id, best_lr), and the two panel names."""
    cmp = agd_vs_best(df, family_name, value, agd)
    if not len(cmp):
        return pd.DataFrame(), []
    agd_name = agd or df.loc[df["optimizer"].map(optspec.family) == "agd", "optimizer"].iloc[0]
    best_name = f"{family_name} (best lr)"
    status = df.groupby(["depth", "width", "optimizer"])["status"].first().to_dict()
    best = best_rate_frame(df, family_name, value).set_index(["depth", "width"])
    rows = []
    for r in cmp.itertuples(index=False):
        cell = (r.depth, r.width)
        rows.append({"run_id": r.agd_run_id, "optimizer": agd_name, "label": agd_name, "depth": r.depth,
                     "width": r.width, "status": status.get((*cell, agd_name), PENDING), value: r.agd,
                     "best_lr": None})
        rows.append({"run_id": r.best_run_id, "optimizer": best_name, "label": best_name,
                     "depth": r.depth, "width": r.width,
                     "status": best.loc[cell, "status"] if cell in best.index else PENDING,
                     value: r.best, "best_lr": r.best_lr})
    return pd.DataFrame(rows), [agd_name, best_name]


def agd_wins(cmp: pd.DataFrame, value: str = "final_train_loss") -> tuple[int, int]:
    """(cells where AGD beats the baseline's best rate, cells where both have a value)."""
    if not len(cmp):
        return 0, 0
    a, b = cmp["agd"].to_numpy(dtype=np.float64), cmp["best"].to_numpy(dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    better = (a < b) if "loss" in value else (a > b)
    return int((both & better).sum()), int(both.sum())


def cell_options(df: pd.DataFrame) -> list[tuple[int, int]]:
    """Cells that have at least one run, by depth then width."""
    if not len(df):
        return []
    have = df[df["run_id"].notna()]
    return sorted({(int(d), int(w)) for d, w in zip(have["depth"], have["width"])})


def cell_run_ids(df: pd.DataFrame, depth: int, width: int) -> list[int]:
    sub = df[(df["depth"] == depth) & (df["width"] == width) & df["run_id"].notna()]
    return [int(r) for r in sub["run_id"]]


def clicked_cell(points: Sequence[Any]) -> tuple[int, int] | None:
    """The (depth, width) a click on a sweep grid picked: the last selected point whose customdata
    carries [run_id, depth, width] with a run (run_id -1: a cell without a run yet)."""
    cells = []
    for p in points:
        data = p.get("customdata") if isinstance(p, Mapping) else None
        if isinstance(data, (list, tuple)) and len(data) >= 3 and data[0] >= 0:
            cells.append((int(data[1]), int(data[2])))
    return cells[-1] if cells else None
