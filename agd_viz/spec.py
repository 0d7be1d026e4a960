"""What a run is (`RunSpec`) and what a sweep is (`SweepConfig`), the ranges they must fall in, and
the limits of the server they run on. Shared by the command line, the job manager and every page,
so that a refusal reads the same wherever it comes from, and always as one sentence, never a
traceback. What a spec costs (memory, time, logging cadence) is `agd_viz.cost`.

No torch (docs/architecture.md): building and validating a `RunSpec` parses its optimiser strings
with `agd_viz.optspec` and its dataset options with `agd_viz.datasets`, so a server can check and
submit a run without ever importing torch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agd_viz import cost, datasets, downloads, fmt, optspec

__all__ = [
    "ARCHS", "DEVICES", "LIMITS", "LOSSES", "LOSS_TITLES", "METRICS_MODES", "RunSpec", "SpecError", "SweepConfig",
    "SweepError", "admit", "admin_key", "budget_bytes", "check_fields", "env_int", "max_grid", "max_queued",
    "max_queued_per_session", "max_queued_bytes_per_session", "max_queued_seconds_per_session", "max_steps",
    "data_problem", "memory_problem", "page_limits", "page_problems", "range_problem", "server_limits", "steps_problem",
    "parse_sizes",
]

DEVICES = ("auto", "cpu", "cuda", "mps")
METRICS_MODES = ("full", "none")
ARCHS = ("mlp", "cnn")
# The objective. "xent": cross-entropy. "square": the paper's square loss, ‖f(x) − y‖²/(2 d_L) with
# one-hot targets scaled by √d_L (Bernstein et al. 2023, Example 1 and Prescription 1), the loss of
# every experiment of the paper but ImageNet. A regression set always trains on the square loss.
LOSSES = ("xent", "square")
LOSS_TITLES = {"xent": "cross-entropy", "square": "square loss (the paper's)"}

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
ENV_MAX_GRID = "AGD_VIZ_MAX_GRID"
# Without torch the size of a GPU cannot be read, so a GPU gets a fixed default too; the command
# line, which has torch loaded, uses 90% of the device's memory instead.
DEFAULT_BUDGET_MB = {"cpu": 2048, "cuda": 8192, "mps": 4096}
GPU_BUDGET_SHARE = 0.9
# Runs waiting or training at once: all sessions together, and one browser session. The
# per-session default fits one sweep of the default grid limit (AGD_VIZ_MAX_GRID, 200).
DEFAULT_MAX_QUEUED = 400
DEFAULT_MAX_QUEUED_PER_SESSION = 200
DEFAULT_MAX_GRID = 200
# A session's share of the queue in work, not only in runs: one click must not hold the server for
# weeks (issue 14: a sweep of "about 583 h" that would write ~13 GB of metrics was accepted).
# Estimated compute time (cost.run_seconds, calibrated on this store) and metric bytes
# (cost.metric_bytes) of everything one session has waiting or training.
ENV_MAX_QUEUED_SECONDS_PER_SESSION = "AGD_VIZ_MAX_QUEUED_SECONDS_PER_SESSION"
ENV_MAX_QUEUED_MB_PER_SESSION = "AGD_VIZ_MAX_QUEUED_MB_PER_SESSION"
DEFAULT_MAX_QUEUED_SECONDS_PER_SESSION = 2 * 3600
DEFAULT_MAX_QUEUED_MB_PER_SESSION = 1000
# What one run started from a page (Live or Sweep) may be: a room shares the server, so one click
# must not start a job that runs for hours. The command line reaches LIMITS and AGD_VIZ_MAX_STEPS.
# An operator raises them with AGD_VIZ_PAGE_MAX_<NAME>.
PAGE_LIMITS = {"depth": 64, "width": 2048, "batch_size": 4096, "steps": 20_000}
ENV_PAGE_MAX = {name: f"AGD_VIZ_PAGE_MAX_{name.split('_')[0].upper()}" for name in PAGE_LIMITS}
# The operator's key: whoever enters it on a page may stop and delete anyone's runs.
ENV_ADMIN_KEY = "AGD_VIZ_ADMIN_KEY"
MAX_GRID_VALUES = 16  # depths (or widths) per sweep: past that the heatmap's cells are unreadable


class SpecError(ValueError):
    """A run specification that cannot be trained; the message is one sentence for the user."""


class SweepError(SpecError):
    """A sweep that cannot be run; the message is one sentence for the user."""


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
    """{field: sentence} for every problem of a spec (a RunSpec or a dict of its fields): ranges
    (`ranges` narrows LIMITS, e.g. a page's own), dataset and its options, device, metrics,
    architecture, optimisers."""
    problems: dict[str, str] = {}
    limits = {**LIMITS, **(ranges or {})}
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
    if dataset not in datasets.DATASETS:
        problems["dataset"] = f"unknown dataset {dataset!r}; valid datasets: {', '.join(sorted(datasets.DATASETS))}."
    else:
        text = datasets.check_option_values(dataset, dict(_get(fields, "data_options", ()) or ()))
        if text:
            problems["data_options"] = text + "."
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
        if datasets.DATASETS[dataset].input_shape is None:
            images = ", ".join(n for n, d in datasets.DATASETS.items() if d.input_shape)
            problems["arch"] = f"arch 'cnn' needs an image dataset ({images}); {dataset!r} is not one."
        elif "depth" not in problems and isinstance(_get(fields, "depth"), int) and _get(fields, "depth") < 2:
            problems["depth"] = "a CNN needs depth ≥ 2: at least one conv layer and the final linear layer."
    same_init = _get(fields, "same_init", False)
    if not isinstance(same_init, bool):
        problems["same_init"] = f"same_init must be true or false, got {same_init!r}."
    loss = _get(fields, "loss", "xent")
    if loss not in LOSSES:
        problems["loss"] = (f"loss must be one of {', '.join(LOSSES)} (xent: cross-entropy, square: the paper's), "
                            f"got {loss!r}.")
    augment = _get(fields, "augment", None)
    if augment is not None and not isinstance(augment, bool):
        problems["augment"] = f"augment must be true or false, got {augment!r}."
    elif augment and "dataset" not in problems and dataset not in datasets.AUGMENTATIONS:
        problems["augment"] = (f"augment (the paper's random crop and horizontal flip) is defined for "
                               f"{', '.join(datasets.AUGMENTATIONS)} only, not {dataset!r}.")
    optimizers = _get(fields, "optimizers", ("agd",))
    optimizers = (optimizers,) if isinstance(optimizers, str) else tuple(optimizers or ())
    if not optimizers:
        problems["optimizers"] = "choose at least one optimiser."
    for text in optimizers:
        try:
            parsed = optspec.parse(text)
        except ValueError as exc:
            problems["optimizers"] = f"{exc}."
            break
        if arch == "cnn" and parsed.info.matrices_only:
            problems["optimizers"] = (f"{parsed.title} trains 2-D weight matrices only, not {parsed.info.matrices_only}"
                                      f"; the CNN has conv kernels, so use arch 'mlp' for {parsed.title}.")
            break
    return problems


# Order in which the first problem of a spec is reported.
_ORDER = (*LIMITS, "eval_every", "layer_every", "dataset", "data_options", "device", "metrics", "arch",
          "same_init", "loss", "augment", "optimizers")


# -------------------------------------------------------------------------------------------------
# The spec


@dataclass(frozen=True)
class RunSpec:
    """One comparison: a dataset, a network, the optimisers trained side by side on the same
    batches, and how long and how closely to watch them."""

    dataset: str = "digits"
    depth: int = 8
    width: int = 128
    optimizers: tuple[str, ...] = ("agd",)
    steps: int = 300
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    metrics: str = "full"
    eval_every: int = 0  # 0: automatic, see cost.resolved_eval_every
    layer_every: int = 0  # 0: automatic, see cost.resolved_layer_every
    same_init: bool = False  # give baselines AGD's orthogonal init too
    arch: str = "mlp"
    data_options: tuple[tuple[str, object], ...] = ()
    loss: str = "xent"  # LOSSES
    augment: bool | None = None  # None: the dataset's default (datasets.AUGMENTATIONS: on for CIFAR-10)

    def __post_init__(self):
        # Resolved here, not at training time, so the stored spec says what the run did.
        if self.augment is None:
            object.__setattr__(self, "augment", datasets.default_augment(self.dataset))
        # Accept lists/dicts from JSON and widgets but store hashable, immutable values.
        if isinstance(self.optimizers, str):
            object.__setattr__(self, "optimizers", (self.optimizers,))
        else:
            object.__setattr__(self, "optimizers", tuple(self.optimizers))
        opts = self.data_options
        if isinstance(opts, Mapping):
            opts = opts.items()
        object.__setattr__(self, "data_options", tuple(sorted((str(k), v) for k, v in opts)))
        self.validate()

    def validate(self) -> "RunSpec":
        """Raise SpecError (one sentence) for the first problem: ranges, names, then optimisers."""
        problems = check_fields(self)
        for name in _ORDER:
            if name in problems:
                raise SpecError(problems[name].rstrip(".") if name == "optimizers" else problems[name])
        return self

    # -- conversions -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["optimizers"] = list(self.optimizers)
        d["data_options"] = dict(self.data_options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "RunSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"unknown spec field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}.")
        return cls(**d)

    def replace(self, **changes) -> "RunSpec":
        return dataclasses.replace(self, **changes)

    def with_optimizer(self, optimizer: str) -> "RunSpec":
        return self.replace(optimizers=(optimizer,))

    # -- derived ---------------------------------------------------------------------------------
    @property
    def opt_specs(self) -> list[optspec.OptSpec]:
        return [optspec.parse(o) for o in self.optimizers]

    @property
    def labels(self) -> list[str]:
        return [optspec.label(o) for o in self.optimizers]

    @property
    def data_info(self) -> datasets.DatasetInfo:
        return datasets.DATASETS[self.dataset]


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
    need = cost.estimate_memory_bytes(spec)
    budget = budget_bytes(device if device is not None else _get(spec, "device", "auto"), device_memory)
    if need <= budget:
        return None
    params = cost.estimate_params(spec)
    n_opt = len(tuple(_get(spec, "optimizers", ("agd",)) or ("agd",)))
    what = f"{fmt.count(params)} parameters" + (f" × {n_opt} optimisers" if n_opt > 1 else "")
    return (f"This network needs about {fmt.bytes_(need)} ({what}); the budget on this server is "
            f"{fmt.bytes_(budget)}. Use fewer or narrower layers, a smaller batch or fewer optimisers "
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


def max_grid() -> int:
    """Runs allowed in one sweep: `$AGD_VIZ_MAX_GRID`, default 200."""
    try:
        return env_int(ENV_MAX_GRID, DEFAULT_MAX_GRID)
    except ValueError as exc:
        raise SweepError(str(exc)) from None


def max_queued_seconds_per_session() -> int:
    """Estimated seconds of work one session may have waiting or training (default 2 h)."""
    return env_int(ENV_MAX_QUEUED_SECONDS_PER_SESSION, DEFAULT_MAX_QUEUED_SECONDS_PER_SESSION)


def max_queued_bytes_per_session() -> int:
    """Estimated metric bytes one session's waiting or training runs may write (default 1 GB)."""
    return env_int(ENV_MAX_QUEUED_MB_PER_SESSION, DEFAULT_MAX_QUEUED_MB_PER_SESSION) * 1_000_000


def page_limits() -> dict[str, tuple[int, int]]:
    """Ranges of a run started from a page: PAGE_LIMITS, each raised or lowered by its
    AGD_VIZ_PAGE_MAX_<NAME> (within LIMITS). AGD_VIZ_MAX_STEPS applies as well, with its own
    sentence (`steps_problem`)."""
    return {name: (LIMITS[name][0], min(env_int(ENV_PAGE_MAX[name], default), LIMITS[name][1]))
            for name, default in PAGE_LIMITS.items()}


_PAGE_WORDS = {"depth": "layers", "width": "units per layer", "batch_size": "examples per batch",
               "steps": "steps per run"}


def page_problems(spec: Any, ranges: Mapping[str, tuple[int, int]] | None = None) -> dict[str, str]:
    """{field: sentence} for each field of `spec` over the pages' ranges (`page_limits()`)."""
    ranges = page_limits() if ranges is None else ranges
    out = {}
    for name, (_, hi) in ranges.items():
        value = _get(spec, name)
        if isinstance(value, int) and not isinstance(value, bool) and value > hi:
            out[name] = (f"This server's pages allow at most {hi:,} {_PAGE_WORDS.get(name, name)} "
                         f"({ENV_PAGE_MAX.get(name, name)}); you asked for {value:,}.")
    return out


def admin_key() -> str | None:
    """The operator's key ($AGD_VIZ_ADMIN_KEY), or None when the server has none."""
    key = os.environ.get(ENV_ADMIN_KEY, "").strip()
    return key or None


def steps_problem(steps: Any) -> str | None:
    limit = max_steps()
    if isinstance(steps, int) and not isinstance(steps, bool) and steps > limit:
        return (f"This server allows at most {limit:,} steps per run ({ENV_MAX_STEPS}); "
                f"you asked for {steps:,}.")
    return None


def data_problem(spec: Any) -> str | None:
    """The sentence refusing `spec` because its dataset is a download not in this machine's cache
    (caught before any run is stored, not as a failed run), or None."""
    name = _get(spec, "dataset", "digits")
    info = datasets.DATASETS.get(name)
    if info is None or not info.downloadable or downloads.is_downloaded(name):
        return None
    return (f"dataset {name!r} is not downloaded on this machine yet: run "
            f"`{downloads.download_command(name)}` first (about {downloads.SOURCES[name].size / 1e6:.0f} MB), "
            "or press its Download button in the app.")


def admit(spec: Any, device: str | None = None, device_memory: int | None = None,
          ranges: Mapping[str, tuple[int, int]] | None = None) -> None:
    """Raise SpecError unless this server allows `spec`: the pages' `ranges` when given (a run
    started from a page), steps, memory, then its data being here."""
    over = page_problems(spec, ranges) if ranges is not None else {}
    for text in (*over.values(), steps_problem(_get(spec, "steps")), memory_problem(spec, device, device_memory),
                 data_problem(spec)):
        if text:
            raise SpecError(text)


def server_limits(device: str | None = "cpu") -> dict[str, int]:
    """The limits in force here, for the pages' "Server limits" note."""
    return {"max_steps": max_steps(), "max_memory_bytes": budget_bytes(device),
            "max_queued": max_queued(), "max_queued_per_session": max_queued_per_session(),
            "max_queued_seconds_per_session": max_queued_seconds_per_session(),
            "max_queued_bytes_per_session": max_queued_bytes_per_session(),
            **{f"page_max_{name}": hi for name, (_, hi) in page_limits().items()}}


# -------------------------------------------------------------------------------------------------
# Sweeps: a depth × width grid of comparisons


def parse_sizes(text: str | Iterable[int], what: str = "depths",
                bounds: tuple[int, int] | None = None) -> tuple[int, ...]:
    """"2, 4, 8" (commas or spaces) -> (2, 4, 8): sorted, duplicates dropped, each in range."""
    lo, hi = bounds or (LIMITS["depth"] if what == "depths" else LIMITS["width"])
    tokens = fmt.split_list(text) if isinstance(text, str) else list(text)
    if not tokens:
        raise SweepError(f"give at least one of the {what}, e.g. {'2, 4, 8' if what == 'depths' else '32, 64'}.")
    values = []
    for tok in tokens:
        try:
            value = int(str(tok))
        except ValueError:
            raise SweepError(f"{what}: {str(tok)[:20]!r} is not a whole number.") from None
        if not lo <= value <= hi:
            raise SweepError(f"{what} must be between {lo} and {hi:,}, got {value:,}.")
        values.append(value)
    values = sorted(set(values))
    if len(values) > MAX_GRID_VALUES:
        raise SweepError(f"at most {MAX_GRID_VALUES} {what} per sweep, got {len(values)}.")
    return tuple(values)


# A run with more weights than this would need several GB (weights, gradients, Adam's two buffers).
MAX_WEIGHTS = 256_000_000


@dataclass(frozen=True)
class SweepConfig:
    """Every setting of a sweep: the grid (depths × widths), the optimisers each cell trains, and
    the settings shared by all runs (those of `RunSpec`). A sweep is one stored group of kind
    "sweep" whose spec is `to_dict()`; each cell is one comparison (`cell_specs`)."""

    depths: tuple[int, ...] = (2, 4, 8, 16, 32)
    widths: tuple[int, ...] = (32, 64, 128)
    optimizers: tuple[str, ...] = ("agd", "adam:lr=1e-3")
    dataset: str = "digits"
    steps: int = 300
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    metrics: str = "none"  # heatmaps need only each run's summary; curves come from scalars
    eval_every: int = 0
    layer_every: int = 0
    same_init: bool = False
    arch: str = "mlp"
    data_options: tuple[tuple[str, Any], ...] = ()
    loss: str = "xent"
    augment: bool | None = None

    def __post_init__(self):
        if self.augment is None:
            object.__setattr__(self, "augment", datasets.default_augment(self.dataset))
        object.__setattr__(self, "depths", parse_sizes(self.depths, "depths"))
        object.__setattr__(self, "widths", parse_sizes(self.widths, "widths"))
        opts = (self.optimizers,) if isinstance(self.optimizers, str) else tuple(self.optimizers)
        object.__setattr__(self, "optimizers", tuple(dict.fromkeys(str(o).strip() for o in opts)))
        d = self.data_options
        d = d.items() if isinstance(d, Mapping) else d
        object.__setattr__(self, "data_options", tuple(sorted((str(k), v) for k, v in d)))

    # -- size ------------------------------------------------------------------------------------
    def cells(self) -> list[tuple[int, int]]:
        """(depth, width) of every cell, cheapest first (they finish first)."""
        return sorted(((d, w) for d in self.depths for w in self.widths),
                      key=lambda c: (cost.estimate_params(self.spec_fields(*c)), c))

    @property
    def n_cells(self) -> int:
        return len(self.depths) * len(self.widths)

    @property
    def n_runs(self) -> int:
        return self.n_cells * len(self.optimizers)

    def describe_size(self) -> str:
        """'30 runs (5 depths × 3 widths × 2 optimisers)'."""
        return (f"{fmt.plural(self.n_runs, 'run')} ({fmt.plural(len(self.depths), 'depth')} × "
                f"{fmt.plural(len(self.widths), 'width')} × {fmt.plural(len(self.optimizers), 'optimiser')})")

    def check(self, limit: int | None = None, device: str | None = None,
              ranges: Mapping[str, tuple[int, int]] | None = None) -> list[str]:
        """Why this sweep may not start (one sentence each); empty if it may. `device`: what
        "auto" resolves to, for the memory budget (default: the config's own device); `ranges`:
        the pages' limits (`page_limits()`) for a sweep started from a page, the same as Live's."""
        problems = []
        if ranges is not None:
            biggest = {"depth": max(self.depths), "width": max(self.widths), "batch_size": self.batch_size,
                       "steps": self.steps}
            problems += list(page_problems(biggest, ranges).values())
        limit = max_grid() if limit is None else limit
        if self.n_runs > limit:
            problems.append(
                f"This sweep has {self.describe_size()}; the limit is {limit} runs per sweep. Remove "
                f"some depths, widths or learning rates, or raise the limit with the environment "
                f"variable {ENV_MAX_GRID}.")
        biggest = max(cost.estimate_params(self.spec_fields(d, w)) for d, w in self.cells())
        if biggest > MAX_WEIGHTS:
            problems.append(
                f"the largest network ({max(self.depths)} layers of width {max(self.widths):,}) has "
                f"{biggest:,} weights, more than the {MAX_WEIGHTS:,} a run may have.")
        fields = check_fields(self.spec_fields(self.depths[0], self.widths[0]))
        problems += [fields[k] for k in _ORDER if k in fields and k not in ("depth", "width")]
        text = steps_problem(self.steps)
        if text:
            problems.append(text)
        if self.optimizers and biggest <= MAX_WEIGHTS and "optimizers" not in fields:
            cells = [self.spec_fields(d, w) for d, w in self.cells()]
            text = memory_problem(max(cells, key=cost.estimate_memory_bytes), device)
            if text:
                problems.append(text)
        return problems

    # -- runs ------------------------------------------------------------------------------------
    def spec_fields(self, depth: int, width: int) -> dict:
        """Keyword arguments of `RunSpec` for one cell (all optimisers)."""
        return dict(dataset=self.dataset, depth=int(depth), width=int(width), optimizers=self.optimizers,
                    steps=self.steps, batch_size=self.batch_size, seed=self.seed, device=self.device,
                    metrics=self.metrics, eval_every=self.eval_every, layer_every=self.layer_every,
                    same_init=self.same_init, arch=self.arch, data_options=self.data_options,
                    loss=self.loss, augment=self.augment)

    def specs(self) -> list[RunSpec]:
        """One validated `RunSpec` per cell, in `cells()` order; SweepError if any is not."""
        out = []
        for d, w in self.cells():
            try:
                out.append(RunSpec(**self.spec_fields(d, w)))
            except SweepError:
                raise
            except SpecError as exc:
                raise SweepError(str(exc)) from None
        return out

    def seconds(self, speed: "cost.Speed | None" = None, workers: int = 1, per_process: bool = True) -> float:
        """Wall time of the whole sweep: every cell's modelled time, plus a worker's start-up per
        cell (`per_process`, the app's workers: `speed.cell_s`, measured on the store's sweeps) or
        once (the CLI), `workers` cells at a time."""
        total = sum(cost.run_seconds(self.spec_fields(d, w), speed) for d, w in self.cells())
        cell_s = speed.cell_s if speed is not None else cost.STARTUP_S
        total += cell_s * self.n_cells if per_process else cost.STARTUP_S
        return total / max(1, min(int(workers), self.n_cells if per_process else 1))

    # -- storage ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(kind="sweep", depths=list(self.depths), widths=list(self.widths),
                 optimizers=list(self.optimizers), data_options=dict(self.data_options))
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "SweepConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def describe(spec: Mapping[str, Any]) -> str:
    """One line naming a comparison's settings: "Digits (8×8) · depth 8 × width 128 · batch 128 ·
    300 steps · seed 0"."""
    if not spec:
        return ""
    extra = " · CNN" if spec.get("arch") == "cnn" else ""
    subset = (spec.get("data_options") or {}).get("train_samples")
    extra += f" · {subset:,} training images" if isinstance(subset, int) else ""
    extra += " · square loss" if spec.get("loss") == "square" else ""
    extra += " · augmented (crop + flip)" if spec.get("augment") else ""
    return (f"{datasets.title(spec.get('dataset', '?'))}{extra} · depth {spec.get('depth')} × width "
            f"{spec.get('width')} · batch {spec.get('batch_size')} · {spec.get('steps')} steps · "
            f"seed {spec.get('seed')}" + (" · same init" if spec.get("same_init") else ""))

