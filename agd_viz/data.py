"""Datasets: a registry of small problems that train in seconds on a laptop CPU.

`load(name, seed=0, **options) -> Dataset` with names from `DATASETS`:
  digits   sklearn's bundled 8×8 handwritten digits (no network), 10 classes, 64 inputs — the default.
  spirals, moons, circles, xor   2-D toy classification sets drawn from numpy RandomState(seed).
  teacher  a random bias-free MLP teacher on Gaussian inputs; regression onto its outputs.

Every loader ends in `from_arrays`, which splits by seed and prepares inputs as AGD's analysis
assumes (Bernstein et al. 2023 normalise inputs to ||x||_2 = sqrt(d_0)): centre with the train mean,
then scale each row to norm sqrt(d_in). `Dataset.transform` applies the same map to new raw points
(the UI's decision-boundary grid). Labels are int64 class indices; regression targets float32 (n, d_out).
MNIST, Fashion-MNIST and CIFAR-10 (input_kind "image") are registered by `agd_viz.downloads`, imported
at the end of this module; they load only after an explicit download. Datasets whose inputs are
images carry `input_shape` (channels, height, width), which the CNN needs; digits is one (1, 8, 8).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "Dataset",
    "DatasetInfo",
    "InputTransform",
    "accuracy",
    "from_arrays",
    "load",
    "loss_fn",
    "register",
    "validate_options",
]

TASKS = ("classification", "regression")
DEFAULT_DATASET = "digits"
# A cap on generated data (samples × features) so a demo visitor cannot exhaust server memory.
MAX_ELEMENTS = 20_000_000


@dataclass(frozen=True)
class InputTransform:
    """The input map fitted on the training split: raw features -> network inputs.

    x -> x − mean; for 2-D sets x -> (x / rms, 1); then each row -> sqrt(d_in) · row / ||row||.
    """

    mean: np.ndarray
    rms: float
    append_constant: bool
    d_in: int

    def __call__(self, x_raw) -> np.ndarray:
        x = np.asarray(x_raw, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected raw inputs of shape (n, {self.mean.shape[0]}), got {x.shape}")
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise ValueError(f"raw inputs contain {bad} non-finite value(s) (NaN or inf)")
        x = x - self.mean
        if self.append_constant:
            # With d_in = 2, scaling rows to a fixed norm would put every point on a circle and
            # throw the radius away (`circles` would be unlearnable). Appending a constant first
            # maps the plane onto a hemisphere of S² instead, one-to-one: the radius survives as
            # the angle from the pole. Dividing by the train RMS radius (the constant's size
            # relative to the points) puts a typical point near 45° from the pole, so radii are
            # well resolved whatever the set's scale.
            x = np.concatenate([x / self.rms, np.ones((x.shape[0], 1))], axis=1)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        # A row equal to the mean has no direction; it stays zero instead of becoming NaN.
        return np.where(norms > 0, x * (math.sqrt(self.d_in) / np.where(norms > 0, norms, 1.0)), 0.0)


@dataclass
class Dataset:
    """Train/test tensors ready for a network, plus what is needed to map new raw points the same way."""

    name: str
    task: str  # "classification" | "regression"
    x_train: Tensor  # (n_train, d_in) float32, rows of norm sqrt(d_in)
    y_train: Tensor  # (n_train,) int64 labels | (n_train, d_out) float32 targets
    x_test: Tensor
    y_test: Tensor
    d_in: int
    d_out: int
    classes: list[str] | None = None
    input_kind: str = "vector"  # "vector" | "2d" (the UI draws decision boundaries for "2d") | "image"
    input_shape: tuple[int, ...] | None = None  # (channels, height, width) of each flat input row
    raw_train: np.ndarray | None = None  # features before `transform`, in split order
    raw_test: np.ndarray | None = None
    input_transform: InputTransform | None = field(default=None, repr=False)
    meta: dict = field(default_factory=dict, repr=False)  # e.g. the teacher's weights

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, {self.task}, train {self.n_train}×{self.d_in}, "
            f"test {self.n_test}×{self.d_in}, d_out={self.d_out})"
        )

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def n_test(self) -> int:
        return self.x_test.shape[0]

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def to(self, device) -> Dataset:
        """A copy with the four tensors on `device` (raw arrays and meta stay on the host)."""
        return dataclasses.replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )

    def transform(self, x_raw) -> Tensor:
        """Map raw points (n, d_raw) to network inputs exactly as the training inputs were mapped.

        For 2-D sets d_raw = 2 (plane coordinates) and the result has d_in = 3 columns.
        """
        if self.input_transform is None:
            raise ValueError(f"dataset {self.name!r} has no input transform")
        try:
            x = self.input_transform(x_raw)
        except ValueError as e:
            raise ValueError(f"dataset {self.name!r}: {e}") from None
        return torch.as_tensor(x, dtype=torch.float32).to(self.device)


@dataclass(frozen=True)
class DatasetInfo:
    """What the UI lists: `options` are the defaults (and the accepted names), `limits` their ranges."""

    name: str
    title: str
    task: str
    description: str
    options: Mapping[str, int | float]
    input_kind: str = "vector"
    limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None  # (channels, height, width) for image inputs
    loader: Callable[..., Dataset] | None = field(default=None, repr=False, compare=False)


DATASETS: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> DatasetInfo:
    """Add a dataset to `DATASETS`; its loader is called as `loader(seed=..., **options)`."""
    if info.name in DATASETS:
        raise ValueError(f"dataset {info.name!r} is already registered")
    if info.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {info.task!r}")
    if info.loader is None:
        raise ValueError(f"dataset {info.name!r} needs a loader")
    missing = set(info.options) - set(info.limits)
    if missing:
        raise ValueError(f"dataset {info.name!r}: no limits for options {sorted(missing)}")
    # Own copies, so a caller mutating its dict later cannot change the registry.
    info = dataclasses.replace(info, options=dict(info.options), limits=dict(info.limits))
    DATASETS[info.name] = info
    return info


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    return DATASETS[name]


def _coerce(dataset: str, key: str, value, default):
    """Options may arrive as strings (query params, CLI); convert to the default's type."""
    kind = int if isinstance(default, int) else float
    bad = ValueError(f"dataset {dataset!r}: option {key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise bad from None
    if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise bad
    if kind is int:
        if float(value) != int(value):
            raise bad
        return int(value)
    return float(value)


def validate_options(name: str, **options) -> dict:
    """The full option dict for `name`: defaults overridden by `options`, types coerced, ranges checked."""
    info = _info(name)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        valid = ", ".join(info.options) or "(none)"
        raise ValueError(f"dataset {name!r}: unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    resolved = dict(info.options)
    for key, value in options.items():
        value = _coerce(name, key, value, info.options[key])
        lo, hi = info.limits[key]
        if not lo <= value <= hi:
            raise ValueError(f"dataset {name!r}: option {key} must be between {lo} and {hi}, got {value}")
        resolved[key] = value
    return resolved


def load(name: str = DEFAULT_DATASET, seed: int = 0, **options) -> Dataset:
    """Load dataset `name` with its train/test split fixed by `seed` (same seed, same split and data)."""
    info = _info(name)
    opts = validate_options(name, **options)
    return info.loader(seed=_check_seed(seed), **opts)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def from_arrays(
    name: str,
    x,
    y,
    task: str,
    seed: int = 0,
    test_fraction: float = 0.2,
    *,
    classes: list[str] | None = None,
    append_constant: bool = False,
    input_kind: str = "vector",
    keep_raw: bool = True,
    input_shape: tuple[int, ...] | None = None,
) -> Dataset:
    """Build a Dataset from raw arrays: validate, split by `seed`, fit and apply the input map.

    x: (n, d_raw) features; y: (n,) integer labels (classification) or (n,) / (n, d_out) targets
    (regression). The split is a permutation from numpy's default_rng(seed); the last
    round(n · test_fraction) samples (at least 1) are the test set. Inputs are centred with the
    *train* mean (the test set must not leak into it), then rows scaled to ||x||_2 = sqrt(d_in);
    `append_constant` adds a constant feature before scaling (see InputTransform).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    x = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
    y = np.asarray(y.detach().cpu() if isinstance(y, Tensor) else y)
    if x.ndim != 2:
        raise ValueError(f"dataset {name!r}: inputs must be 2-D (n, features), got shape {x.shape}")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"dataset {name!r}: {n} inputs but {y.shape[0]} targets")
    if n < 2:
        raise ValueError(f"dataset {name!r}: need at least 2 samples to split, got {n}")
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise ValueError(f"dataset {name!r}: inputs contain {bad} non-finite value(s) (NaN or inf)")
    if not 0 < test_fraction < 1:
        raise ValueError(f"dataset {name!r}: test_fraction must be in (0, 1), got {test_fraction}")

    if task == "classification":
        if y.ndim != 1:
            raise ValueError(f"dataset {name!r}: class labels must be 1-D, got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            yf = y.astype(np.float64)
            if not (np.isfinite(yf).all() and (yf == np.round(yf)).all()):
                raise ValueError(f"dataset {name!r}: class labels must be integers")
        y = y.astype(np.int64)
        if y.min() < 0:
            raise ValueError(f"dataset {name!r}: class labels must be >= 0")
        d_out = len(classes) if classes is not None else int(y.max()) + 1
        if y.max() >= d_out:
            raise ValueError(f"dataset {name!r}: label {int(y.max())} but only {d_out} classes")
    else:
        y = y.astype(np.float64)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2:
            raise ValueError(f"dataset {name!r}: regression targets must be (n,) or (n, d_out), got {y.shape}")
        bad = int(np.count_nonzero(~np.isfinite(y)))
        if bad:
            raise ValueError(f"dataset {name!r}: targets contain {bad} non-finite value(s) (NaN or inf)")
        d_out = y.shape[1]

    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(max(1, round(n * test_fraction)), n - 1)
    train_idx, test_idx = perm[: n - n_test], perm[n - n_test :]

    mean = x[train_idx].mean(axis=0)
    rms = 1.0
    if append_constant:
        rms = float(np.sqrt(np.mean(np.sum((x[train_idx] - mean) ** 2, axis=1))))
        rms = rms if rms > 0 else 1.0
    d_in = x.shape[1] + int(append_constant)
    tf = InputTransform(mean=mean, rms=rms, append_constant=append_constant, d_in=d_in)

    y_dtype = torch.int64 if task == "classification" else torch.float32
    return Dataset(
        name=name,
        task=task,
        x_train=torch.as_tensor(tf(x[train_idx]), dtype=torch.float32),
        y_train=torch.as_tensor(y[train_idx], dtype=y_dtype),
        x_test=torch.as_tensor(tf(x[test_idx]), dtype=torch.float32),
        y_test=torch.as_tensor(y[test_idx], dtype=y_dtype),
        d_in=d_in,
        d_out=d_out,
        classes=list(classes) if classes is not None else None,
        input_kind=input_kind,
        input_shape=tuple(input_shape) if input_shape is not None else None,
        raw_train=x[train_idx].astype(np.float32) if keep_raw else None,
        raw_test=x[test_idx].astype(np.float32) if keep_raw else None,
        input_transform=tf,
    )


# ---------------------------------------------------------------------------------------------
# Loss and accuracy. Both return 0-d tensors on the outputs' device and never read values back to
# the host, so the training loop can batch its syncs.


def loss_fn(task: str) -> Callable[[Tensor, Tensor], Tensor]:
    """Cross entropy for classification; for regression  (1/B) Σ_b (1/(2 d_out)) ||f(x_b) − y_b||²."""
    if task == "classification":
        return torch.nn.functional.cross_entropy
    if task == "regression":
        return _half_mse
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def _half_mse(out: Tensor, y: Tensor) -> Tensor:
    # Mean over batch and outputs of the squared error, halved: (1/B) Σ_b (1/(2 d_out)) ||f−y||².
    return 0.5 * (out - y).square().mean()


def accuracy(out: Tensor, y: Tensor, task: str) -> Tensor:
    """Fraction of argmax predictions equal to the label (0-d float tensor); NaN for regression."""
    if task == "classification":
        return (out.argmax(dim=-1) == y).float().mean()
    if task == "regression":
        return torch.full((), float("nan"), device=out.device)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


# ---------------------------------------------------------------------------------------------
# Built-in datasets.


def _load_digits(seed: int, test_fraction: float) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return from_arrays(
        "digits", bunch.data, bunch.target, "classification", seed, test_fraction,
        classes=[str(i) for i in range(10)], input_shape=(1, 8, 8),
    )


def _split_counts(n: int, k: int) -> list[int]:
    return [n // k + (1 if c < n % k else 0) for c in range(k)]


def _spirals(rng: np.random.RandomState, n: int, noise: float, classes: int) -> tuple[np.ndarray, np.ndarray]:
    # Arm c: radius t, angle 2πc/K + 3πt (1.5 turns) for t ~ U(0, 1); arms interleave at radial
    # spacing 2/(3K), so noise ~0.1 already blurs two arms near the centre.
    xs, ys = [], []
    for c, n_c in enumerate(_split_counts(n, classes)):
        t = rng.uniform(0.0, 1.0, n_c)
        angle = 2 * np.pi * c / classes + 3 * np.pi * t
        xs.append(np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) + noise * rng.randn(n_c, 2))
        ys.append(np.full(n_c, c))
    return np.concatenate(xs), np.concatenate(ys)


def _xor(rng: np.random.RandomState, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    # Label by quadrant, then jitter: noise only blurs the axes, where the classes meet.
    x = rng.uniform(-1.0, 1.0, (n, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    return x + noise * rng.randn(n, 2), y


def _toy_loader(name: str, classes_of: Callable[[dict], list[str]]):
    def loader(seed: int, n_samples: int, noise: float, test_fraction: float, **extra) -> Dataset:
        from sklearn.datasets import make_circles, make_moons

        rng = np.random.RandomState(seed)
        if name == "spirals":
            x, y = _spirals(rng, n_samples, noise, extra["classes"])
        elif name == "moons":
            x, y = make_moons(n_samples=n_samples, noise=noise, random_state=rng)
        elif name == "circles":
            x, y = make_circles(n_samples=n_samples, noise=noise, factor=0.5, random_state=rng)
        else:
            x, y = _xor(rng, n_samples, noise)
        return from_arrays(
            name, x, y, "classification", seed, test_fraction,
            classes=classes_of(extra), append_constant=True, input_kind="2d",
        )

    return loader


def _teacher_forward(weights: list[Tensor], x: Tensor) -> Tensor:
    """f(x) = W_L φ(W_{L−1} … φ(W_1 x)), φ(z) = sqrt(2)·relu(z) — the student architecture's form."""
    h = x
    for w in weights[:-1]:
        h = torch.relu(h @ w.T) * math.sqrt(2.0)
    return h @ weights[-1].T


def _load_teacher(seed: int, d_in: int, d_out: int, depth: int, width: int, n_samples: int,
                  noise: float, test_fraction: float) -> Dataset:
    if n_samples * max(d_in, d_out) > MAX_ELEMENTS:
        raise ValueError(
            f"dataset 'teacher': n_samples × max(d_in, d_out) = {n_samples * max(d_in, d_out):,} "
            f"exceeds the limit of {MAX_ELEMENTS:,}; use fewer samples or dimensions"
        )
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, d_in, generator=gen, dtype=torch.float64)
    # Targets are computed from the *prepared* inputs, so a student of the teacher's shape can fit
    # them exactly (noise = 0); the placeholder zeros only carry the shape through from_arrays.
    ds = from_arrays("teacher", x, np.zeros((n_samples, d_out)), "regression", seed, test_fraction)
    dims = [d_in] + [width] * (depth - 1) + [d_out]
    # N(0, 1/fan_in) entries with the sqrt(2)-scaled relu keep E||h||²/dim ≈ 1 layer to layer, so
    # targets have entries of order one.
    weights = [torch.randn(dims[i + 1], dims[i], generator=gen) / math.sqrt(dims[i]) for i in range(depth)]
    with torch.no_grad():
        y_train = _teacher_forward(weights, ds.x_train)
        y_test = _teacher_forward(weights, ds.x_test)
        if noise > 0:
            y_train = y_train + noise * torch.randn(y_train.shape, generator=gen)
            y_test = y_test + noise * torch.randn(y_test.shape, generator=gen)
    return dataclasses.replace(ds, y_train=y_train, y_test=y_test, meta={"teacher_weights": weights})


_TOY_LIMITS = {"n_samples": (10, 100_000), "noise": (0.0, 10.0), "test_fraction": (0.01, 0.9)}

register(DatasetInfo(
    name="digits",
    title="Digits (8×8)",
    task="classification",
    description="1,797 handwritten digits, 8×8 pixels, 10 classes (bundled with scikit-learn).",
    options={"test_fraction": 0.2},
    limits={"test_fraction": (0.01, 0.9)},
    input_shape=(1, 8, 8),
    loader=_load_digits,
))
register(DatasetInfo(
    name="spirals",
    title="Spirals",
    task="classification",
    description="Interleaved spiral arms in the plane, one class per arm.",
    options={"n_samples": 1000, "noise": 0.05, "classes": 2, "test_fraction": 0.2},
    input_kind="2d",
    limits={**_TOY_LIMITS, "classes": (2, 10)},
    loader=_toy_loader("spirals", lambda o: [f"arm {c}" for c in range(o["classes"])]),
))
register(DatasetInfo(
    name="moons",
    title="Two moons",
    task="classification",
    description="Two interleaving half circles.",
    options={"n_samples": 1000, "noise": 0.1, "test_fraction": 0.2},
    input_kind="2d",
    limits=_TOY_LIMITS,
    loader=_toy_loader("moons", lambda o: ["upper", "lower"]),
))
register(DatasetInfo(
    name="circles",
    title="Circles",
    task="classification",
    description="A small circle inside a large one (radius ratio 0.5); needs the radius, not the angle.",
    options={"n_samples": 1000, "noise": 0.1, "test_fraction": 0.2},
    input_kind="2d",
    limits=_TOY_LIMITS,
    loader=_toy_loader("circles", lambda o: ["outer", "inner"]),
))
register(DatasetInfo(
    name="xor",
    title="XOR",
    task="classification",
    description="Points in the square labelled by the sign of x·y; not linearly separable.",
    options={"n_samples": 1000, "noise": 0.1, "test_fraction": 0.2},
    input_kind="2d",
    limits=_TOY_LIMITS,
    loader=_toy_loader("xor", lambda o: ["x·y < 0", "x·y > 0"]),
))
register(DatasetInfo(
    name="teacher",
    title="Teacher-student",
    task="regression",
    description="Regression onto the outputs of a random bias-free ReLU MLP on Gaussian inputs.",
    options={"d_in": 16, "d_out": 4, "depth": 3, "width": 32, "n_samples": 2000, "noise": 0.0,
             "test_fraction": 0.2},
    limits={"d_in": (1, 1024), "d_out": (1, 256), "depth": (1, 16), "width": (1, 1024),
            "n_samples": (10, 100_000), "noise": (0.0, 10.0), "test_fraction": (0.01, 0.9)},
    loader=_load_teacher,
))

# MNIST, Fashion-MNIST and CIFAR-10 register themselves here; imported last because they build on
# the definitions above.
from agd_viz import downloads as _downloads  # noqa: E402,F401
