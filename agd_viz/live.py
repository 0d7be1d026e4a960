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

import importlib.util
import math
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from agd_viz import paper as paper_mod
from agd_viz import spec as spec_mod

# -------------------------------------------------------------------------------------------------
# Form fields

# The 2-D toy sets get a live decision-boundary picture (a grid over the plane is cheap to evaluate).
TOY_2D = ("spirals", "moons", "circles", "xor")
# The data sets of agd_viz.data, listed here so the form needs no import of it (that module
# imports torch, and a page that only shows charts should not pay for torch). The downloadable
# ones (DOWNLOADABLE) are offered too; the page says when one is not downloaded yet and offers a
# Download button (see `data_status`, `download_dataset`).
KNOWN_DATASETS = {
    "digits": "Digits (8×8)",
    "spirals": "Spirals",
    "moons": "Two moons",
    "circles": "Circles",
    "xor": "XOR",
    "teacher": "Teacher-student",
    "mnist": "MNIST (28×28)",
    "fashion-mnist": "Fashion-MNIST (28×28)",
    "cifar10": "CIFAR-10 (32×32 colour)",
}
DOWNLOADABLE = ("mnist", "fashion-mnist", "cifar10")
FALLBACK_DATASETS = tuple(KNOWN_DATASETS)
DEVICES = ("auto", "cpu", "cuda", "mps")
ARCHS = ("mlp", "cnn")
ARCH_TITLES = {"mlp": "MLP", "cnn": "CNN"}
# Learning-rate-free optimisers (Prodigy, D-Adapt Adam) and schedule-free AdamW, from optional
# packages: one run each, with its own options typed as "key=value, key=value" (empty: the
# package's defaults), e.g. "prodigy:d_coef=0.5".
LR_FREE = ("prodigy", "dadapt-adam", "schedulefree-adamw")
OPTIMIZER_NAMES = ("agd", "adam", "sgd", "adamw", *LR_FREE)
OPTIMIZER_TITLES = {"agd": "AGD", "adam": "Adam", "sgd": "SGD", "adamw": "AdamW", "prodigy": "Prodigy",
                    "dadapt-adam": "D-Adapt Adam", "schedulefree-adamw": "Schedule-free AdamW"}
# Baselines whose learning rates are typed as a list ("1e-3, 1e-2"): field name per optimiser.
LR_FIELDS = {"adam": "adam_lr", "sgd": "sgd_lr", "adamw": "adamw_lr"}
# The other optimisers' option fields ("d_coef=0.5, weight_decay=0.01").
OPTION_FIELDS = {"prodigy": "prodigy_opts", "dadapt-adam": "dadapt_adam_opts",
                 "schedulefree-adamw": "schedulefree_adamw_opts"}
OPTION_OF = {v: k for k, v in OPTION_FIELDS.items()}

# Ranges of the page's controls. Narrower than RunSpec's (train.LIMITS): the live page is shared by
# a room of attendees on one server, so one click must not start a job that runs for hours or
# takes the machine's memory. The CLI and the sweep page reach the full range.
UI_LIMITS = {
    "depth": (1, 64),
    "width": (1, 2048),
    "batch_size": (1, 4096),
    "steps": (1, 20_000),
    "seed": (0, 2**31 - 1),
    "train_samples": (0, 60_000),  # 0: all; only for the downloadable sets
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
    kind: str  # "int" | "float" | "choice" | "multi" | "rates" | "options" | "bool"
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
    Field("arch", "choice", "mlp", "Architecture", choices=ARCHS),
    _int_field("depth", 8, "Depth (weight matrices)"),
    _int_field("width", 128, "Width"),
    _int_field("batch_size", 128, "Batch size"),
    _int_field("steps", 300, "Steps"),
    _int_field("seed", 0, "Seed"),
    _int_field("train_samples", 0, "Training images"),
    Field("device", "choice", "auto", "Device", choices=DEVICES),
    Field("optimizers", "multi", ("agd", "adam"), "Optimisers", choices=OPTIMIZER_NAMES),
    Field("gain", "float", 1.0, "AGD gain", 0.01, MAX_GAIN),
    Field("adam_lr", "rates", "1e-3", "Adam learning rates"),
    Field("sgd_lr", "rates", "0.1", "SGD learning rates"),
    Field("adamw_lr", "rates", "1e-3", "AdamW learning rates"),
    *(Field(OPTION_FIELDS[n], "options", "", f"{OPTIMIZER_TITLES[n]} options") for n in LR_FREE),
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
    """Data set names the form offers: the built-in ones and the downloadable image sets (see
    KNOWN_DATASETS)."""
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
    if f.kind == "options":
        return normalize_options(OPTION_OF[f.name], text)
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
    if f.kind == "options":
        try:
            return normalize_options(OPTION_OF[f.name], value)
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
          datasets: Sequence[str] | None = None, device_kind: str | None = None,
          data: DataStatus | None = None,
          available: Mapping[str, tuple[bool, str | None]] | None = None) -> dict[str, list[Note]]:
    """What is wrong (or worth knowing) about each field, keyed by field name ("start" for the
    whole configuration). `devices`: those available here; None skips that check. `device_kind`:
    what "auto" trains on here ("cpu", "cuda"), for the memory budget (agd_viz.spec; the job
    manager refuses with the same sentence at Start). `data`: the chosen data set's download
    status (`data_status`; None: nothing to download). `available`: optimiser name -> (can be
    built here, install command) for the optional ones (default: `optimizer_status`)."""
    notes: dict[str, list[Note]] = {}

    def add(name, level, text):
        notes.setdefault(name, []).append(Note(level, text))

    datasets = tuple(datasets or dataset_choices())
    for f in FIELDS:
        v = state.get(f.name)
        if f.kind == "int":
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                add(f.name, "error", f"{f.label} must be a whole number.")
            else:  # the page's own ranges, in the shared validator's words
                text = spec_mod.range_problem(f.label, int(v), int(f.lo), int(f.hi))
                if text:
                    add(f.name, "error", text)
        elif f.kind == "float":
            if not isinstance(v, (int, float)) or not math.isfinite(v) or not f.lo <= v <= f.hi:
                add(f.name, "error", f"{f.label} must be a number between {f.lo:g} and {f.hi:g}.")
    if state.get("dataset") not in datasets:
        add("dataset", "error", f"Unknown dataset {state.get('dataset')!r}; choose one of {', '.join(datasets)}.")
    elif data is not None and data.name == state.get("dataset") and not data.downloaded:
        add("dataset", "error", data.note())
    _check_data_extras(state, add)
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
        if name in OPTION_FIELDS:
            n_runs += 1
            _check_lr_free(name, state, add, available)
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
        hidden = width * width * max(depth - 2, 0) * (9 if effective_arch(state) == "cnn" else 1)
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

    if "steps" not in notes:
        text = spec_mod.steps_problem(state.get("steps"))
        if text:
            add("steps", "error", text)
    if not has_errors(notes):  # the form makes a spec: does this server have room for it?
        device = state.get("device") if state.get("device") in ("cpu", "cuda", "mps") else device_kind
        try:
            text = spec_mod.memory_problem(spec_fields(state), device or "cpu")
        except (ValueError, TypeError, KeyError) as exc:  # a bad AGD_VIZ_MAX_MEMORY_MB
            text = str(exc)
        if text:
            add("width", "error", text)

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
    macs = network_macs(state)
    if macs is None:
        macs = width * width * max(depth - 2, 0) + width * 74  # 74: digits' 64 inputs + 10 classes
    return 6.0 * macs * batch * steps * max(n_runs, 1) / CPU_FLOPS


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
        elif name in OPTION_FIELDS:  # one run, with its options: "prodigy:d_coef=0.5"
            options = normalize_options(name, state.get(OPTION_FIELDS[name], "")).replace(" ", "")
            out.append(f"{name}:{options}" if options else name)
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
        metrics="full", same_init=bool(state["same_init"]), arch=effective_arch(state),
        data_options=data_options(state),
    )


def state_from_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The form that would produce a stored spec (a group's), as far as the form can express it."""
    state = dict(DEFAULTS)
    for key in ("dataset", "arch", "depth", "width", "batch_size", "steps", "seed", "device", "same_init"):
        if key in spec:
            state[key] = spec[key]
    state["train_samples"] = int((spec.get("data_options") or {}).get("train_samples", 0) or 0)
    names, rates, gain, options = [], {k: [] for k in LR_FIELDS}, 1.0, {}
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
        elif name in OPTION_FIELDS:  # the first run of it sets the options
            options.setdefault(OPTION_FIELDS[name], rest.strip())
        else:
            default_lr = parse_rates(DEFAULTS[LR_FIELDS[name]])[0]
            rates[name].append(float(kwargs.get("lr", default_lr)))
    if names:
        state["optimizers"] = tuple(n for n in OPTIMIZER_NAMES if n in names)
    state["gain"] = gain
    state.update(options)
    for name, rs in rates.items():
        if rs:
            state[LR_FIELDS[name]] = format_rates(dict.fromkeys(rs))
    # Values the form cannot hold (depth 100, an unknown data set, 9 rates) fall back to its defaults.
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


# -------------------------------------------------------------------------------------------------
# Architecture and image data


def image_shape(dataset: Any) -> tuple[int, int, int] | None:
    """(channels, height, width) of a data set whose inputs are images (digits, MNIST,
    Fashion-MNIST, CIFAR-10), else None. The Architecture choice (MLP / CNN) is offered for these."""
    shape = spec_mod.DATA_SHAPES.get(str(dataset))
    return shape.input_shape if shape is not None else None


def effective_arch(state: Mapping[str, Any]) -> str:
    """The network a run of this form trains: the form's choice on image data, else an MLP (a link
    may carry arch=cnn beside a 2-D set, where the control is not shown)."""
    arch = state.get("arch", "mlp")
    return arch if arch in ARCHS and image_shape(state.get("dataset")) is not None else "mlp"


def data_options(state: Mapping[str, Any]) -> dict[str, Any]:
    """`RunSpec.data_options` of the form: a subset of the training images of a downloadable set."""
    n = state.get("train_samples")
    if state.get("dataset") in DOWNLOADABLE and isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return {"train_samples": n}
    return {}


def network_macs(state: Mapping[str, Any]) -> float | None:
    """Multiply-adds of one forward pass per example: Σ_k d_k·d_{k−1} for an MLP; a conv layer
    counts once per output position. None if the form cannot say (a bad value)."""
    try:
        fields = dict(dataset=state["dataset"], depth=int(state["depth"]), width=int(state["width"]),
                      arch=effective_arch(state), data_options=data_options(state))
        weights, outs, _ = spec_mod._layers(fields)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if fields["arch"] != "cnn":
        return float(sum(weights))
    width = max(fields["width"], 1)
    conv = sum(w * (o / width) for w, o in zip(weights[:-1], outs[:-1]))
    return float(conv + weights[-1])


def _check_data_extras(state: Mapping[str, Any], add) -> None:
    """Architecture (a CNN needs image data and depth ≥ 2) and the training-image subset."""
    if state.get("arch") not in ARCHS:
        add("arch", "error", f"Architecture must be one of {', '.join(ARCHS)}.")
    elif effective_arch(state) == "cnn":
        depth = state.get("depth")
        if isinstance(depth, int) and not isinstance(depth, bool) and depth < 2:
            add("arch", "error", "A CNN needs depth ≥ 2: at least one convolution and the final linear layer.")
    dataset, n = state.get("dataset"), state.get("train_samples")
    if dataset in DOWNLOADABLE and isinstance(n, int) and not isinstance(n, bool) and n > 0:
        most = spec_mod.DATA_SHAPES[dataset].n_train
        if n < 10:
            add("train_samples", "error", "Use at least 10 training images (0 uses all of them).")
        elif n > most:
            add("train_samples", "error",
                f"{dataset_title(dataset)} has {most:,} training images; use at most that (0 uses all).")


# -------------------------------------------------------------------------------------------------
# Optimisers from optional packages (Prodigy, D-Adapt Adam, schedule-free AdamW)

# = agd_viz.optim.OPTIMIZERS[name].defaults, repeated so the form can check options without torch
# (a test checks they agree). The first key of each OPTION_HINTS entry is its main option.
OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "prodigy": {"lr": 1.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "decouple": True,
                "use_bias_correction": False, "safeguard_warmup": False, "d0": 1e-6, "d_coef": 1.0},
    "dadapt-adam": {"lr": 1.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                    "decouple": False, "use_bias_correction": False, "d0": 1e-6},
    "schedulefree-adamw": {"lr": 0.0025, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                           "warmup_steps": 0, "r": 0.0, "weight_lr_power": 2.0},
}
OPTION_HINTS = {
    "prodigy": "d_coef=1, weight_decay=0",
    "dadapt-adam": "lr=1, weight_decay=0",
    "schedulefree-adamw": "lr=0.0025, warmup_steps=0",
}
OPTION_HELP = {
    "prodigy": "Prodigy (Mishchenko & Defazio 2023) estimates its step size d as it trains; d_coef "
               "scales the estimate (1: the package's default).",
    "dadapt-adam": "D-Adaptation Adam (Defazio & Mishchenko 2023) estimates its step size d as it "
                   "trains; lr multiplies it (leave it at 1).",
    "schedulefree-adamw": "Schedule-free AdamW (Defazio et al. 2024) needs no learning-rate schedule, "
                          "but does have a learning rate (default 0.0025).",
}
# = agd_viz.optim's optional packages: module to look for, command that installs it.
OPTIONAL_PACKAGES = {
    "prodigy": ("prodigyopt", "pip install prodigyopt"),
    "dadapt-adam": ("dadaptation", "pip install dadaptation"),
    "schedulefree-adamw": ("schedulefree", "pip install schedulefree"),
}
_POSITIVE = {"lr", "eps", "d0", "d_coef"}
_NON_NEGATIVE = {"weight_decay", "warmup_steps", "r", "weight_lr_power"}
_BELOW_ONE = {"beta1", "beta2"}
MAX_OPTIONS_CHARS = 200


def package_status(module: str, install: str) -> tuple[bool, str | None]:
    """(True, None) if `module` can be imported here, else (False, `install`). Nothing is imported."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install counts as missing
        found = False
    return (True, None) if found else (False, install)


def optimizer_status(name: str) -> tuple[bool, str | None]:
    """Whether optimiser `name` can be built here, and if not the command that installs it
    ("pip install prodigyopt"). Asks agd_viz.optim's registry when something already imported it
    (it is the authority: `optim.optimizer_available`); otherwise checks the same packages
    without importing torch."""
    optim = sys.modules.get("agd_viz.optim")
    if optim is not None and hasattr(optim, "optimizer_available"):
        try:
            return optim.optimizer_available(name)
        except ValueError:  # not in the registry at all
            return False, None
    required = OPTIONAL_PACKAGES.get(name)
    return package_status(*required) if required else (True, None)


def optimizer_statuses() -> dict[str, tuple[bool, str | None]]:
    """`optimizer_status` of every optimiser the form offers from an optional package."""
    return {name: optimizer_status(name) for name in LR_FREE}


def _parse_option(name: str, key: str, text: str, default: Any) -> Any:
    title = OPTIMIZER_TITLES.get(name, name)
    if key == "init":
        if text.lower() not in ("agd", "default"):
            raise ValueError(f"{title}: init must be agd or default, got {text!r}.")
        return text.lower()
    if isinstance(default, bool):
        if text.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return text.lower() in ("true", "1", "yes", "on")
        raise ValueError(f"{title}: {key} must be true or false, got {text!r}.")
    try:
        value = int(text) if isinstance(default, int) else float(text)
    except ValueError:
        kind = "a whole number" if isinstance(default, int) else "a number"
        raise ValueError(f"{title}: {key} must be {kind}, got {text!r}.") from None
    if not math.isfinite(value):
        raise ValueError(f"{title}: {key} must be finite, got {text!r}.")
    if key in _POSITIVE and value <= 0:
        raise ValueError(f"{title}: {key} must be > 0, got {text}.")
    if key in _NON_NEGATIVE and value < 0:
        raise ValueError(f"{title}: {key} must be ≥ 0, got {text}.")
    if key in _BELOW_ONE and not 0 <= value < 1:
        raise ValueError(f"{title}: {key} must be in [0, 1), got {text}.")
    return value


def _option_items(name: str, text: Any) -> list[tuple[str, str, Any]]:
    """(key, value as typed, parsed value) of an options text; ValueError says what is wrong."""
    text = str(text or "").strip()
    title = OPTIMIZER_TITLES.get(name, name)
    if len(text) > MAX_OPTIONS_CHARS:
        raise ValueError(f"{title}: the options are too long (at most {MAX_OPTIONS_CHARS} characters).")
    defaults = OPTION_DEFAULTS[name]
    valid = [*defaults, "init"]
    out, seen = [], set()
    for item in re.split(r"[,;\s]+", re.sub(r"\s*=\s*", "=", text)):
        if not item:
            continue
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not key or not value:
            raise ValueError(f"{title}: write options as key=value, e.g. {OPTION_HINTS[name]}; got {item!r}.")
        if key not in valid:
            raise ValueError(f"{title}: unknown option {key!r}; valid: {', '.join(valid)}.")
        if key in seen:
            raise ValueError(f"{title}: {key} is given twice.")
        seen.add(key)
        out.append((key, value, _parse_option(name, key, value, defaults.get(key))))
    return out


def parse_options(name: str, text: Any) -> dict[str, Any]:
    """"d_coef=0.5, decouple=false" -> {"d_coef": 0.5, "decouple": False} for optimiser `name`
    (keys and types as agd_viz.optim's registry has them). ValueError: one sentence for the user."""
    return {key: value for key, _, value in _option_items(name, text)}


def normalize_options(name: str, text: Any) -> str:
    """A valid options text as the user spelled its values ("d_coef=0.5, weight_decay=1e-2");
    ValueError if invalid."""
    return ", ".join(f"{key}={typed}" for key, typed, _ in _option_items(name, text))


def _check_lr_free(name: str, state: Mapping[str, Any], add, available) -> None:
    key = OPTION_FIELDS[name]
    ok, install = (available or {}).get(name) or optimizer_status(name)
    if not ok:
        how = f" Install it with `{install}`, or untick it." if install else " Untick it."
        add(key, "error", f"{OPTIMIZER_TITLES[name]} needs a package that is not installed here.{how}")
    try:
        parse_options(name, state.get(key, ""))
    except ValueError as exc:
        add(key, "error", str(exc))


# -------------------------------------------------------------------------------------------------
# Downloadable data sets (MNIST, Fashion-MNIST, CIFAR-10)

ENV_ALLOW_DOWNLOADS = "AGD_VIZ_ALLOW_DOWNLOADS"  # "0": a shared demo server fetches nothing
ENV_DATA_URL = "AGD_VIZ_DATA_URL"  # a mirror laid out like the cache: <url>/<dataset>/<file>


def downloads_allowed() -> bool:
    """Whether the pages may download data sets ($AGD_VIZ_ALLOW_DOWNLOADS, default yes)."""
    return os.environ.get(ENV_ALLOW_DOWNLOADS, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class DataStatus:
    """A downloadable data set as the form shows it: whether it is in the cache, and its size."""

    name: str
    title: str
    size_bytes: int
    downloaded: bool
    path: str
    allowed: bool = True  # downloads allowed on this server

    @property
    def size_text(self) -> str:
        return spec_mod.format_bytes(self.size_bytes)

    @property
    def button_label(self) -> str:
        return f"Download {self.title} ({self.size_text})"

    def note(self) -> str:
        """Why Start waits, and what to do (shown next to the data set control)."""
        if self.allowed:
            return (f"{self.title} is not downloaded yet. Press “{self.button_label}” below: it is fetched "
                    "once from its publisher, checked against the published checksums and kept on this "
                    "server for later runs.")
        return (f"{self.title} is not downloaded on this server, and downloads from the page are turned "
                f"off here ({ENV_ALLOW_DOWNLOADS}=0). Whoever runs the server can fetch it with "
                f"`python -m agd_viz download {self.name}`.")


def data_status(name: Any) -> DataStatus | None:
    """The download status of a downloadable data set; None for the built-in ones. Imports
    agd_viz.downloads (and torch) only when such a set is chosen."""
    if name not in DOWNLOADABLE:
        return None
    from agd_viz import downloads

    source = downloads.SOURCES[name]
    return DataStatus(name, source.title, int(source.size), downloads.is_downloaded(name),
                      str(downloads.dataset_dir(name)), downloads_allowed())


def download_base_url(name: str) -> str | None:
    """Where to fetch `name` from: $AGD_VIZ_DATA_URL/<name> when set (a local mirror, e.g. a
    workshop room without internet), else None (the publishers' mirrors)."""
    base = os.environ.get(ENV_DATA_URL, "").strip()
    return f"{base.rstrip('/')}/{name}" if base else None


_DOWNLOAD_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def download_dataset(name: str, progress=None) -> tuple[bool, str]:
    """Fetch a downloadable data set into the cache with agd_viz.downloads (checksums checked,
    files moved into place only when intact). Returns (True, its folder) or (False, why not: the
    library's message, which names the file and every URL tried). One download per data set at a
    time in this process: a second session waits, then finds the files there.
    `progress(done_bytes, total_bytes, message)` as in `downloads.download`."""
    if name not in DOWNLOADABLE:
        return False, f"{name!r} is not a downloadable data set."
    if not downloads_allowed():
        return False, f"downloads are turned off on this server ({ENV_ALLOW_DOWNLOADS}=0)."
    from agd_viz import downloads

    with _LOCKS_GUARD:
        lock = _DOWNLOAD_LOCKS.setdefault(name, threading.Lock())
    with lock:
        try:
            path = downloads.download(name, progress=progress, base_url=download_base_url(name))
        except (downloads.DownloadError, OSError, ValueError) as exc:
            return False, str(exc)
    return True, str(path)


def download_progress(done: int, total: int, message: str) -> tuple[float, str]:
    """A progress bar's fraction and text: "MNIST: t10k-images… (3/4) · 1.2 MB of 12 MB"."""
    fraction = min(max(done / total, 0.0), 1.0) if total else 0.0
    return fraction, f"{message} · {spec_mod.format_bytes(done)} of {spec_mod.format_bytes(total)}"


# -------------------------------------------------------------------------------------------------
# The paper's comparisons (agd_viz.paper): presets, and its numbers beside the measured ones

PAPER_PRESETS = {key: p for key, p in paper_mod.PRESETS.items() if p.kind == "run"}
# Defaults of the keys that tell optimiser runs apart (so "adam" and "adam:lr=0.001" match).
_BASE_DEFAULTS = {"agd": {"gain": 1.0}, "adam": {"lr": 1e-3}, "adamw": {"lr": 1e-3, "weight_decay": 0.01},
                  "sgd": {"lr": 0.1, "momentum": 0.0}}


def paper_preset_state(key: str) -> dict[str, Any]:
    """The whole form for a run preset of agd_viz.paper (values the form cannot hold fall back)."""
    return state_from_spec(dict(PAPER_PRESETS[key].spec))


def paper_preset_note(key: str) -> str | None:
    """For a preset made for a GPU: that it is slow on a CPU, with the estimate."""
    preset = PAPER_PRESETS[key]
    if not preset.gpu:
        return None
    seconds = estimate_seconds(paper_preset_state(key))
    about = f" (about {format_duration(seconds)} on a laptop CPU)" if seconds else ""
    return (f"Made for a GPU: slow on a CPU{about}. Choose device cuda if this server has one, or "
            "fewer steps to get a first look.")


def _option_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return float(low)
    except ValueError:
        return low


def optimizer_key(text: Any) -> tuple:
    """An optimiser spec in a comparable form: name and the settings that differ from their
    defaults, so "adam", "adam:lr=0.001" and "adam:lr=1e-3" are the same optimiser."""
    name, _, rest = str(text).partition(":")
    name = name.strip().lower()
    defaults = {**_BASE_DEFAULTS, **OPTION_DEFAULTS}.get(name, {})
    kwargs = {}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            continue
        v = _option_value(value)
        d = defaults.get(key)
        if d is not None and (v == d if not isinstance(d, bool) else v is d):
            continue
        kwargs[key] = v
    return name, tuple(sorted(kwargs.items(), key=lambda kv: kv[0]))


def paper_preset_for(spec: Mapping[str, Any]) -> str | None:
    """The run preset of agd_viz.paper with paper numbers whose network and data this comparison
    trained (data set, architecture, depth, width), preferring the one with the same optimisers;
    None if there is none."""
    mine = {optimizer_key(o) for o in spec.get("optimizers") or ()}
    best, best_score = None, None
    for key, preset in PAPER_PRESETS.items():
        if not (preset.expected or preset.context):
            continue
        p = preset.spec
        same_net = (spec.get("dataset") == p.get("dataset") and spec.get("arch", "mlp") == p.get("arch", "mlp")
                    and spec.get("depth") == p.get("depth") and spec.get("width") == p.get("width"))
        theirs = {optimizer_key(o) for o in p.get("optimizers") or ()}
        if not same_net or not mine & theirs:
            continue
        score = (mine == theirs, len(mine & theirs))
        if best_score is None or score > best_score:
            best, best_score = key, score
    return best


def _percent(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "–"
    return f"{100 * f:.1f} %" if math.isfinite(f) else "–"


def paper_table(spec: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> tuple[pd.DataFrame, str] | None:
    """The paper's results beside this comparison's (a group's spec and its run rows): a frame with
    Figure, Optimiser, Paper, Measured here (final test accuracy of each finished run), and a
    caption on how the protocols differ. None when no paper preset matches the comparison."""
    key = paper_preset_for(spec)
    if key is None:
        return None
    preset = PAPER_PRESETS[key]
    by_key: dict[tuple, Mapping] = {}
    for row in rows:
        by_key.setdefault(optimizer_key(row.get("optimizer")), row)
    measured: dict[str, float | None] = {}
    status: dict[str, str] = {}
    for name in (*preset.expected, *preset.context):
        result = paper_mod.PAPER_RESULTS[name]
        row = by_key.get(optimizer_key(result.optimizer)) if result.optimizer else None
        if row is None:
            continue
        summary = row.get("summary") or {}
        if row.get("status") == "finished" and summary.get("final_test_acc") is not None:
            measured[result.optimizer] = summary["final_test_acc"]
        else:
            status[result.optimizer] = str(row.get("status") or "queued")
    table = []
    for r in paper_mod.compare(key, measured):
        opt = next((paper_mod.PAPER_RESULTS[n].optimizer for n in (*preset.expected, *preset.context)
                    if paper_mod.PAPER_RESULTS[n].display == r["paper"]), None)
        if r["measured"] is not None:
            got = _percent(r["measured"])
        elif opt in status:
            got = status[opt]
        else:
            got = "–"
        table.append({"Figure": r["figure"], "Optimiser (paper)": r["optimizer"], "Paper": r["paper"],
                      "Measured here": got,
                      "": "expected" if r["role"] == "expected" else "for orientation"})
    steps, want = spec.get("steps"), preset.spec.get("steps")
    parts = [f"Measured: final test accuracy of each finished run (preset “{preset.title}”)."]
    if isinstance(steps, int) and isinstance(want, int) and steps != want:
        parts.append(f"This comparison ran {steps:,} steps; the preset runs {want:,}.")
    parts.append(preset.notes or "The paper's protocol differs (square loss, augmentation, longer "
                 "training): expect close, not equal, numbers.")
    return pd.DataFrame(table), " ".join(parts)
