"""What a run is (`RunSpec`), the ranges it must fall in, what it will cost, and the limits of the
server it runs on. Shared by the command line, the job manager and every page, so that a refusal
reads the same wherever it comes from, and always as one sentence, never a traceback.

No torch at import: a page checks its form (ranges, memory budget, server limits) with the
functions here on every rerun without paying for torch. `RunSpec.validate()` imports the
optimiser registry (and with it torch) only to parse optimiser strings, which the form never
needs to do before Start.

Memory estimate (`estimate_memory_bytes`). A run holds, in float32 (4 bytes per number):
    weights P, gradients P, optimiser state s·P (AGD 0, SGD 0 or 1 with momentum, Adam/AdamW 2,
    ...), a copy of the weights P for the per-layer relative update (metrics "full"), about
    2P more of temporaries while the update is computed (multi-tensor ops build whole new lists),
    activations ≈ ACTIVATION_FACTOR · batch · Σ_l n_l (n_l: numbers out of layer l per example;
    the forward pass keeps each layer's input, output and activation for the backward pass,
    which builds as many gradients again),
    and one evaluation chunk of EVAL_CHUNK examples through the widest layer,
where P = Σ_k d_k·d_{k−1} (a conv layer: out·in·3·3). The optimisers of one spec train side by
side, one model each, so the spec needs n_opt times a run, plus the data set held on the device
once. Python and torch themselves (a few hundred MB per worker) are not counted: the budget is
about what the user's choice of network adds. Checked against the peak resident memory of real
CPU runs (tests/test_spec.py): for networks of a few hundred MB, the estimate lies within 0.8-1.2x of
what a run adds; a small run adds ~100 MB of fixed cost (autograd, kernels) not counted here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = [
    "ARCHS", "DATA_SHAPES", "DEVICES", "LIMITS", "METRICS_MODES", "DataShape", "RunSpec", "SpecError",
    "budget_bytes", "check_fields", "data_shape", "estimate_memory_bytes", "estimate_params",
    "format_bytes", "format_count", "max_queued", "max_queued_per_session", "max_steps",
    "memory_problem", "range_problem", "admit", "server_limits",
]

DEVICES = ("auto", "cpu", "cuda", "mps")
METRICS_MODES = ("full", "none")
ARCHS = ("mlp", "cnn")

# Ranges a spec must fall in. Wide enough for the paper's grids (depth 2-32, width 64-2048) with room
# to explore; narrow enough that a typo (width 10**9) is refused with a sentence, not an OOM. What
# a network of allowed shape costs is checked separately, against the memory budget.
LIMITS = {
    "depth": (1, 256),
    "width": (1, 16384),
    "batch_size": (1, 65536),
    "steps": (1, 1_000_000),
    "seed": (0, 2**31 - 1),
}

# Server limits, each set by an environment variable (see `server_limits`).
ENV_MAX_MEMORY_MB = "AGD_VIZ_MAX_MEMORY_MB"
ENV_MAX_STEPS = "AGD_VIZ_MAX_STEPS"
ENV_MAX_QUEUED = "AGD_VIZ_MAX_QUEUED"
ENV_MAX_QUEUED_PER_SESSION = "AGD_VIZ_MAX_QUEUED_PER_SESSION"
# Without torch the size of a GPU cannot be read, so a GPU gets a fixed default too; the command
# line, which has torch loaded, uses 90% of the device's memory instead.
DEFAULT_BUDGET_MB = {"cpu": 2048, "cuda": 8192, "mps": 4096}
GPU_BUDGET_SHARE = 0.9
# Runs waiting or training at once: all sessions together, and one browser session. The
# per-session default fits one sweep of the default grid limit (AGD_VIZ_MAX_GRID, 200).
DEFAULT_MAX_QUEUED = 400
DEFAULT_MAX_QUEUED_PER_SESSION = 200

FLOAT_BYTES = 4
ACTIVATION_FACTOR = 6
TRANSIENT = 2  # update temporaries (multi-tensor norms, Adam's denominators), in units of P
EVAL_CHUNK = 4096  # = train._evaluate's chunk
# Optimiser state in units of the model's size, by registry name (per-parameter buffers).
STATE_BUFFERS = {"agd": 0, "sgd": 0, "adam": 2, "adamw": 2, "prodigy": 4, "dadapt-adam": 3,
                 "schedulefree-adamw": 2}
UNKNOWN_STATE_BUFFERS = 2


class SpecError(ValueError):
    """A run specification that cannot be trained; the message is one sentence for the user."""


# -------------------------------------------------------------------------------------------------
# Data set shapes, without loading (or importing) anything


@dataclass(frozen=True)
class DataShape:
    """What the estimates need of a data set: input and output sizes, split sizes, image shape."""

    d_in: int
    d_out: int
    n_train: int
    n_test: int
    input_shape: tuple[int, int, int] | None = None

    @property
    def n(self) -> int:
        return self.n_train + self.n_test


# Every registered data set with its default options; tests/test_spec.py checks this table against
# agd_viz.data's registry (and loads the built-in ones), so adding a data set there without a row
# here fails a test. A name missing here is still accepted when the registry knows it.
DATA_SHAPES: dict[str, DataShape] = {
    "digits": DataShape(64, 10, 1438, 359, (1, 8, 8)),
    "spirals": DataShape(3, 2, 800, 200),
    "moons": DataShape(3, 2, 800, 200),
    "circles": DataShape(3, 2, 800, 200),
    "xor": DataShape(3, 2, 800, 200),
    "teacher": DataShape(16, 4, 1600, 400),
    "mnist": DataShape(784, 10, 60000, 10000, (1, 28, 28)),
    "fashion-mnist": DataShape(784, 10, 60000, 10000, (1, 28, 28)),
    "cifar10": DataShape(3072, 10, 50000, 10000, (3, 32, 32)),
}
_FALLBACK_SHAPE = DataShape(64, 10, 1600, 400)


def _split(n: int, test_fraction: float) -> tuple[int, int]:
    """(n_train, n_test) as data.from_arrays splits n examples."""
    n_test = min(max(1, round(n * test_fraction)), n - 1)
    return n - n_test, n_test


def _registry_shape(name: str) -> DataShape | None:
    """A data set's shape from agd_viz.data's registry, if something already imported it."""
    data = sys.modules.get("agd_viz.data")
    info = getattr(data, "DATASETS", {}).get(name) if data is not None else None
    if info is None:
        return None
    shape = getattr(info, "input_shape", None)
    if shape:
        d_in = math.prod(shape)
        return DataShape(d_in, _FALLBACK_SHAPE.d_out, _FALLBACK_SHAPE.n_train, _FALLBACK_SHAPE.n_test,
                         tuple(shape))
    return None


def known_dataset(name: str) -> bool:
    """Whether `name` is a registered data set: the table here, else agd_viz.data's registry
    (imported for names the table does not know, so a newly registered data set is accepted)."""
    if name in DATA_SHAPES:
        return True
    try:
        from agd_viz import data
    except Exception:  # noqa: BLE001 - no torch here: the table is all we know
        return False
    return name in data.DATASETS


def data_shape(name: str, options: Mapping[str, Any] | Any = ()) -> DataShape:
    """The shape of data set `name` with `options` (a dict or (key, value) pairs) applied."""
    opts = dict(options.items() if isinstance(options, Mapping) else (options or ()))
    base = DATA_SHAPES.get(name) or _registry_shape(name) or _FALLBACK_SHAPE

    def num(key, default, kind=int):
        try:
            return kind(float(opts.get(key, default)))
        except (TypeError, ValueError):
            return default

    d_in, d_out = base.d_in, base.d_out
    if name == "teacher":
        d_in, d_out = num("d_in", d_in), num("d_out", d_out)
    if name == "spirals":
        d_out = num("classes", d_out)
    n_train, n_test = base.n_train, base.n_test
    if "train_samples" in opts:
        n_train = num("train_samples", n_train)
    if "n_samples" in opts or "test_fraction" in opts:
        n = num("n_samples", base.n)
        fraction = num("test_fraction", base.n_test / base.n, float)
        if n >= 2 and 0 < fraction < 1:
            n_train, n_test = _split(n, fraction)
    return DataShape(max(1, d_in), max(1, d_out), max(1, n_train), max(1, n_test), base.input_shape)


# -------------------------------------------------------------------------------------------------
# Checks that need no torch


def _get(spec: Any, key: str, default=None):
    if isinstance(spec, Mapping):
        return spec.get(key, default)
    return getattr(spec, key, default)


def range_problem(name: str, value: Any, lo: int, hi: int) -> str | None:
    """The sentence for a whole number out of [lo, hi] (or not a whole number); None if fine."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} must be a whole number, got {value!r}."
    if not lo <= value <= hi:
        return f"{name} must be between {lo:,} and {hi:,}, got {value:,}."
    return None


def check_fields(fields: Any, ranges: Mapping[str, tuple[int, int]] | None = None) -> dict[str, str]:
    """{field: sentence} for every problem of a spec (a RunSpec or a dict of its fields) that can
    be seen without torch: ranges (`ranges` narrows LIMITS, e.g. a page's own), data set, device,
    metrics, architecture. Optimiser strings are not parsed here (that needs the registry)."""
    problems: dict[str, str] = {}
    limits = dict(LIMITS)
    for name, (lo, hi) in (ranges or {}).items():
        limits[name] = (lo, hi)
    for name, (lo, hi) in limits.items():
        value = _get(fields, name)
        if value is None and isinstance(fields, Mapping) and name not in fields:
            continue
        text = range_problem(name, value, lo, hi)
        if text:
            problems[name] = text
    for name in ("eval_every", "layer_every"):
        value = _get(fields, name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems[name] = f"{name} must be a whole number ≥ 0 (0 = automatic), got {value!r}."
    dataset = _get(fields, "dataset", "digits")
    if not known_dataset(dataset):
        valid = ", ".join(sorted(DATA_SHAPES))
        problems["dataset"] = f"unknown dataset {dataset!r}; valid datasets: {valid}."
    device = _get(fields, "device", "auto")
    if device not in DEVICES:
        problems["device"] = f"device must be one of {', '.join(DEVICES)}, got {device!r}."
    metrics = _get(fields, "metrics", "full")
    if metrics not in METRICS_MODES:
        problems["metrics"] = f"metrics must be 'full' or 'none', got {metrics!r}."
    arch = _get(fields, "arch", "mlp")
    if arch not in ARCHS:
        problems["arch"] = f"arch must be one of {', '.join(ARCHS)}, got {arch!r}."
    elif arch == "cnn" and "dataset" not in problems:
        if data_shape(dataset).input_shape is None:
            images = ", ".join(n for n, s in DATA_SHAPES.items() if s.input_shape)
            problems["arch"] = f"arch 'cnn' needs an image dataset ({images}); {dataset!r} is not one."
        elif "depth" not in problems and isinstance(_get(fields, "depth"), int) and _get(fields, "depth") < 2:
            problems["depth"] = "a CNN needs depth ≥ 2: at least one conv layer and the final linear layer."
    same_init = _get(fields, "same_init", False)
    if not isinstance(same_init, bool):
        problems["same_init"] = f"same_init must be true or false, got {same_init!r}."
    if not tuple(_get(fields, "optimizers", ("agd",)) or ()):
        problems["optimizers"] = "choose at least one optimiser."
    return problems


# -------------------------------------------------------------------------------------------------
# The spec


@dataclass(frozen=True)
class RunSpec:
    dataset: str = "digits"
    depth: int = 8
    width: int = 128
    optimizers: tuple[str, ...] = ("agd",)
    steps: int = 300
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    metrics: str = "full"
    eval_every: int = 0  # 0: automatic, see resolved_eval_every
    layer_every: int = 0  # 0: automatic, see resolved_layer_every
    same_init: bool = False  # give baselines AGD's orthogonal init too
    arch: str = "mlp"
    data_options: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        # Accept lists/dicts from JSON and widgets but store hashable, immutable values.
        if isinstance(self.optimizers, str):
            object.__setattr__(self, "optimizers", (self.optimizers,))
        else:
            object.__setattr__(self, "optimizers", tuple(self.optimizers))
        opts = self.data_options
        if isinstance(opts, dict):
            opts = opts.items()
        object.__setattr__(self, "data_options", tuple(sorted((str(k), v) for k, v in opts)))
        self.validate()

    def validate(self) -> "RunSpec":
        """Raise SpecError (one sentence) for the first problem: ranges, names, then optimisers."""
        problems = check_fields(self)
        order = [*LIMITS, "eval_every", "layer_every", "dataset", "device", "metrics", "arch", "same_init",
                 "optimizers"]
        for name in order:
            if name in problems:
                raise SpecError(problems[name])
        from agd_viz.optim import parse_optimizer  # the registry, and torch with it

        for text in self.optimizers:
            try:
                parse_optimizer(text)
            except ValueError as exc:
                raise SpecError(str(exc)) from None
        return self

    # -- conversions -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["optimizers"] = list(self.optimizers)
        d["data_options"] = dict(self.data_options)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"unknown spec field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}.")
        return cls(**d)

    def replace(self, **changes) -> "RunSpec":
        return dataclasses.replace(self, **changes)

    def with_optimizer(self, optimizer: str) -> "RunSpec":
        return self.replace(optimizers=(optimizer,))

    # -- derived (the training code's; imported on use) ------------------------------------------
    @property
    def opt_specs(self) -> list:
        from agd_viz.optim import parse_optimizer

        return [parse_optimizer(o) for o in self.optimizers]

    def resolved_eval_every(self, n_eval: int | None = None) -> int:
        """See `train.resolved_eval_every` (the cost model lives with the training loop)."""
        from agd_viz import train

        return train.resolved_eval_every(self, n_eval)

    def resolved_layer_every(self) -> int:
        """See `train.resolved_layer_every`."""
        from agd_viz import train

        return train.resolved_layer_every(self)


# -------------------------------------------------------------------------------------------------
# Cost


def _pool_count(n_conv: int, side: int) -> list[int]:
    """How many 2×2 poolings precede each conv layer (nets._pool_positions spreads them evenly)."""
    n_pool = 0
    while side >= 8 and n_pool < n_conv - 1:
        side //= 2
        n_pool += 1
    after = {-(-(k + 1) * n_conv // (n_pool + 1)) - 1 for k in range(n_pool)}
    out, pools = [], 0
    for i in range(n_conv):
        out.append(pools)
        if i in after:
            pools += 1
    return out


def _layers(spec: Any) -> tuple[list[int], list[int], DataShape]:
    """(weights per layer, numbers out of each layer per example, data shape)."""
    shape = data_shape(_get(spec, "dataset", "digits"), _get(spec, "data_options", ()) or ())
    depth, width = int(_get(spec, "depth", 8)), int(_get(spec, "width", 128))
    if _get(spec, "arch", "mlp") == "cnn" and shape.input_shape is not None:
        c, h, w = shape.input_shape
        n_conv = max(depth - 1, 1)
        weights = [c * width * 9] + [width * width * 9] * (n_conv - 1) + [width * shape.d_out]
        pools = _pool_count(n_conv, min(h, w))
        outs = [width * (h >> p) * (w >> p) for p in pools] + [shape.d_out]
        return weights, outs, shape
    sizes = [shape.d_in] + [width] * (depth - 1) + [shape.d_out]
    weights = [sizes[k] * sizes[k + 1] for k in range(depth)]
    return weights, sizes[1:], shape


def estimate_params(spec: Any) -> int:
    """Parameters of one model of `spec` (a RunSpec or a dict of its fields): Σ_k d_k·d_{k−1}
    (bias-free; a 3×3 conv layer has out·in·9)."""
    weights, _, _ = _layers(spec)
    return int(sum(weights))


def _state_buffers(optimizer: str) -> int:
    name, _, rest = str(optimizer).partition(":")
    name = name.strip().lower()
    if name == "sgd":
        for item in rest.split(","):
            key, _, value = item.partition("=")
            if key.strip().lower() == "momentum":
                try:
                    return 1 if float(value) > 0 else 0
                except ValueError:
                    return 1
        return 0
    return STATE_BUFFERS.get(name, UNKNOWN_STATE_BUFFERS)


def estimate_memory_bytes(spec: Any) -> int:
    """Bytes `spec` needs on its device: every optimiser's model, gradients, optimiser state and
    activations, plus the data set (module docstring)."""
    weights, outs, shape = _layers(spec)
    params = sum(weights)
    batch = min(int(_get(spec, "batch_size", 128)), shape.n_train)
    probe = 1 if _get(spec, "metrics", "full") == "full" else 0
    activations = ACTIVATION_FACTOR * batch * (sum(outs) + shape.d_in)
    evaluation = 2 * min(EVAL_CHUNK, max(shape.n_train, shape.n_test)) * (max(outs) + shape.d_in)
    total = 0
    optimizers = tuple(_get(spec, "optimizers", ("agd",)) or ("agd",))
    if isinstance(optimizers, str):
        optimizers = (optimizers,)
    for opt in optimizers:
        numbers = params * (2 + TRANSIENT + probe + _state_buffers(opt)) + activations + evaluation
        total += FLOAT_BYTES * numbers
    data = shape.n * shape.d_in * FLOAT_BYTES + shape.n * max(shape.d_out * FLOAT_BYTES, 8)
    return int(total + data)


def format_bytes(n: float) -> str:
    """'7.9 GB', '310 MB', '12 kB' (decimal units, as people read a budget)."""
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.0f} MB"
    return f"{max(n, 0) / 1e3:.0f} kB"


def format_count(n: float) -> str:
    """'31 M', '1.2 M', '850 k', '96'."""
    if n >= 1e9:
        return f"{n / 1e9:.3g} G"
    if n >= 1e6:
        return f"{n / 1e6:.3g} M"
    if n >= 1e4:
        return f"{n / 1e3:.3g} k"
    return f"{int(n):,}"


# -------------------------------------------------------------------------------------------------
# Server limits (environment variables)


def env_int(name: str, default: int | None) -> int | None:
    """A positive whole number from the environment; a bad value stops with a sentence."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a whole number ≥ 1, got {text!r}.")
    return value


def _device_kind(device: str | None) -> str:
    return device if device in ("cuda", "mps") else "cpu"


def budget_bytes(device: str | None = "cpu", device_memory: int | None = None) -> int:
    """The memory a spec may ask for on `device` ("cpu", "cuda", "mps"; "auto"/None count as cpu
    unless the caller resolved them): $AGD_VIZ_MAX_MEMORY_MB if set; else GPU_BUDGET_SHARE of
    `device_memory` when the caller knows it (the CLI, with torch); else DEFAULT_BUDGET_MB."""
    mb = env_int(ENV_MAX_MEMORY_MB, None)
    if mb is not None:
        return mb * 1_000_000
    kind = _device_kind(device)
    if device_memory and kind != "cpu":
        return int(GPU_BUDGET_SHARE * device_memory)
    return DEFAULT_BUDGET_MB[kind] * 1_000_000


def memory_problem(spec: Any, device: str | None = None, device_memory: int | None = None) -> str | None:
    """The sentence refusing `spec` over the memory budget of `device`, or None if it fits."""
    need = estimate_memory_bytes(spec)
    budget = budget_bytes(device if device is not None else _get(spec, "device", "auto"), device_memory)
    if need <= budget:
        return None
    params = estimate_params(spec)
    n_opt = len(tuple(_get(spec, "optimizers", ("agd",)) or ("agd",)))
    what = f"{format_count(params)} parameters" + (f" × {n_opt} optimisers" if n_opt > 1 else "")
    return (f"This network needs about {format_bytes(need)} ({what}); the budget on this server is "
            f"{format_bytes(budget)}. Use fewer or narrower layers, a smaller batch or fewer optimisers "
            f"(the server's {ENV_MAX_MEMORY_MB} sets the budget).")


def max_steps() -> int:
    """Steps one run may take here: $AGD_VIZ_MAX_STEPS, at most LIMITS' 1,000,000."""
    hi = LIMITS["steps"][1]
    return min(env_int(ENV_MAX_STEPS, hi), hi)


def max_queued() -> int:
    """Runs waiting or training at once on this server: $AGD_VIZ_MAX_QUEUED (default 400)."""
    return env_int(ENV_MAX_QUEUED, DEFAULT_MAX_QUEUED)


def max_queued_per_session() -> int:
    """Runs one browser session may have waiting or training: $AGD_VIZ_MAX_QUEUED_PER_SESSION."""
    return env_int(ENV_MAX_QUEUED_PER_SESSION, DEFAULT_MAX_QUEUED_PER_SESSION)


def steps_problem(steps: Any) -> str | None:
    limit = max_steps()
    if isinstance(steps, int) and not isinstance(steps, bool) and steps > limit:
        return (f"This server allows at most {limit:,} steps per run ({ENV_MAX_STEPS}); "
                f"you asked for {steps:,}.")
    return None


def admit(spec: Any, device: str | None = None, device_memory: int | None = None) -> None:
    """Raise SpecError unless this server's limits allow `spec`: steps, then memory."""
    for text in (steps_problem(_get(spec, "steps")), memory_problem(spec, device, device_memory)):
        if text:
            raise SpecError(text)


def server_limits(device: str | None = "cpu") -> dict[str, int]:
    """The limits in force here, for the pages' "Server limits" note."""
    return {"max_steps": max_steps(), "max_memory_bytes": budget_bytes(device),
            "max_queued": max_queued(), "max_queued_per_session": max_queued_per_session()}
