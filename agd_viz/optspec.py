"""The optimiser vocabulary: which optimisers exist, their options and defaults, and the grammar of
optimiser spec strings. No torch here (docs/architecture.md, "Import rules"): the server checks a
form, labels a run, colours a line and estimates memory with this module alone; `agd_viz.optim`
builds the torch optimiser a spec names.

Grammar (one parser, `parse`, for every spec string and legend label in the project):

    spec   := name [ (":" | whitespace) item { ("," | ";" | whitespace) item } ]
    item   := key "=" value
    name   := lower-case letters, digits, "_" or "-"        e.g. adam, dadapt-adam
    value  := a number, or true/false for a boolean key, or agd/default for the key "init"

so "adam:lr=1e-3,beta2=0.99", its canonical form "adam:lr=0.001,beta2=0.99" and its legend label
"adam lr=0.001 beta2=0.99" all parse to the same `OptSpec`. Every optimiser accepts the key
`init` ("agd": AGD's orthogonal init, "default": PyTorch's), which selects the weight init and is
never passed to the optimiser.

To add an optimiser: add an `OptimizerInfo` to `_BUILTIN` below (its options, defaults, title) and
its factory to `agd_viz.optim.FACTORIES`; `tests/test_optspec.py` checks the two agree.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agd_viz import fmt

__all__ = [
    "OPTIMIZERS", "OptimizerInfo", "OptSpec", "register", "parse", "try_parse", "available",
    "family", "label", "key_of", "state_buffers", "INIT_KINDS", "MAX_SPEC_LEN", "MAX_LR", "MAX_GAIN",
]

INIT_KINDS = ("agd", "default")
MAX_SPEC_LEN = 500
# A learning rate above this is a typo (1e308 would overflow the first update to inf), not a setting.
MAX_LR = 10.0
MAX_GAIN = 1000.0

# Range checks by key name, shared by every optimiser that has the key; other keys only have to
# parse and be finite.
CHECKS: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (lambda v: 0 < v <= MAX_LR, f"> 0 and at most {MAX_LR:g}"),
    "gain": (lambda v: 0 < v <= MAX_GAIN, f"> 0 and at most {MAX_GAIN:g}"),
    "eps": (lambda v: v > 0, "> 0"),
    "weight_decay": (lambda v: 0 <= v <= 10, "between 0 and 10"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "d0": (lambda v: v > 0, "> 0"),
    "d_coef": (lambda v: v > 0, "> 0"),
    "warmup_steps": (lambda v: v >= 0, ">= 0"),
    "r": (lambda v: v >= 0, ">= 0"),
    "weight_lr_power": (lambda v: v >= 0, ">= 0"),
}


@dataclass(frozen=True)
class OptimizerInfo:
    """One optimiser as the app knows it.

    `defaults` fixes each option's type (bool, int or float) and default. `kind` is how the forms
    offer it: "agd" (a gain), "rates" (a list of learning rates, one run each) or "options" (one
    run, its options typed as key=value). `scale_key` is the option whose value picks a colour
    shade within the optimiser's colour family. `state` is the optimiser's per-parameter state in
    units of the model's size (a function of the parsed options). `requires` = (module, install
    command) for an optimiser from an optional package. `step_name` names what its logged step
    size is ("lr", or "d·lr" for the D-adaptation family).
    """

    name: str
    title: str
    defaults: Mapping[str, Any]
    kind: str = "rates"
    scale_key: str | None = "lr"
    state: Callable[[Mapping[str, Any]], int] = field(default=lambda kw: 0, compare=False)
    requires: tuple[str, str] | None = None
    help: str = ""
    hint: str = ""
    step_name: str = "lr"
    validate: Callable[[Mapping[str, Any]], str | None] = field(default=lambda kw: None, compare=False)
    # What the optimiser cannot train, in words ("conv kernels and biases"), for one whose every
    # parameter must be a 2-D weight matrix; None: any parameter. Specs refuse it on a CNN.
    matrices_only: str | None = None


OPTIMIZERS: dict[str, OptimizerInfo] = {}


def register(info: OptimizerInfo) -> OptimizerInfo:
    """Add (or replace) an optimiser of the vocabulary."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", info.name):
        raise ValueError(f"optimiser name must be lower-case letters, digits, '_' or '-', got {info.name!r}")
    if "init" in info.defaults:
        raise ValueError("'init' is a key of every optimiser; do not declare it")
    if info.kind not in ("agd", "rates", "options"):
        raise ValueError(f"kind must be agd, rates or options, got {info.kind!r}")
    info = OptimizerInfo(**{**info.__dict__, "defaults": dict(info.defaults)})
    OPTIMIZERS[info.name] = info
    return info


def _muon_check(kw: Mapping[str, Any]) -> str | None:
    if not 1 <= kw.get("ns_steps", 5) < 100:
        return "ns_steps must be between 1 and 99"
    return None


def _sgd_check(kw: Mapping[str, Any]) -> str | None:
    if kw.get("nesterov") and not kw.get("momentum"):
        return "nesterov=true needs momentum > 0"
    return None


_ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
_BUILTIN = (
    OptimizerInfo("agd", "AGD", {"gain": 1.0}, kind="agd", scale_key="gain",
                  help="Automatic Gradient Descent: no learning rate; gain scales its update (1 is the paper's)."),
    OptimizerInfo("adam", "Adam", _ADAM, state=lambda kw: 2),
    OptimizerInfo("sgd", "SGD", {"lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
                  state=lambda kw: 1 if kw.get("momentum", 0) > 0 else 0, validate=_sgd_check),
    OptimizerInfo("adamw", "AdamW", {**_ADAM, "weight_decay": 0.01}, state=lambda kw: 2),
    OptimizerInfo("nadam", "NAdam", {**_ADAM, "lr": 2e-3, "momentum_decay": 4e-3}, state=lambda kw: 2,
                  help="Adam with Nesterov momentum (Dozat 2016), torch.optim.NAdam."),
    # Beyond the paper: torch.optim.Muon (Jordan et al. 2024), steepest descent under the spectral
    # norm, the line of work that followed AGD. Its lr default here is 0.02, the value its authors
    # use; torch's own default, 1e-3, trains digits at depth 8 × width 64 to 32-63 % train
    # accuracy in 100 steps, against 97-99 % at 0.02 (seeds 0-4; docs/paper.md). weight_decay,
    # momentum, nesterov and ns_steps: torch's.
    OptimizerInfo("muon", "Muon", {"lr": 0.02, "weight_decay": 0.1, "momentum": 0.95, "nesterov": True,
                                   "ns_steps": 5},
                  state=lambda kw: 1, validate=_muon_check, matrices_only="conv kernels or biases",
                  help="Muon (torch.optim.Muon): momentum, orthogonalised by 5 Newton–Schulz steps, so every "
                       "update's larger singular values sit near lr·√max(1, d_out/d_in). 2-D weight matrices "
                       "only: not for the CNN. Default lr 0.02 (its authors'; torch's default is 1e-3)."),
    # Learning-rate-free baselines, from their maintained packages (optional). Defaults are the
    # packages' own; "lr" is a multiplier on the adapted step for Prodigy and D-Adapt (leave it at 1).
    OptimizerInfo(
        "prodigy", "Prodigy",
        {"lr": 1.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "decouple": True,
         "use_bias_correction": False, "safeguard_warmup": False, "d0": 1e-6, "d_coef": 1.0},
        kind="options", scale_key="d_coef", state=lambda kw: 4, requires=("prodigyopt", "pip install prodigyopt"),
        step_name="d·lr", hint="d_coef=1, weight_decay=0",
        help="Prodigy (Mishchenko & Defazio 2023) estimates its step size d as it trains; d_coef scales "
             "the estimate (1: the package's default)."),
    OptimizerInfo(
        "dadapt-adam", "D-Adapt Adam",
        {"lr": 1.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "decouple": False,
         "use_bias_correction": False, "d0": 1e-6},
        kind="options", state=lambda kw: 3, requires=("dadaptation", "pip install dadaptation"),
        step_name="d·lr", hint="lr=1, weight_decay=0",
        help="D-Adaptation Adam (Defazio & Mishchenko 2023) estimates its step size d as it trains; lr "
             "multiplies it (leave it at 1)."),
    OptimizerInfo(
        "schedulefree-adamw", "Schedule-free AdamW",
        {"lr": 0.0025, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "warmup_steps": 0,
         "r": 0.0, "weight_lr_power": 2.0},
        kind="options", state=lambda kw: 2, requires=("schedulefree", "pip install schedulefree"),
        hint="lr=0.0025, warmup_steps=0",
        help="Schedule-free AdamW (Defazio et al. 2024) needs no learning-rate schedule, but does have a "
             "learning rate (default 0.0025)."),
)
for _info in _BUILTIN:
    register(_info)


# --------------------------------------------------------------------------------------------------
# Parsed specs


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class OptSpec:
    """A parsed optimiser spec: registry name, every option (defaults filled in) and the options
    as they were typed (`given`: (key, text) in order). Compares and hashes by name and values."""

    name: str
    kwargs: Mapping[str, Any]
    given: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.kwargs.items()))))

    @property
    def info(self) -> OptimizerInfo:
        return OPTIMIZERS[self.name]

    @property
    def title(self) -> str:
        return self.info.title

    @property
    def is_agd(self) -> bool:
        return self.name == "agd"

    @property
    def init(self) -> str:
        return self.kwargs.get("init", "agd" if self.is_agd else "default")

    @property
    def factory_kwargs(self) -> dict:
        """The options passed to the optimiser (all but "init")."""
        return {k: v for k, v in self.kwargs.items() if k != "init"}

    @property
    def changed(self) -> dict:
        """The options that differ from their defaults (init included when given)."""
        defaults = self.info.defaults
        return {k: v for k, v in self.kwargs.items() if k == "init" or defaults.get(k) != v}

    @property
    def spec(self) -> str:
        """Canonical spec string (non-default keys only, in registry order); parse(s.spec) == s."""
        parts = [f"{k}={_fmt(v)}" for k, v in self.changed.items()]
        return self.name + (":" + ",".join(parts) if parts else "")

    @property
    def label(self) -> str:
        """Legend text: the name, the learning rate always (baselines are compared by it), then
        every other non-default option, in registry order, so equal specs label alike."""
        shown = ["lr"] if "lr" in self.kwargs else []
        shown += [k for k in self.changed if k != "lr"]
        return " ".join([self.name] + [f"{k}={_fmt(self.kwargs[k])}" for k in shown])

    @property
    def lr(self) -> float | None:
        """The learning rate, or None for an optimiser without one (AGD)."""
        value = self.kwargs.get("lr")
        return float(value) if value is not None else None

    @property
    def scale(self) -> float | None:
        """Value of the option that picks the colour shade, relative to its default."""
        key = self.info.scale_key
        if key is None or key not in self.kwargs:
            return None
        default = self.info.defaults[key]
        return float(self.kwargs[key]) / float(default) if default else None

    @property
    def options_text(self) -> str:
        """The options as typed, "key=value, key=value" (what a form's options field holds)."""
        return ", ".join(f"{k}={t}" for k, t in self.given)

    @property
    def state_buffers(self) -> int:
        """Per-parameter state of this optimiser, in units of the model's size (Adam 2, AGD 0)."""
        return int(self.info.state(self.kwargs))


def _parse_value(name: str, key: str, text: str, default):
    if key == "init":
        if text.lower() not in INIT_KINDS:
            raise ValueError(f"{name}: init must be one of {', '.join(INIT_KINDS)}, got {text!r}")
        return text.lower()
    if isinstance(default, bool):
        value = fmt.truth(text)
        if value is None:
            raise ValueError(f"{name}: {key} must be true or false, got {text!r}")
        return value
    try:
        value = int(text) if isinstance(default, int) else float(text)
    except ValueError:
        kind = "an integer" if isinstance(default, int) else "a number"
        raise ValueError(f"{name}: {key} must be {kind}, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}: {key} must be finite, got {text!r}")
    check = CHECKS.get(key)
    if check is not None and not check[0](value):
        raise ValueError(f"{name}: {key} must be {check[1]}, got {text!r}")
    return value


_HEAD = re.compile(r"^\s*([^:\s]*)\s*(?::|\s|$)(.*)$", re.S)
_SEP = re.compile(r"[,;\s]+")


def parse(spec: str | OptSpec, *, require_package: bool = True) -> OptSpec:
    """Parse a spec string or label ("sgd:lr=0.1,momentum=0.9", "sgd lr=0.1 momentum=0.9") into an
    OptSpec. ValueError, one sentence, for anything wrong. With `require_package`, an optimiser
    whose optional package is not installed is refused with its install command."""
    if isinstance(spec, OptSpec):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"optimiser spec must be a string, got {type(spec).__name__}")
    if len(spec) > MAX_SPEC_LEN:
        raise ValueError(f"optimiser spec is too long ({len(spec)} characters, at most {MAX_SPEC_LEN})")
    head = _HEAD.match(spec)
    name, rest = (head.group(1).lower(), head.group(2)) if head else ("", "")
    if name not in OPTIMIZERS:
        shown = repr(name) if name else "''"
        raise ValueError(f"unknown optimiser {shown}; valid: {', '.join(sorted(OPTIMIZERS))}")
    info = OPTIMIZERS[name]
    if require_package:
        ok, install = available(name)
        if not ok:
            raise ValueError(f"optimiser {name!r} needs the package {info.requires[0]!r}, which is not "
                             f"installed; install it with: {install}")
    valid = sorted(info.defaults) + ["init"]
    kwargs: dict[str, Any] = dict(info.defaults)
    given: list[tuple[str, str]] = []
    for item in _SEP.split(re.sub(r"\s*=\s*", "=", rest.strip())):
        if not item:
            continue
        key, eq, value = item.partition("=")
        key = key.lower()
        if not eq or not key or not value:
            raise ValueError(f"{name}: expected key=value, got {item!r}")
        if key not in valid:
            raise ValueError(f"unknown option {key!r} for optimiser {name!r}; valid options: {', '.join(valid)}")
        if any(k == key for k, _ in given):
            raise ValueError(f"{name}: option {key!r} is given twice")
        kwargs[key] = _parse_value(name, key, value, info.defaults.get(key))
        given.append((key, value))
    problem = info.validate(kwargs)
    if problem:
        raise ValueError(f"{name}: {problem}")
    return OptSpec(name, kwargs, tuple(given))


def try_parse(text: Any) -> OptSpec | None:
    """`parse` for text read back from storage or a link: None instead of an error (an optimiser
    whose package is missing here still parses, so old runs keep their colour and label)."""
    try:
        return parse(str(text), require_package=False)
    except ValueError:
        return None


def available(name: str) -> tuple[bool, str | None]:
    """(True, None) if optimiser `name` (or a spec "name:...") can be built here, else (False, the
    command that installs its package). Nothing is imported. Unknown name -> ValueError."""
    key = family(name)
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimiser {key!r}; valid: {', '.join(sorted(OPTIMIZERS))}")
    required = OPTIMIZERS[key].requires
    if required is None:
        return True, None
    try:
        found = importlib.util.find_spec(required[0]) is not None
    except (ImportError, ValueError):  # a broken install counts as missing
        found = False
    return (True, None) if found else (False, required[1])


def family(text: Any) -> str:
    """The optimiser name of a spec or label: "adam:lr=1e-3" -> "adam" (lower case; "" if none)."""
    head = _HEAD.match(str(text or ""))
    return head.group(1).lower() if head else ""


def label(text: Any) -> str:
    """The legend label of a spec string (or of a label); the text itself if it does not parse."""
    parsed = try_parse(text)
    return parsed.label if parsed is not None else str(text)


def key_of(text: Any) -> tuple:
    """A comparable form of a spec: ("adam", ()) for "adam", "adam:lr=0.001" and "adam lr=1e-3"
    alike; text that does not parse compares as itself."""
    parsed = try_parse(text)
    if parsed is None:
        return (str(text), ())
    return parsed.name, tuple(sorted((k, v) for k, v in parsed.changed.items()))


def state_buffers(text: Any, unknown: int = 2) -> int:
    """Per-parameter optimiser state of a spec in units of the model's size; `unknown` if it does
    not parse."""
    parsed = try_parse(text)
    return parsed.state_buffers if parsed is not None else unknown


def names(kind: str | None = None) -> tuple[str, ...]:
    """Registered optimiser names (of one form kind: "agd", "rates", "options"), in registry order."""
    return tuple(n for n, i in OPTIMIZERS.items() if kind is None or i.kind == kind)


def title(name: str) -> str:
    info = OPTIMIZERS.get(family(name))
    return info.title if info is not None else str(name)


def format_spec(name: str, options: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> str:
    """The canonical spec string of `name` with `options` (validated by `parse`)."""
    items = options.items() if isinstance(options, Mapping) else options
    text = name + ("".join(f"{',' if i else ':'}{k}={_fmt(v)}" for i, (k, v) in enumerate(items)))
    return parse(text, require_package=False).spec
