"""Logic of the Live training page, kept out of the page so it can be tested without a browser.

The page (pages/live.py) only draws widgets; everything it decides lives here:
- the form: its fields, defaults, presets, the checks that explain a bad value next to its control;
- the URL: every form field round-trips through `st.query_params` as plain strings, so a presenter
  can bookmark or share a configuration; a bad value in a URL is explained and that field falls
  back to its default;
- form -> `RunSpec` fields (the optimiser spec strings the library parses);
- incremental reads of the run store (`LiveFrames`: only steps after the last one seen are read);
- the decision-boundary picture of 2-D toy data sets: a grid over the data, the model rebuilt from
  the worker's weight snapshot (`agd_viz.snapshots`), class probabilities on the grid.

No streamlit here, and no torch at import time: torch is imported only by the functions that need
it (the decision boundary, device checks), so opening the page stays light.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

# -------------------------------------------------------------------------------------------------
# Form fields

# The 2-D toy sets get a live decision-boundary picture (a grid over the plane is cheap to evaluate).
TOY_2D = ("spirals", "moons", "circles", "xor")
# The built-in data sets of agd_viz.data, listed here so the form needs no import of it (that
# module imports torch, and a page that only shows charts should not pay for torch). Downloadable
# sets (MNIST, ...) are left to the command line, which has an explicit download step; their runs
# still show here when opened by group.
KNOWN_DATASETS = {
    "digits": "Digits (8×8)",
    "spirals": "Spirals",
    "moons": "Two moons",
    "circles": "Circles",
    "xor": "XOR",
    "teacher": "Teacher-student",
}
FALLBACK_DATASETS = tuple(KNOWN_DATASETS)
DEVICES = ("auto", "cpu", "cuda", "mps")
OPTIMIZER_NAMES = ("agd", "adam", "sgd", "adamw")
OPTIMIZER_TITLES = {"agd": "AGD", "adam": "Adam", "sgd": "SGD", "adamw": "AdamW"}
# Baselines whose learning rates are typed as a list ("1e-3, 1e-2"): field name per optimiser.
LR_FIELDS = {"adam": "adam_lr", "sgd": "sgd_lr", "adamw": "adamw_lr"}

# Ranges of the page's controls. Narrower than RunSpec's (train.LIMITS): the live page is shared by
# a room of attendees on one server, so one click must not start a job that runs for hours or
# takes the machine's memory. The CLI and the sweep page reach the full range.
UI_LIMITS = {
    "depth": (1, 64),
    "width": (1, 2048),
    "batch_size": (1, 4096),
    "steps": (1, 20_000),
    "seed": (0, 2**31 - 1),
}
MAX_GAIN = 1000.0
MAX_RATES = 4  # learning rates per baseline
MAX_RUNS = 8  # runs per comparison
# Hidden weights per network (width² · (depth − 2)): 16M float32 weights are 64 MB, ×4 with Adam's
# buffers and a gradient, per run. Past that a shared demo server would swap.
MAX_HIDDEN_WEIGHTS = 16_000_000
# Above this many multiply-adds a run is likely to take minutes on a laptop CPU: warn, don't refuse.
SLOW_WORK = 2e11
CPU_FLOPS = 2e10  # what a laptop core pair sustains on small matmuls, for the time estimate only


@dataclass(frozen=True)
class Field:
    """One form field: its URL/session name, kind, default and (for numbers) range."""

    name: str
    kind: str  # "int" | "float" | "choice" | "multi" | "rates" | "bool"
    default: Any
    label: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()


def _int_field(name, default, label):
    lo, hi = UI_LIMITS[name]
    return Field(name, "int", default, label, lo, hi)


FIELDS: tuple[Field, ...] = (
    Field("dataset", "choice", "digits", "Dataset", choices=FALLBACK_DATASETS),
    _int_field("depth", 8, "Depth (weight matrices)"),
    _int_field("width", 128, "Width"),
    _int_field("batch_size", 128, "Batch size"),
    _int_field("steps", 300, "Steps"),
    _int_field("seed", 0, "Seed"),
    Field("device", "choice", "auto", "Device", choices=DEVICES),
    Field("optimizers", "multi", ("agd", "adam"), "Optimisers", choices=OPTIMIZER_NAMES),
    Field("gain", "float", 1.0, "AGD gain", 0.01, MAX_GAIN),
    Field("adam_lr", "rates", "1e-3", "Adam learning rates"),
    Field("sgd_lr", "rates", "0.1", "SGD learning rates"),
    Field("adamw_lr", "rates", "1e-3", "AdamW learning rates"),
    Field("same_init", "bool", False, "Same init for all"),
)
FIELD = {f.name: f for f in FIELDS}
DEFAULTS: dict[str, Any] = {f.name: f.default for f in FIELDS}
# Query parameters that are not form fields.
GROUP_PARAM = "group"
PRESENT_PARAM = "present"


def default_state() -> dict[str, Any]:
    return dict(DEFAULTS)


def _registry() -> dict:
    """agd_viz.data's registry if something already imported it (for titles only)."""
    import sys

    data = sys.modules.get("agd_viz.data")
    return dict(getattr(data, "DATASETS", {}) or {})


def dataset_choices() -> tuple[str, ...]:
    """Data set names the form offers (the built-in ones; see KNOWN_DATASETS)."""
    return FALLBACK_DATASETS


def dataset_title(name: str) -> str:
    info = _registry().get(name)
    return getattr(info, "title", None) or KNOWN_DATASETS.get(name, name)


# -------------------------------------------------------------------------------------------------
# Presets


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    values: Mapping[str, Any]

    def state(self) -> dict[str, Any]:
        """The whole form: defaults overridden by the preset, so one click sets every field."""
        return {**DEFAULTS, **self.values}


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "Adam fails at depth 32",
            "Digits, a 32-layer MLP of width 128. AGD trains it with no learning rate; Adam at its "
            "default rate 1e-3 barely moves (Bernstein et al. 2023, Figure 3).",
            dict(dataset="digits", depth=32, width=128, batch_size=128, steps=400, seed=0,
                 optimizers=("agd", "adam"), gain=1.0, adam_lr="1e-3", same_init=False),
        ),
        Preset(
            "Wide vs narrow",
            "A wide, shallow network (width 1024, depth 4). Run it, then 'Deep and narrow': AGD "
            "needs no change between the two, while the best rate of Adam and SGD moves.",
            dict(dataset="digits", depth=4, width=1024, batch_size=128, steps=300, seed=0,
                 optimizers=("agd", "adam", "sgd"), gain=1.0, adam_lr="1e-3", sgd_lr="0.1"),
        ),
        Preset(
            "Deep and narrow",
            "A deep, narrow network (depth 16, width 32): watch AGD's η shrink as it adapts to "
            "depth, and the per-layer relative updates stay balanced.",
            dict(dataset="digits", depth=16, width=32, batch_size=128, steps=400, seed=0,
                 optimizers=("agd", "adam", "sgd"), gain=1.0, adam_lr="1e-3", sgd_lr="0.1"),
        ),
        Preset(
            "Tuned Adam vs AGD",
            "Adam at three learning rates a decade apart against AGD at depth 8: tuning finds "
            "Adam a good rate; AGD gets there without a search.",
            dict(dataset="digits", depth=8, width=128, batch_size=128, steps=400, seed=0,
                 optimizers=("agd", "adam"), gain=1.0, adam_lr="1e-4, 1e-3, 1e-2"),
        ),
        Preset(
            "Spirals: decision boundary",
            "Two interleaved spirals in the plane, a 6-layer MLP: the decision boundary of each "
            "optimiser is drawn live as it trains.",
            dict(dataset="spirals", depth=6, width=64, batch_size=128, steps=800, seed=0,
                 optimizers=("agd", "adam"), gain=1.0, adam_lr="1e-3"),
        ),
    )
}


# -------------------------------------------------------------------------------------------------
# Parsing values (from the URL or from text inputs)


def _fmt_float(v: float) -> str:
    return f"{v:g}"


def parse_rates(text: str) -> list[float]:
    """"1e-3, 1e-2" -> [0.001, 0.01]. Raises ValueError with one sentence for the user."""
    items = [t.strip() for t in re.split(r"[,;\s]+", str(text).strip()) if t.strip()]
    if not items:
        raise ValueError("enter at least one learning rate, e.g. 1e-3 (several: 1e-3, 1e-2).")
    rates = []
    for item in items:
        try:
            v = float(item)
        except ValueError:
            raise ValueError(f"{item!r} is not a number; write rates like 1e-3, 0.01.") from None
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"learning rates must be positive numbers, got {item}.")
        if v > 10:
            raise ValueError(f"learning rate {item} is far too large (at most 10).")
        rates.append(v)
    unique = list(dict.fromkeys(rates))
    if len(unique) > MAX_RATES:
        raise ValueError(f"at most {MAX_RATES} learning rates at once, got {len(unique)}.")
    return unique


def format_rates(rates: Iterable[float]) -> str:
    return ", ".join(_fmt_float(r) for r in rates)


def normalize_rates(text: str) -> str:
    """A valid rate list as the user spelled it ("1e-3, 1e-2"), repeats dropped; ValueError if
    invalid. Keeping the spelling lets a link read back exactly what was typed."""
    parse_rates(text)
    seen, out = set(), []
    for item in re.split(r"[,;\s]+", str(text).strip()):
        if item and float(item) not in seen:
            seen.add(float(item))
            out.append(item)
    return ", ".join(out)


def parse_value(f: Field, raw: Any, choices: Sequence[str] | None = None) -> Any:
    """A field's value from its text form (a URL parameter). ValueError says what is wrong."""
    if isinstance(raw, (list, tuple)) and f.kind != "multi":
        raw = raw[-1] if raw else ""
    text = str(raw).strip()
    if f.kind == "int":
        try:
            v = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not f.lo <= v <= f.hi:
            raise ValueError(f"{v:,} is outside {int(f.lo):,}–{int(f.hi):,}")
        return v
    if f.kind == "float":
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(v) or not f.lo <= v <= f.hi:
            raise ValueError(f"{text} is outside {f.lo:g}–{f.hi:g}")
        return v
    if f.kind == "bool":
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{text!r} is not 0 or 1")
    if f.kind == "choice":
        valid = tuple(choices or f.choices)
        if text not in valid:
            raise ValueError(f"{text!r} is not one of {', '.join(valid)}")
        return text
    if f.kind == "multi":
        items = raw if isinstance(raw, (list, tuple)) else text.split(",")
        names = [str(i).strip().lower() for i in items if str(i).strip()]
        bad = [n for n in names if n not in f.choices]
        if bad:
            raise ValueError(f"unknown optimiser {bad[0]!r} (valid: {', '.join(f.choices)})")
        if not names:
            raise ValueError("no optimiser named")
        return tuple(n for n in f.choices if n in names)  # canonical order, no repeats
    if f.kind == "rates":
        return normalize_rates(text)
    raise AssertionError(f"unknown field kind {f.kind}")


def format_value(f: Field, value: Any) -> str:
    """A field's value as the string stored in the URL."""
    if f.kind == "bool":
        return "1" if value else "0"
    if f.kind == "float":
        return _fmt_float(float(value))
    if f.kind == "multi":
        return ",".join(value)
    if f.kind == "rates":
        try:
            return normalize_rates(value)
        except ValueError:
            return str(value)
    return str(value)


# -------------------------------------------------------------------------------------------------
# URL <-> form state


def state_from_query(params: Mapping[str, Any], base: Mapping[str, Any] | None = None,
                     datasets: Sequence[str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Form state from query parameters, on top of `base` (default: the defaults).

    Returns (state, notes): one note per bad parameter, saying what was wrong and that the field
    keeps its default. Parameters that are not form fields (group, present, others) are ignored.
    """
    state = dict(base or DEFAULTS)
    notes = []
    for f in FIELDS:
        if f.name not in params:
            continue
        raw = params[f.name]
        try:
            state[f.name] = parse_value(f, raw, datasets if f.name == "dataset" else None)
        except ValueError as exc:
            shown = raw if not isinstance(raw, (list, tuple)) else ",".join(map(str, raw))
            shown = str(shown)[:40]
            state[f.name] = DEFAULTS[f.name]
            notes.append(f"The link's {f.label.lower()} ({f.name}={shown!r}) was not used: {exc}. "
                         f"Using the default, {format_value(f, DEFAULTS[f.name])}.")
    return state, notes


def query_from_state(state: Mapping[str, Any]) -> dict[str, str]:
    """Every form field as a URL string, in form order (a complete, stable bookmark)."""
    return {f.name: format_value(f, state.get(f.name, f.default)) for f in FIELDS}


def form_params(params: Mapping[str, Any]) -> dict[str, str]:
    """The subset of query parameters that are form fields (to tell a pasted link from ours)."""
    return {k: str(v) for k, v in params.items() if k in FIELD}


def parse_group(raw: Any) -> int | None:
    """`?group=N` -> N, or None when absent or not a positive whole number."""
    if raw is None:
        return None
    try:
        g = int(str(raw).strip())
    except ValueError:
        return None
    return g if g > 0 else None


def parse_flag(raw: Any) -> bool:
    return str(raw).strip().lower() in ("1", "true", "yes", "on")


# -------------------------------------------------------------------------------------------------
# Checks: one message per control


@dataclass(frozen=True)
class Note:
    level: str  # "error" (blocks Start) | "warning" | "info"
    text: str


def check(state: Mapping[str, Any], devices: Iterable[str] | None = None,
          datasets: Sequence[str] | None = None) -> dict[str, list[Note]]:
    """What is wrong (or worth knowing) about each field, keyed by field name ("start" for the
    whole configuration). `devices`: those available here; None skips that check."""
    notes: dict[str, list[Note]] = {}

    def add(name, level, text):
        notes.setdefault(name, []).append(Note(level, text))

    datasets = tuple(datasets or dataset_choices())
    for f in FIELDS:
        v = state.get(f.name)
        if f.kind == "int":
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                add(f.name, "error", f"{f.label} must be a whole number.")
            elif not f.lo <= v <= f.hi:
                add(f.name, "error", f"{f.label} must be between {int(f.lo):,} and {int(f.hi):,} here.")
        elif f.kind == "float":
            if not isinstance(v, (int, float)) or not math.isfinite(v) or not f.lo <= v <= f.hi:
                add(f.name, "error", f"{f.label} must be a number between {f.lo:g} and {f.hi:g}.")
    if state.get("dataset") not in datasets:
        add("dataset", "error", f"Unknown dataset {state.get('dataset')!r}; choose one of {', '.join(datasets)}.")
    if state.get("device") not in DEVICES:
        add("device", "error", f"Device must be one of {', '.join(DEVICES)}.")
    elif devices is not None and state.get("device") not in ("auto", "cpu") and state["device"] not in devices:
        add("device", "error", f"This machine has no {state['device'].upper()} device; choose auto or cpu.")

    opts = tuple(state.get("optimizers") or ())
    if not opts:
        add("optimizers", "error", "Choose at least one optimiser to train.")
    n_runs = 0
    for name in opts:
        if name == "agd":
            n_runs += 1
            continue
        key = LR_FIELDS.get(name)
        if key is None:
            add("optimizers", "error", f"Unknown optimiser {name!r}.")
            continue
        try:
            n_runs += len(parse_rates(state.get(key, "")))
        except ValueError as exc:
            add(key, "error", f"{OPTIMIZER_TITLES[name]}: {exc}")
    if n_runs > MAX_RUNS:
        add("optimizers", "error", f"That is {n_runs} runs; at most {MAX_RUNS} train side by side here.")

    depth, width = state.get("depth"), state.get("width")
    if isinstance(depth, int) and isinstance(width, int) and "depth" not in notes and "width" not in notes:
        hidden = width * width * max(depth - 2, 0)
        if hidden > MAX_HIDDEN_WEIGHTS:
            add("width", "error",
                f"Depth {depth} × width {width} has {hidden / 1e6:.0f}M hidden weights; this page "
                f"allows {MAX_HIDDEN_WEIGHTS // 1_000_000}M per network. Use fewer layers or a smaller "
                "width (or the command line).")
        if depth == 1:
            add("width", "info", "With depth 1 the network is one linear map: width is not used.")
    if state.get("same_init") and opts and all(o == "agd" for o in opts):
        add("same_init", "info", "Only AGD is selected, so there is no baseline to share its init with.")
    if state.get("dataset") in TOY_2D and isinstance(depth, int) and isinstance(width, int):
        if width * width * max(depth - 2, 0) + 5 * width > SNAPSHOT_MAX_PARAMS:
            add("dataset", "info", "This network is too large for the live decision-boundary picture.")

    if not any(n.level == "error" for ns in notes.values() for n in ns):
        seconds = estimate_seconds(state, n_runs)
        if seconds is not None and seconds > 120:
            add("start", "warning",
                f"This may take about {format_duration(seconds)} on a laptop CPU "
                "(much less on a GPU). Fewer steps or a smaller width make it quicker.")
    return notes


def has_errors(notes: Mapping[str, list[Note]]) -> bool:
    return any(n.level == "error" for ns in notes.values() for n in ns)


def estimate_seconds(state: Mapping[str, Any], n_runs: int | None = None) -> float | None:
    """Rough CPU time of the whole comparison: 6 multiply-adds per weight per example per step
    (forward, backward, update), plus per-layer metrics, on a 20 GFLOP/s CPU; runs in sequence."""
    try:
        depth, width = int(state["depth"]), int(state["width"])
        batch, steps = int(state["batch_size"]), int(state["steps"])
    except (KeyError, TypeError, ValueError):
        return None
    if n_runs is None:
        try:
            n_runs = len(optimizer_specs(state))
        except ValueError:
            return None
    weights = width * width * max(depth - 2, 0) + width * 74  # 74: digits' 64 inputs + 10 classes
    return 6.0 * weights * batch * steps * max(n_runs, 1) / CPU_FLOPS


# -------------------------------------------------------------------------------------------------
# Form -> RunSpec fields


def optimizer_specs(state: Mapping[str, Any]) -> list[str]:
    """Optimiser spec strings, AGD first then each baseline at each of its learning rates:
    ["agd", "adam:lr=0.001", "adam:lr=0.01"]. Raises ValueError for an unparsable rate list."""
    out = []
    for name in state.get("optimizers") or ():
        if name == "agd":
            gain = float(state.get("gain", 1.0))
            out.append("agd" if gain == 1.0 else f"agd:gain={_fmt_float(gain)}")
        else:
            out += [f"{name}:lr={_fmt_float(r)}" for r in parse_rates(state.get(LR_FIELDS[name], ""))]
    return out


def spec_fields(state: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `train.RunSpec` for this form (metrics always "full": the page draws
    the per-layer charts)."""
    return dict(
        dataset=state["dataset"], depth=int(state["depth"]), width=int(state["width"]),
        optimizers=tuple(optimizer_specs(state)), steps=int(state["steps"]),
        batch_size=int(state["batch_size"]), seed=int(state["seed"]), device=state["device"],
        metrics="full", same_init=bool(state["same_init"]),
    )


def state_from_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The form that would produce a stored spec (a group's), as far as the form can express it."""
    state = dict(DEFAULTS)
    for key in ("dataset", "depth", "width", "batch_size", "steps", "seed", "device", "same_init"):
        if key in spec:
            state[key] = spec[key]
    names, rates, gain = [], {k: [] for k in LR_FIELDS}, 1.0
    for text in spec.get("optimizers") or ():
        name, _, rest = str(text).partition(":")
        name = name.strip().lower()
        kwargs = dict(kv.split("=", 1) for kv in rest.split(",") if "=" in kv)
        if name not in OPTIMIZER_NAMES:
            continue
        if name not in names:
            names.append(name)
        if name == "agd":
            gain = float(kwargs.get("gain", 1.0))
        else:
            default_lr = parse_rates(DEFAULTS[LR_FIELDS[name]])[0]
            rates[name].append(float(kwargs.get("lr", default_lr)))
    if names:
        state["optimizers"] = tuple(n for n in OPTIMIZER_NAMES if n in names)
    state["gain"] = gain
    for name, rs in rates.items():
        if rs:
            state[LR_FIELDS[name]] = format_rates(dict.fromkeys(rs))
    # Values the form cannot hold (depth 100, an MNIST run, 9 rates) fall back to its defaults.
    state, _ = state_from_query(query_from_state(state))
    return state


# -------------------------------------------------------------------------------------------------
# Progress and status text

FINAL = ("finished", "failed", "cancelled", "diverged", "interrupted")
ACTIVE = ("queued", "running")


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def progress_fraction(p: Mapping[str, Any]) -> float:
    step, steps = p.get("step"), p.get("steps")
    if p.get("status") == "finished":
        return 1.0
    if not step or not steps:
        return 0.0
    return float(min(max(step / steps, 0.0), 1.0))


def progress_text(label: str, p: Mapping[str, Any]) -> str:
    """One line per run: '<label> · running · step 120 / 300 · 35 steps/s · ETA 5 s' (no label
    part when `label` is empty)."""
    status = p.get("status") or "queued"
    step, steps = p.get("step") or 0, p.get("steps")
    parts = [label, status] if label else [status]
    if status == "queued":
        pos = p.get("queue_position")
        parts.append(f"position {pos} in the queue" if pos else "waiting for a worker")
        return " · ".join(parts)
    parts.append(f"step {step:,} / {steps:,}" if steps else f"step {step:,}")
    sps = p.get("steps_per_s")
    if status == "running":
        if sps:
            parts.append(f"{sps:,.0f} steps/s" if sps >= 10 else f"{sps:.1f} steps/s")
        if p.get("eta_s") is not None:
            parts.append(f"ETA {format_duration(p['eta_s'])}")
    return " · ".join(parts)


MAX_REFRESH_S = 5.0


def refresh_interval(tick_s: float | None, base: float = 1.0, cap: float = MAX_REFRESH_S) -> float:
    """Seconds between live refreshes: `base`, stretched to 4× the time a refresh takes (in half
    seconds, at most `cap`). A busy server (many viewers, training on the same cores) then
    refreshes each page less often instead of running refreshes back to back."""
    if tick_s is None or not math.isfinite(tick_s) or tick_s <= 0:
        return base
    return float(min(cap, max(base, math.ceil(8 * tick_s) / 2)))


def interval_drifted(current: float, wanted: float) -> bool:
    """Whether the live timer should be re-created: the wanted interval moved by 1.5× or more."""
    return wanted >= 1.5 * current or wanted <= current / 1.5


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def md_escape(text: str) -> str:
    """Text shown through Markdown (st.error, st.caption) literally: no links, code or emphasis
    from a worker's error message."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def all_final(progress: Mapping[int, Mapping[str, Any]], run_ids: Iterable[int]) -> bool:
    """True when every run is in a final state (a deleted run counts as final)."""
    return all((progress.get(r) or {}).get("status", "finished") in FINAL for r in run_ids)


# -------------------------------------------------------------------------------------------------
# Incremental reads


@dataclass
class RunFrames:
    """One run's metrics read so far: scalar frame, long per-layer frame, and where they end."""

    scalars: pd.DataFrame | None = None
    layers: pd.DataFrame | None = None
    last_step: int | None = None
    last_layer_step: int | None = None
    reads: int = 0  # store reads so far (tests check reads stay incremental)


def _append(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    if old is None or old.empty:
        return new.reset_index(drop=True)
    if new.empty:
        return old
    return pd.concat([old, new], ignore_index=True)


@dataclass
class LiveFrames:
    """Per-run frames kept between refreshes; each `refresh` reads only steps after those seen.

    Steps arrive in order (a worker writes step k only after k−1), so "steps > last seen" misses
    nothing. Kept in `st.session_state`, one per browser session.
    """

    runs: dict[int, RunFrames] = field(default_factory=dict)

    def refresh(self, store, run_ids: Iterable[int]) -> dict[int, RunFrames]:
        ids = [int(r) for r in run_ids]
        for rid in list(self.runs):
            if rid not in ids:
                del self.runs[rid]
        frames = {rid: self.runs.setdefault(rid, RunFrames()) for rid in ids}
        new = store.metrics_many(ids, since={rid: fr.last_step for rid, fr in frames.items()})
        for rid, fr in frames.items():
            df = new.get(rid)
            fr.reads += 1
            if df is not None and len(df):
                fr.scalars = _append(fr.scalars, df)
                fr.last_step = int(df["step"].iloc[-1])
            elif fr.scalars is None and df is not None:
                fr.scalars = df
            ldf = store.layer_metrics(rid, since_step=fr.last_layer_step)
            if len(ldf):
                fr.layers = _append(fr.layers, ldf)
                fr.last_layer_step = int(ldf["step"].iloc[-1])
            elif fr.layers is None:
                fr.layers = ldf
        return frames

    def steps_seen(self) -> dict[int, int | None]:
        return {rid: fr.last_step for rid, fr in self.runs.items()}


def latest_values(scalars: pd.DataFrame | None) -> dict[str, float | None]:
    """Last finite value of each headline number (step, loss, acc, η, lr) for the metric tiles."""
    out: dict[str, float | None] = {k: None for k in ("step", "loss", "acc", "eta", "G", "lr",
                                                      "test_acc")}
    if scalars is None or scalars.empty:
        return out
    out["step"] = int(scalars["step"].iloc[-1])
    for key in ("loss", "acc", "eta", "G", "lr", "test_acc"):
        if key in scalars:
            col = scalars[key].to_numpy(dtype=np.float64, na_value=np.nan)
            finite = np.flatnonzero(np.isfinite(col))
            if finite.size:
                out[key] = float(col[finite[-1]])
    return out


def format_number(v: float | None, digits: int = 3) -> str:
    """Short enough for a metric tile: 3 significant digits, and 2 with a bare exponent for very
    small or large values (η late in training goes below 1e-3): "0.344", "1.52", "7.7e-4"."""
    if v is None or not math.isfinite(v):
        return "–"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        mantissa, exp = f"{v:.1e}".split("e")
        return f"{mantissa}e{int(exp)}"
    return f"{v:.{digits}g}"


# -------------------------------------------------------------------------------------------------
# Decision boundary (2-D toy sets)

# Snapshots are written only for networks this small (see agd_viz.snapshots).
SNAPSHOT_MAX_PARAMS = 1_000_000  # = agd_viz.snapshots.MAX_PARAMS (a test checks they agree)
GRID_POINTS = 120


def boundary_grid(x: np.ndarray, n: int = GRID_POINTS, margin: float = 0.15):
    """A square-celled grid covering 2-D points with a margin: (gx, gy) axes and the (ny·nx, 2)
    array of grid points, row-major over (y, x) to match `charts.decision_boundary_figure`."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or not len(x):
        raise ValueError(f"expected (n, 2) points, got shape {x.shape}")
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = margin * (hi - lo).max()
    lo, hi = lo - pad, hi + pad
    gx = np.linspace(lo[0], hi[0], n)
    gy = np.linspace(lo[1], hi[1], n)
    xx, yy = np.meshgrid(gx, gy)
    return gx, gy, np.stack([xx.ravel(), yy.ravel()], axis=1)


def predict_grid(state_dict: Mapping[str, Any], spec: Mapping[str, Any], d_in: int, d_out: int,
                 inputs: np.ndarray) -> np.ndarray:
    """Class probabilities softmax(f(x)) of the snapshot's network at each input row, (n, C).

    `inputs` are network inputs (for the 2-D sets: grid points passed through the data set's
    `transform`, which appends a constant and scales rows; d_in = 3). The network is rebuilt from
    the run's spec (arch, depth, width) and loaded with the snapshot's weights; torch is imported
    here, only when a 2-D data set is on screen.
    """
    import torch

    from agd_viz import nets

    model = nets.build_model(spec.get("arch", "mlp"), d_in, d_out, int(spec["depth"]), int(spec["width"]))
    model.load_state_dict(dict(state_dict), strict=True)
    model.eval()
    with torch.no_grad():
        out = model(torch.as_tensor(np.asarray(inputs), dtype=torch.float32))
        if not torch.isfinite(out).all():
            raise ValueError("the network's outputs are not finite (the run diverged)")
        return torch.softmax(out, dim=1).numpy()
