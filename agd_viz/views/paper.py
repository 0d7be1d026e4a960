"""The paper's numbers beside ours: for a comparison (Live page) or a sweep (Sweep page), the preset
of `agd_viz.paper` it reruns, and one table — Figure, Paper, Measured here — with a caption on how
the protocols differ. No streamlit, no torch.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from agd_viz import fmt, optspec, paper

RUN_PRESETS = {key: p for key, p in paper.PRESETS.items() if p.kind == "run"}
SWEEP_PRESETS = {key: p for key, p in paper.PRESETS.items() if p.kind == "sweep"}
DEFAULT_PROTOCOL_NOTE = ("The paper's protocol differs (it trains longer, and its FCN widths are not always "
                         "given): expect close, not equal, numbers.")


def _table(key: str, measured: Callable[[paper.PaperResult], str], what: str, steps: Any) -> tuple[pd.DataFrame, str]:
    """Rows for preset `key`'s expected and context results, `measured(result)` in the last column,
    and the caption (what was measured, a steps mismatch, the protocol note)."""
    preset = paper.PRESETS[key]
    rows = []
    for role, names in (("expected", preset.expected), ("for orientation", preset.context)):
        for name in names:
            result = paper.PAPER_RESULTS[name]
            rows.append({"Figure": result.figure, "Optimiser (paper)": result.optimizer_text,
                         "Paper": result.display, "Measured here": measured(result), "": role})
    parts = [f"Measured: {what} (preset “{preset.title}”)."]
    want = preset.spec.get("steps")
    if isinstance(steps, int) and isinstance(want, int) and steps != want:
        parts.append(f"This {'sweep' if preset.kind == 'sweep' else 'comparison'} ran {steps:,} steps"
                     f"{' per run' if preset.kind == 'sweep' else ''}; the preset runs {want:,}.")
    parts.append(preset.notes or DEFAULT_PROTOCOL_NOTE)
    return pd.DataFrame(rows), " ".join(parts)


# -------------------------------------------------------------------------------------------------
# A comparison


def preset_for_comparison(spec: Mapping[str, Any]) -> str | None:
    """The run preset with paper numbers whose network and data this comparison trained (dataset,
    architecture, depth, width), preferring the one with the same optimisers; None if none."""
    mine = {optspec.key_of(o) for o in spec.get("optimizers") or ()}
    best, best_score = None, None
    for key, preset in RUN_PRESETS.items():
        if not (preset.expected or preset.context):
            continue
        p = preset.spec
        same_net = all(spec.get(k, d) == p.get(k, d) for k, d in
                       (("dataset", None), ("arch", "mlp"), ("depth", None), ("width", None)))
        theirs = {optspec.key_of(o) for o in p.get("optimizers") or ()}
        if not same_net or not mine & theirs:
            continue
        score = (mine == theirs, len(mine & theirs))
        if best_score is None or score > best_score:
            best, best_score = key, score
    return best


def comparison_table(spec: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> tuple[pd.DataFrame, str] | None:
    """The paper's results beside this comparison's (a group's spec and its run rows): "Measured
    here" is the final test accuracy of each finished run, else its status. None when no paper
    preset matches."""
    key = preset_for_comparison(spec)
    if key is None:
        return None
    by_key: dict[tuple, Mapping] = {}
    for row in rows:
        by_key.setdefault(optspec.key_of(row.get("optimizer")), row)

    def measured(result: paper.PaperResult) -> str:
        if result.optimizer and result.best_of:  # a tuned rate the paper does not name: our best
            accs = {row.get("optimizer"): (row.get("summary") or {}).get("final_test_acc") for row in rows
                    if row.get("status") == "finished" and optspec.family(row.get("optimizer")) == result.optimizer}
            best = paper.measured_value(result, accs)
            if best is None:
                return "–"
            which = max((k for k, v in accs.items() if v is not None), key=lambda k: accs[k])
            return f"{fmt.percent(best)} (best: {optspec.label(which)})"
        row = by_key.get(optspec.key_of(result.optimizer)) if result.optimizer else None
        if row is None:
            return "–"
        acc = (row.get("summary") or {}).get("final_test_acc")
        if row.get("status") == "finished" and acc is not None:
            return fmt.percent(acc)
        return str(row.get("status") or "queued")

    return _table(key, measured, "final test accuracy of each finished run", spec.get("steps"))


# -------------------------------------------------------------------------------------------------
# A sweep


def preset_for_sweep(config) -> str | None:
    """The sweep preset with paper numbers whose dataset and grid this sweep shares (some depths
    and widths in common), preferring the one with the same grid."""
    if config is None:
        return None
    best, best_score = None, None
    for key, preset in SWEEP_PRESETS.items():
        if not (preset.expected or preset.context) or config.dataset != preset.spec.get("dataset"):
            continue
        depths, widths = set(config.depths) & set(preset.depths), set(config.widths) & set(preset.widths)
        if not depths or not widths or "agd" not in config.optimizers:
            continue
        score = (set(config.depths) == set(preset.depths) and set(config.widths) == set(preset.widths),
                 len(depths) * len(widths))
        if best_score is None or score > best_score:
            best, best_score = key, score
    return best


def sweep_table(df: pd.DataFrame, config) -> tuple[pd.DataFrame, str] | None:
    """The paper's Figure-6 numbers beside this sweep's AGD runs (a results frame of
    views.sweep.results_frame): its best and worst cell, and AGD by depth at the widest width for
    the qualitative rows. None when no paper preset matches."""
    key = preset_for_sweep(config)
    if key is None:
        return None
    agd = df[(df["optimizer"] == "agd") & (df["status"] == "finished")] if len(df) else df
    agd = agd[np.isfinite(agd["final_test_acc"].astype(float))] if len(agd) else agd

    def measured(result: paper.PaperResult) -> str:
        if not len(agd):
            return "–"
        accs = agd["final_test_acc"].astype(float)
        name = next(k for k, v in paper.PAPER_RESULTS.items() if v is result)
        if name.endswith("_best") or name.endswith("_worst"):
            best = name.endswith("_best")
            pick = agd.loc[accs.idxmax() if best else accs.idxmin()]
            return (f"{'best' if best else 'worst'} test cell: depth {int(pick['depth'])}, "
                    f"width {int(pick['width'])}, {fmt.percent(pick['final_test_acc'])}")
        # A claim about training performance: set our final train loss beside it, not test accuracy.
        done = df[(df["optimizer"] == "agd") & (df["status"] == "finished")]
        return training_shape(done) or "–"

    table, caption = _table(key, measured, "final test accuracy of this sweep's finished AGD runs (final "
                            "train loss for the claim about training)",
                            config.steps if config is not None else None)
    return table.drop(columns=["Optimiser (paper)"]), caption


def training_shape(agd: pd.DataFrame) -> str | None:
    """Our side of the paper's claim about training performance over a depth × width grid (wider
    always better; depths 8 and 16 beat 32), from finished AGD runs (columns depth, width,
    final_train_loss): how often the wider of two neighbouring widths reached a lower final
    train loss, and the final train loss by depth at the widest width."""
    if not len(agd):
        return None
    loss = agd.assign(v=agd["final_train_loss"].astype(float)).dropna(subset=["v"])
    if not len(loss):
        return None
    wins = pairs = 0
    for _, cells in loss.groupby("depth"):
        v = cells.sort_values("width")["v"].to_numpy()
        pairs += max(len(v) - 1, 0)
        wins += int((np.diff(v) < 0).sum())
    widest = loss[loss["width"] == loss["width"].max()].sort_values("depth")
    parts = [f"wider had the lower final train loss in {wins} of {pairs} neighbouring pairs"] if pairs else []
    parts.append(f"final train loss at width {int(widest['width'].iloc[0])} by depth: "
                 + ", ".join(f"{int(d)}: {fmt.number(v)}" for d, v in zip(widest["depth"], widest["v"])))
    return "; ".join(parts)
