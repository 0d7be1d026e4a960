"""The Live page's form: its fields, defaults and presets, the URL it round-trips through, the checks
that explain a bad value next to its control, and the `RunSpec` fields it makes.

No streamlit, no torch (docs/architecture.md). The words of every refusal come from the layer that
owns the rule: ranges from `spec`, optimiser options from `optspec`, dataset options from
`datasets`, memory from `spec.memory_problem`, time from `cost`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from agd_viz import cost, fmt, optspec, paper
from agd_viz import datasets as catalog
from agd_viz import spec as spec_mod
from agd_viz.views import links

# -------------------------------------------------------------------------------------------------
# Form fields

DEVICES = spec_mod.DEVICES
ARCHS = spec_mod.ARCHS
LOSSES = spec_mod.LOSSES
LOSS_TITLES = {"xent": "cross-entropy", "square": "square (paper)"}
LOSS_HELP = ("Square: the paper's loss, ‖f(x) − y‖²/(2·d_out) with one-hot targets scaled by √d_out; every "
             "experiment of the paper but ImageNet uses it. Cross-entropy: the usual choice, to which the paper "
             "carries AGD by a second-order argument.")
AUGMENTABLE = {name: a.describe() for name, a in catalog.AUGMENTATIONS.items()}
ARCH_TITLES = {"mlp": "MLP", "cnn": "CNN"}
DATASET_CHOICES = tuple(catalog.DATASETS)
OPTIMIZER_NAMES = optspec.names()
# Optimisers the form offers with a list of learning rates (one run each), and with an options
# text (one run, "key=value, key=value"; empty: the package's defaults).
RATE_OPTIMIZERS = optspec.names("rates")
OPTION_OPTIMIZERS = optspec.names("options")
LR_FIELDS = {n: f"{n}_lr" for n in RATE_OPTIMIZERS}
OPTION_FIELDS = {n: f"{n.replace('-', '_')}_opts" for n in OPTION_OPTIMIZERS}
OPTION_OF = {v: k for k, v in OPTION_FIELDS.items()}

# Ranges of the page's controls. Narrower than RunSpec's (spec.LIMITS): the live page is shared by
# a room of attendees on one server, so one click must not start a job that runs for hours or
# takes the machine's memory. The pages' limits (spec.page_limits: the Sweep page has the same,
# and the job manager holds every session's submission to them; an operator raises them with
# AGD_VIZ_PAGE_MAX_*), read once: a bad setting is said by the job manager, with the defaults here.
try:
    _PAGE = spec_mod.page_limits()
except ValueError:
    _PAGE = {name: (1, hi) for name, hi in spec_mod.PAGE_LIMITS.items()}
UI_LIMITS = {
    **_PAGE,
    "seed": (0, 2**31 - 1),
    "train_samples": (0, 60_000),  # 0: all; only for the downloadable sets
}
MAX_RATES = 4  # learning rates per baseline
MAX_RUNS = 8  # runs per comparison
MAX_OPTIONS_CHARS = 200
# Hidden weights per network (width² · (depth − 2)): 16M float32 weights are 64 MB, ×4 with Adam's
# buffers and a gradient, per run. Past that a shared demo server would swap.
MAX_HIDDEN_WEIGHTS = 16_000_000
# Above this many seconds (on this machine, calibrated on its finished runs) Start warns.
SLOW_S = 120.0
# Only models this small get a decision-boundary picture (= the worker's limit, agd_viz.train).
BOUNDARY_MAX_PARAMS = 1_000_000


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


_DEFAULT_RATES = {n: f"{optspec.OPTIMIZERS[n].defaults['lr']:g}" for n in RATE_OPTIMIZERS}

FIELDS: tuple[Field, ...] = (
    Field("dataset", "choice", catalog.DEFAULT_DATASET, "Dataset", choices=DATASET_CHOICES),
    Field("arch", "choice", "mlp", "Architecture", choices=ARCHS),
    _int_field("depth", 8, "Depth (weight matrices)"),
    _int_field("width", 128, "Width"),
    _int_field("batch_size", 128, "Batch size"),
    _int_field("steps", 300, "Steps"),
    _int_field("seed", 0, "Seed"),
    _int_field("train_samples", 0, "Training images"),
    Field("device", "choice", "auto", "Device", choices=DEVICES),
    Field("optimizers", "multi", ("agd", "adam"), "Optimisers", choices=OPTIMIZER_NAMES),
    Field("gain", "float", 1.0, "AGD gain", 0.01, optspec.MAX_GAIN),
    *(Field(LR_FIELDS[n], "rates", _DEFAULT_RATES[n], f"{optspec.title(n)} learning rates")
      for n in RATE_OPTIMIZERS),
    *(Field(OPTION_FIELDS[n], "options", "", f"{optspec.title(n)} options") for n in OPTION_OPTIMIZERS),
    Field("same_init", "bool", False, "Same init for all"),
    Field("loss", "choice", "xent", "Loss", choices=spec_mod.LOSSES),
    # The paper's crop and flip, where the dataset has it (datasets.AUGMENTATIONS: CIFAR-10).
    Field("augment", "bool", True, "Augment training batches"),
)
FIELD = {f.name: f for f in FIELDS}
DEFAULTS: dict[str, Any] = {f.name: f.default for f in FIELDS}
# Query parameters that are not form fields.
GROUP_PARAM = "group"
PRESENT_PARAM = "present"


def default_state() -> dict[str, Any]:
    return dict(DEFAULTS)


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
            "default rate 1e-3 barely moves. The paper shows this on CIFAR-10 "
            f"({paper.cite('fig1_left')}); this preset reproduces it on digits.",
            dict(dataset="digits", depth=32, width=128, batch_size=128, steps=400, seed=0,
                 optimizers=("agd", "adam"), gain=1.0, adam_lr="1e-3", same_init=False),
        ),
        Preset(
            "Wide vs narrow",
            "A wide, shallow network (width 1024, depth 4). Run it, then 'Deep and narrow': AGD runs "
            "both unchanged, while Adam and SGD keep the same rates on networks of very different shape.",
            dict(dataset="digits", depth=4, width=1024, batch_size=128, steps=300, seed=0,
                 optimizers=("agd", "adam", "sgd"), gain=1.0, adam_lr="1e-3", sgd_lr="0.1"),
        ),
        Preset(
            "Deep and narrow",
            "A deep, narrow network (depth 16, width 32): AGD's η itself grows with depth, but each "
            "layer moves by η/L, so the per-layer relative updates stay small and balanced across the 16 layers.",
            dict(dataset="digits", depth=16, width=32, batch_size=128, steps=400, seed=0,
                 optimizers=("agd", "adam", "sgd"), gain=1.0, adam_lr="1e-3", sgd_lr="0.1"),
        ),
        Preset(
            "AGD, Muon and Adam at depth 32",
            "Beyond the paper: AGD beside its successor Muon (lr 0.02, its authors' value) and Adam (1e-3) "
            "on a 32-layer MLP of width 128. Compare the update stable rank: AGD's step is the normalised "
            "gradient (its stable rank, near 1), Muon's is orthogonalised (many times higher).",
            dict(dataset="digits", depth=32, width=128, batch_size=128, steps=400, seed=0,
                 optimizers=("agd", "adam", "muon"), gain=1.0, muon_lr="0.02", adam_lr="1e-3"),
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

PAPER_PRESETS = {key: p for key, p in paper.PRESETS.items() if p.kind == "run"}


def paper_preset_state(key: str) -> dict[str, Any]:
    """The whole form for a run preset of agd_viz.paper (values the form cannot hold fall back)."""
    return state_from_spec(dict(PAPER_PRESETS[key].spec))


def paper_preset_note(key: str) -> str | None:
    """For a preset made for a GPU: that it is slow on a CPU, with the estimate."""
    preset = PAPER_PRESETS[key]
    if not preset.gpu:
        return None
    seconds = estimate_seconds(paper_preset_state(key))
    about = f" (about {fmt.estimate(seconds)} on this server's CPU)" if seconds else ""
    return (f"Made for a GPU: slow on a CPU{about}. Choose device cuda if this server has one, or "
            "fewer steps to get a first look.")


# -------------------------------------------------------------------------------------------------
# Learning rates and options, as typed


def parse_rates(text: str) -> list[float]:
    """"1e-3, 1e-2" -> [0.001, 0.01]. Raises ValueError with one sentence for the user."""
    items = fmt.split_list(text)
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
        if v > optspec.MAX_LR:
            raise ValueError(f"learning rate {item} is far too large (at most {optspec.MAX_LR:g}).")
        rates.append(v)
    unique = list(dict.fromkeys(rates))
    if len(unique) > MAX_RATES:
        raise ValueError(f"at most {MAX_RATES} learning rates at once, got {len(unique)}.")
    return unique


def format_rates(rates: Iterable[float]) -> str:
    return ", ".join(f"{r:g}" for r in rates)


def normalize_rates(text: str) -> str:
    """A valid rate list as the user spelled it ("1e-3, 1e-2"), repeats dropped; ValueError if
    invalid. Keeping the spelling lets a link read back exactly what was typed."""
    parse_rates(text)
    seen, out = set(), []
    for item in fmt.split_list(text):
        if float(item) not in seen:
            seen.add(float(item))
            out.append(item)
    return ", ".join(out)


def _options_spec(name: str, text: Any) -> optspec.OptSpec:
    text = str(text or "").strip()
    if len(text) > MAX_OPTIONS_CHARS:
        raise ValueError(f"{optspec.title(name)}: the options are too long (at most {MAX_OPTIONS_CHARS} characters).")
    try:
        return optspec.parse(f"{name}:{text}", require_package=False)
    except ValueError as exc:
        hint = optspec.OPTIMIZERS[name].hint
        extra = f" Write options as key=value, e.g. {hint}." if "key=value" in str(exc) and hint else ""
        raise ValueError(f"{exc}.{extra}") from None


def parse_options(name: str, text: Any) -> dict[str, Any]:
    """"d_coef=0.5, decouple=false" -> {"d_coef": 0.5, "decouple": False} for optimiser `name`,
    with optspec's grammar and checks. ValueError: one sentence for the user."""
    parsed = _options_spec(name, text)
    return {key: parsed.kwargs[key] for key, _ in parsed.given}


def normalize_options(name: str, text: Any) -> str:
    """A valid options text as the user spelled its values ("d_coef=0.5, weight_decay=1e-2");
    ValueError if invalid."""
    return _options_spec(name, text).options_text


def optimizer_statuses() -> dict[str, tuple[bool, str | None]]:
    """Whether each optimiser from an optional package can be built here, with its install
    command if not (nothing is imported)."""
    return {name: optspec.available(name) for name in OPTION_OPTIMIZERS}


# -------------------------------------------------------------------------------------------------
# Field values <-> text (the URL)


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
    if f.kind in ("float", "bool", "choice"):  # the grammar of every link value (views.links)
        return links.parse_scalar(f.kind, text, f.lo, f.hi, tuple(choices or f.choices))
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
        return f"{float(value):g}"
    if f.kind == "multi":
        return ",".join(value)
    if f.kind in ("rates", "options"):
        try:
            return str(parse_value(f, value))
        except ValueError:
            return str(value)
    return str(value)


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
            default = format_value(f, DEFAULTS[f.name])
            notes.append(f"The link's {f.label.lower()} ({f.name}={shown!r}) was not used: {str(exc).rstrip('.')}. "
                         + (f"Using the default, {default}." if default else "Left empty: the package's defaults."))
    return state, notes


def query_from_state(state: Mapping[str, Any]) -> dict[str, str]:
    """Every form field as a URL string, in form order (a complete, stable bookmark)."""
    return {f.name: format_value(f, state.get(f.name, f.default)) for f in FIELDS}


def form_params(params: Mapping[str, Any]) -> dict[str, str]:
    """The subset of query parameters that are form fields (to tell a pasted link from ours)."""
    return {k: str(v) for k, v in params.items() if k in FIELD}


def parse_group(raw: Any) -> int | None:
    """`?group=N` -> N, or None when absent or not a run group number (`fmt.parse_id`)."""
    return None if raw is None else fmt.parse_id(raw)


def parse_flag(raw: Any) -> bool:
    return fmt.truth(raw) is True


# -------------------------------------------------------------------------------------------------
# Architecture and data options


def image_shape(dataset: Any) -> tuple[int, int, int] | None:
    """(channels, height, width) of a dataset whose inputs are images, else None. The
    Architecture choice (MLP / CNN) is offered for these."""
    info = catalog.DATASETS.get(str(dataset))
    return info.input_shape if info is not None else None


def effective_arch(state: Mapping[str, Any]) -> str:
    """The network a run of this form trains: the form's choice on image data, else an MLP (a link
    may carry arch=cnn beside a 2-D set, where the control is not shown)."""
    arch = state.get("arch", "mlp")
    return arch if arch in ARCHS and image_shape(state.get("dataset")) is not None else "mlp"


def data_options(state: Mapping[str, Any]) -> dict[str, Any]:
    """`RunSpec.data_options` of the form: a subset of the training images of a downloadable set."""
    n = state.get("train_samples")
    if state.get("dataset") in catalog.DOWNLOADABLE and isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return {"train_samples": n}
    return {}


# -------------------------------------------------------------------------------------------------
# Checks: one message per control


@dataclass(frozen=True)
class Note:
    level: str  # "error" (blocks Start) | "warning" | "info"
    text: str


def check(state: Mapping[str, Any], devices: Iterable[str] | None = None,
          datasets: Sequence[str] | None = None, device_kind: str | None = None,
          data: Any = None, available: Mapping[str, tuple[bool, str | None]] | None = None,
          speed: cost.Speed | None = None) -> dict[str, list[Note]]:
    """What is wrong (or worth knowing) about each field, keyed by field name ("start" for the
    whole configuration). `devices`: those available here; None skips that check. `device_kind`:
    what "auto" trains on here ("cpu", "cuda"), for the memory budget (the job manager refuses
    with the same sentence at Start). `data`: the chosen dataset's download status
    (views.datasets.DataStatus; None: nothing to download). `available`: optimiser name -> (can
    be built here, install command) for the optional ones (default: `optimizer_statuses`).
    `speed`: this machine's calibrated speed, for the time warning."""
    notes: dict[str, list[Note]] = {}

    def add(name, level, text):
        notes.setdefault(name, []).append(Note(level, text))

    choices = tuple(datasets or DATASET_CHOICES)
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
    if state.get("dataset") not in choices:
        add("dataset", "error", f"Unknown dataset {state.get('dataset')!r}; choose one of {', '.join(choices)}.")
    elif data is not None and data.name == state.get("dataset") and not data.downloaded:
        add("dataset", "error", data.note())
    _check_data_extras(state, add)
    if state.get("loss", "xent") not in spec_mod.LOSSES:
        add("loss", "error", f"Loss must be one of {', '.join(spec_mod.LOSSES)}.")
    if state.get("device") not in DEVICES:
        add("device", "error", f"Device must be one of {', '.join(DEVICES)}.")
    elif devices is not None and state.get("device") not in ("auto", "cpu") and state["device"] not in devices:
        add("device", "error", f"This machine has no {state['device'].upper()} device; choose auto or cpu.")

    opts = tuple(state.get("optimizers") or ())
    if not opts:
        add("optimizers", "error", "Choose at least one optimiser to train.")
    statuses = available or optimizer_statuses()
    n_runs = 0
    for name in opts:
        kind = optspec.OPTIMIZERS[name].kind if name in optspec.OPTIMIZERS else None
        if kind == "agd":
            n_runs += 1
        elif kind == "options":
            n_runs += 1
            key = OPTION_FIELDS[name]
            ok, install = statuses.get(name) or optspec.available(name)
            if not ok:
                how = f" Install it with `{install}`, or untick it." if install else " Untick it."
                add(key, "error", f"{optspec.title(name)} needs a package that is not installed here.{how}")
            try:
                parse_options(name, state.get(key, ""))
            except ValueError as exc:
                add(key, "error", str(exc))
        elif kind == "rates":
            key = LR_FIELDS[name]
            try:
                n_runs += len(parse_rates(state.get(key, "")))
            except ValueError as exc:
                add(key, "error", f"{optspec.title(name)}: {exc}")
        else:
            add("optimizers", "error", f"Unknown optimiser {name!r}.")
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
    if state.get("dataset") in catalog.TOY_2D and isinstance(depth, int) and isinstance(width, int):
        if width * width * max(depth - 2, 0) + 5 * width > BOUNDARY_MAX_PARAMS:
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

    if not has_errors(notes):
        seconds = estimate_seconds(state, speed)
        if seconds is not None and seconds > SLOW_S:
            add("start", "warning",
                f"This may take about {fmt.estimate(seconds)} on this server (much less on a GPU). "
                "Fewer steps or a smaller width make it quicker.")
    return notes


def has_errors(notes: Mapping[str, list[Note]]) -> bool:
    return any(n.level == "error" for ns in notes.values() for n in ns)


def estimate_seconds(state: Mapping[str, Any], speed: cost.Speed | None = None) -> float | None:
    """Wall time of the whole comparison on this machine (cost.run_seconds); None if the form
    cannot say (a bad value)."""
    try:
        return cost.run_seconds(spec_fields(state), speed)
    except (KeyError, TypeError, ValueError):
        return None


def _check_data_extras(state: Mapping[str, Any], add) -> None:
    """Architecture (a CNN needs image data and depth ≥ 2) and the training-image subset."""
    if state.get("arch") not in ARCHS:
        add("arch", "error", f"Architecture must be one of {', '.join(ARCHS)}.")
    elif effective_arch(state) == "cnn":
        depth = state.get("depth")
        if isinstance(depth, int) and not isinstance(depth, bool) and depth < 2:
            add("arch", "error", "A CNN needs depth ≥ 2: at least one convolution and the final linear layer.")
    dataset, n = state.get("dataset"), state.get("train_samples")
    if dataset in catalog.DOWNLOADABLE and isinstance(n, int) and not isinstance(n, bool) and n > 0:
        most = catalog.DATASETS[dataset].n_train
        if n < 10:
            add("train_samples", "error", "Use at least 10 training images (0 uses all of them).")
        elif n > most:
            add("train_samples", "error",
                f"{catalog.title(dataset)} has {most:,} training images; use at most that (0 uses all).")


# -------------------------------------------------------------------------------------------------
# Form <-> RunSpec fields


def optimizer_specs(state: Mapping[str, Any]) -> list[str]:
    """Optimiser spec strings, AGD first then each baseline at each of its learning rates:
    ["agd", "adam:lr=0.001", "adam:lr=0.01"]. Raises ValueError for an unparsable rate list."""
    out = []
    for name in state.get("optimizers") or ():
        kind = optspec.OPTIMIZERS[name].kind
        if kind == "agd":
            gain = float(state.get("gain", 1.0))
            out.append(optspec.format_spec("agd", {"gain": gain}))
        elif kind == "options":  # one run, with its options: "prodigy:d_coef=0.5"
            given = _options_spec(name, state.get(OPTION_FIELDS[name], "")).given
            out.append(name + (":" + ",".join(f"{k}={t}" for k, t in given) if given else ""))
        else:
            out += [f"{name}:lr={r:g}" for r in parse_rates(state.get(LR_FIELDS[name], ""))]
    return out


def spec_fields(state: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `RunSpec` for this form (metrics always "full": the page draws the
    per-layer charts)."""
    return dict(
        dataset=state["dataset"], depth=int(state["depth"]), width=int(state["width"]),
        optimizers=tuple(optimizer_specs(state)), steps=int(state["steps"]),
        batch_size=int(state["batch_size"]), seed=int(state["seed"]), device=state["device"],
        metrics="full", same_init=bool(state["same_init"]), arch=effective_arch(state),
        data_options=data_options(state), loss=state.get("loss", "xent"),
        augment=bool(state.get("augment", True)) and state["dataset"] in catalog.AUGMENTATIONS,
    )


def state_from_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The form that would produce a stored spec (a group's), as far as the form can express it."""
    state = dict(DEFAULTS)
    for key in ("dataset", "arch", "depth", "width", "batch_size", "steps", "seed", "device", "same_init", "loss"):
        if key in spec:
            state[key] = spec[key]
    if spec.get("dataset") in catalog.AUGMENTATIONS:
        augment = spec.get("augment")
        state["augment"] = catalog.default_augment(spec["dataset"]) if augment is None else bool(augment)
    state["train_samples"] = int((spec.get("data_options") or {}).get("train_samples", 0) or 0)
    names, rates, gain, options = [], {k: [] for k in LR_FIELDS}, 1.0, {}
    for text in spec.get("optimizers") or ():
        parsed = optspec.try_parse(text)
        if parsed is None:
            continue
        name = parsed.name
        if name not in names:
            names.append(name)
        kind = parsed.info.kind
        if kind == "agd":
            gain = float(parsed.kwargs["gain"])
        elif kind == "options":  # the first run of it sets the options
            options.setdefault(OPTION_FIELDS[name], parsed.options_text)
        else:
            rates[name].append(float(parsed.kwargs["lr"]))
    if names:
        state["optimizers"] = tuple(n for n in OPTIMIZER_NAMES if n in names)
    state["gain"] = gain
    state.update(options)
    for name, rs in rates.items():
        if rs:
            state[LR_FIELDS[name]] = format_rates(dict.fromkeys(rs))
    # Values the form cannot hold (depth 100, an unknown dataset, 9 rates) fall back to its defaults.
    state, _ = state_from_query(query_from_state(state))
    return state


# -------------------------------------------------------------------------------------------------
# The page's link


def stored_form(store, group_id: int | None) -> dict[str, Any] | None:
    """The form of a stored comparison's settings (what a link opening it is relative to), or
    None when `group_id` is not a comparison of the store."""
    group = store.get_group(group_id) if group_id is not None else None
    if group is None or group.get("kind") != "compare" or not group.get("spec"):
        return None
    return state_from_spec(group["spec"])


def same_value(f: Field, a: Any, b: Any) -> bool:
    """Whether two values of field `f` mean the same: "1e-3" and "0.001" are one learning rate."""
    if f.kind == "rates":
        try:
            return parse_rates(str(a)) == parse_rates(str(b))
        except ValueError:
            return str(a).strip() == str(b).strip()
    if f.kind == "options":
        try:
            return parse_options(OPTION_OF[f.name], a) == parse_options(OPTION_OF[f.name], b)
        except ValueError:
            return str(a or "").strip() == str(b or "").strip()
    return format_value(f, a) == format_value(f, b)


def link_fields(state: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The form fields of `state` that differ from `base` (default: the form's defaults), as URL
    strings in form order: a link names only what was chosen, so the landing URL is bare."""
    base = base or DEFAULTS
    out = {}
    for f in FIELDS:
        value = state.get(f.name, f.default)
        if not same_value(f, value, base.get(f.name, f.default)):
            out[f.name] = format_value(f, value)
    return out


@dataclass(frozen=True)
class Link:
    """What a URL asks of the Live page, against what the page itself last wrote there: a form
    (None: the link's form is the one already shown), the presenter view (None: unchanged), a
    comparison to open (None: unchanged), and a note per value that could not be used."""

    state: dict | None
    present: bool | None
    group: int | None
    notes: tuple[str, ...]


def read_link(params: Mapping[str, Any], written: Mapping[str, Any],
              base: Mapping[str, Any] | None = None) -> Link:
    """`params`: the query parameters; `written`: what the page wrote last ({"fields", "present",
    "group"}); `base`: the form the link's fields are relative to, the settings of the comparison
    it opens (default: the form's defaults). A pasted or edited link wins over the session; the
    page's own link changes nothing, nor does a link without parameters (the page after a visit
    to another one, which clears the URL). A link that opens another comparison and names no
    field shows that comparison's settings in the form."""
    state, notes, present, group = None, [], None, None
    fields = form_params(params)
    raw = params.get(GROUP_PARAM)
    parsed = parse_group(raw)
    if parsed is not None and parsed != written.get("group"):
        group = parsed
    elif raw is not None and parsed is None:
        notes.append(f"The link's group ({str(raw)[:20]!r}) is not a run group number; showing the latest "
                     "comparison instead.")
    if (fields and fields != written.get("fields")) or (group is not None and base is not None):
        state, field_notes = state_from_query(params, base)
        notes[:0] = field_notes
    if PRESENT_PARAM in params and parse_flag(params[PRESENT_PARAM]) != written.get("present"):
        present = parse_flag(params[PRESENT_PARAM])
    return Link(state, present, group, tuple(notes))


def link_params(state: Mapping[str, Any], group: int | None, present: bool,
                base: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The query parameters of the page as shown: the comparison, the presenter view, and the
    form's fields that differ from `base` (the shown comparison's settings, else the defaults)."""
    wanted = {}
    if group is not None:
        wanted[GROUP_PARAM] = str(group)
    if present:
        wanted[PRESENT_PARAM] = "1"
    wanted.update(link_fields(state, base))
    return wanted
