"""The datasets: a catalogue of every dataset the app knows (title, task, input kind and shape,
options with their defaults and ranges, sizes) and the numpy loaders behind it. No torch
(docs/architecture.md): a page lists, checks and sizes a dataset with this module alone;
`agd_viz.data` turns the arrays into tensors for training.

Names: digits (scikit-learn's bundled 8×8 handwritten digits, the default), the 2-D toy sets
spirals, moons, circles and xor, teacher (regression onto a random bias-free MLP), and the
downloadable image sets mnist, fashion-mnist and cifar10 (fetched only when asked:
`agd_viz.downloads`; loading one before that raises `downloads.NotDownloadedError`).

`load_arrays(name, seed=0, **options) -> Arrays`. Every loader prepares inputs as AGD's analysis
assumes (Bernstein et al. 2023 normalise inputs to ||x||_2 = sqrt(d_0)): centre with the train
mean, then scale each row to norm sqrt(d_in) (`from_arrays`; images in float32 and in place, since
CIFAR-10 in float64 would take 1.5 GB). `InputTransform` applies the same map to new raw points
(the decision-boundary grid). Labels are int64 class indices; regression targets float32
(n, d_out). Adding a dataset: a `DatasetInfo` in `DATASETS` and its loader in `LOADERS` (or one
`register(info, loader)` call).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agd_viz import downloads, shapes

__all__ = ["DEFAULT_DATASET", "DATASETS", "DatasetInfo", "DataShape", "TOY_2D", "DOWNLOADABLE",
           "AUGMENTATIONS", "Augmentation", "default_augment",
           "shape", "validate_options", "title", "check_option_values", "Arrays", "InputTransform",
           "LOADERS", "from_arrays", "load_arrays", "register", "transform"]

DEFAULT_DATASET = "digits"
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class DataShape:
    """What the cost estimates need of a dataset: input and output sizes, split sizes, image shape."""

    d_in: int
    d_out: int
    n_train: int
    n_test: int
    input_shape: tuple[int, int, int] | None = None

    @property
    def n(self) -> int:
        return self.n_train + self.n_test


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset of the catalogue. `options` are the defaults (and the accepted names), `limits`
    their ranges; `d_in`, `d_out`, `n_train`, `n_test` are its sizes with the default options."""

    name: str
    title: str
    task: str
    description: str
    d_in: int
    d_out: int
    n_train: int
    n_test: int
    options: Mapping[str, int | float] = field(default_factory=dict)
    limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    input_kind: str = "vector"  # "vector" | "2d" (the UI draws decision boundaries) | "image"
    input_shape: tuple[int, int, int] | None = None  # (channels, height, width) of an image input
    downloadable: bool = False
    classes: tuple[str, ...] | None = None

    @property
    def n(self) -> int:
        return self.n_train + self.n_test


_SPLIT = {"test_fraction": 0.2}
_TOY_LIMITS = {"n_samples": (10, 100_000), "noise": (0.0, 10.0), "test_fraction": (0.01, 0.9)}


def _arms(k: int) -> tuple[str, ...]:
    """Class names of the spirals set with k arms."""
    return tuple(f"arm {c}" for c in range(k))


def _toy(name, title, description, classes, options=None, limits=None) -> DatasetInfo:
    # 2-D points get a constant third input (InputTransform below), hence d_in 3.
    return DatasetInfo(name, title, "classification", description, 3, len(classes), 800, 200,
                       {"n_samples": 1000, "noise": 0.1, **_SPLIT, **(options or {})},
                       {**_TOY_LIMITS, **(limits or {})}, input_kind="2d", classes=tuple(classes))


DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("digits", "Digits (8×8)", "classification",
                "1,797 handwritten digits, 8×8 pixels, 10 classes (bundled with scikit-learn).",
                64, 10, 1438, 359, dict(_SPLIT), {"test_fraction": (0.01, 0.9)}, input_kind="image",
                input_shape=(1, 8, 8), classes=tuple(str(i) for i in range(10))),
    _toy("spirals", "Spirals", "Interleaved spiral arms in the plane, one class per arm.",
         _arms(2), {"noise": 0.05, "classes": 2}, {"classes": (2, 10)}),
    _toy("moons", "Two moons", "Two interleaving half circles.", ("upper", "lower")),
    _toy("circles", "Circles", "A small circle inside a large one (radius ratio 0.5); needs the radius, "
         "not the angle.", ("outer", "inner")),
    _toy("xor", "XOR", "Points in the square labelled by the sign of x·y; not linearly separable.",
         ("x·y < 0", "x·y > 0")),
    DatasetInfo("teacher", "Teacher-student", "regression",
                "Regression onto the outputs of a random bias-free ReLU MLP on Gaussian inputs.",
                16, 4, 1600, 400,
                {"d_in": 16, "d_out": 4, "depth": 3, "width": 32, "n_samples": 2000, "noise": 0.0, **_SPLIT},
                {"d_in": (1, 1024), "d_out": (1, 256), "depth": (1, 16), "width": (1, 1024),
                 "n_samples": (10, 100_000), "noise": (0.0, 10.0), "test_fraction": (0.01, 0.9)}),
    DatasetInfo("mnist", "MNIST (28×28)", "classification",
                "70,000 handwritten digits, 28×28 grey pixels, 10 classes; official split 60,000/10,000. "
                "Downloaded on request (12 MB).", 784, 10, 60000, 10000,
                {"train_samples": 60000}, {"train_samples": (10, 60000)}, input_kind="image",
                input_shape=(1, 28, 28), downloadable=True, classes=tuple(str(i) for i in range(10))),
    DatasetInfo("fashion-mnist", "Fashion-MNIST (28×28)", "classification",
                "70,000 photos of clothing (Zalando), 28×28 grey pixels, 10 classes; official split "
                "60,000/10,000. Downloaded on request (31 MB).", 784, 10, 60000, 10000,
                {"train_samples": 60000}, {"train_samples": (10, 60000)}, input_kind="image",
                input_shape=(1, 28, 28), downloadable=True,
                classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")),
    DatasetInfo("cifar10", "CIFAR-10 (32×32 colour)", "classification",
                "60,000 colour photos, 32×32 pixels, 10 classes; official split 50,000/10,000 — the "
                "paper's main dataset. Downloaded on request (170 MB).", 3072, 10, 50000, 10000,
                {"train_samples": 50000}, {"train_samples": (10, 50000)}, input_kind="image",
                input_shape=(3, 32, 32), downloadable=True,
                classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                         "truck")),
)}

TOY_2D = tuple(n for n, d in DATASETS.items() if d.input_kind == "2d")
DOWNLOADABLE = tuple(n for n, d in DATASETS.items() if d.downloadable)


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation of an image set: a random crop of the image padded by `pad`
    pixels on every side, and a horizontal flip with probability ½ when `flip`. Applied to each
    minibatch on the device (`agd_viz.data.augment`); evaluations see the images as they are."""

    pad: int
    flip: bool

    def describe(self) -> str:
        return f"random crop with {self.pad}-pixel padding" + (", horizontal flip" if self.flip else "")


# The paper trains CIFAR with "standard data augmentation" (Bernstein et al. 2023, Sec. 3.3): the
# random 32×32 crop of the image padded by 4 pixels and the horizontal flip. On by default there.
# Digits and MNIST are left out: a flipped digit is another digit, or none.
AUGMENTATIONS: dict[str, Augmentation] = {"cifar10": Augmentation(pad=4, flip=True)}


def default_augment(name: str) -> bool:
    """Whether a run on dataset `name` augments its training batches unless told otherwise."""
    return name in AUGMENTATIONS


def info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    return DATASETS[name]


def title(name: Any) -> str:
    d = DATASETS.get(str(name))
    return d.title if d is not None else str(name)


def _coerce(dataset: str, key: str, value, default):
    """Options may arrive as strings (query params, CLI); convert to the default's type."""
    kind = int if isinstance(default, int) else float
    bad = ValueError(f"dataset {dataset!r}: option {key} must be {'an integer' if kind is int else 'a number'}, "
                     f"got {value!r}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise bad from None
    try:
        value = float(value) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise bad from None
    if not math.isfinite(value):
        raise bad
    if kind is int:
        if float(value) != int(value):
            raise bad
        return int(value)
    return float(value)


def validate_options(name: str, **options) -> dict:
    """The full option dict for `name`: defaults overridden by `options`, types coerced, ranges
    checked. ValueError, one sentence, for an unknown option or a value out of range."""
    d = info(name)
    unknown = sorted(set(options) - set(d.options))
    if unknown:
        valid = ", ".join(d.options) or "(none)"
        raise ValueError(f"dataset {name!r}: unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    resolved = dict(d.options)
    for key, value in options.items():
        value = _coerce(name, key, value, d.options[key])
        lo, hi = d.limits[key]
        if not lo <= value <= hi:
            raise ValueError(f"dataset {name!r}: option {key} must be between {lo:g} and {hi:g}, got {value:g}")
        resolved[key] = value
    return resolved


def check_option_values(name: str, options: Mapping[str, Any]) -> str | None:
    """`validate_options` as a sentence (None if fine)."""
    try:
        validate_options(name, **dict(options))
    except ValueError as exc:
        return str(exc)
    return None


def _split(n: int, test_fraction: float) -> tuple[int, int]:
    """(n_train, n_test) as the loaders split n examples."""
    n_test = min(max(1, round(n * test_fraction)), n - 1)
    return n - n_test, n_test


def shape(name: str, options: Mapping[str, Any] | Any = ()) -> DataShape:
    """The sizes of dataset `name` with `options` (a dict or (key, value) pairs) applied; options
    that do not parse count as their defaults (checking them is `validate_options`'s job)."""
    opts = dict(options.items() if isinstance(options, Mapping) else (options or ()))
    d = DATASETS.get(name)
    if d is None:
        return DataShape(64, 10, 1600, 400)

    def num(key, default, kind=int):
        try:
            return kind(float(opts.get(key, default)))
        except (TypeError, ValueError):
            return default

    d_in, d_out = d.d_in, d.d_out
    if name == "teacher":
        d_in, d_out = num("d_in", d_in), num("d_out", d_out)
    if name == "spirals":
        d_out = num("classes", d_out)
    n_train, n_test = d.n_train, d.n_test
    if "train_samples" in opts:
        n_train = min(num("train_samples", n_train), d.n_train)
    if "n_samples" in opts or "test_fraction" in opts:
        n = num("n_samples", d.n)
        fraction = num("test_fraction", d.n_test / d.n, float)
        if n >= 2 and 0 < fraction < 1:
            n_train, n_test = _split(n, fraction)
    return DataShape(max(1, d_in), max(1, d_out), max(1, n_train), max(1, n_test), d.input_shape)


# ---------------------------------------------------------------------------------------------
# The arrays a loader returns, and the input map every loader ends in.

MAX_ELEMENTS = 20_000_000  # generated samples × features: a demo visitor cannot exhaust server memory


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


def transform(name: str, input_transform: InputTransform | None, x_raw) -> np.ndarray:
    """Raw points (n, d_raw) of dataset `name` mapped to network inputs (float32), exactly as its
    training inputs were; ValueError naming the dataset for a wrong shape or a non-finite value."""
    if input_transform is None:
        raise ValueError(f"dataset {name!r} has no input transform")
    try:
        return input_transform(x_raw).astype(np.float32)
    except ValueError as e:
        raise ValueError(f"dataset {name!r}: {e}") from None


@dataclass
class Arrays:
    """A dataset's train/test split as numpy arrays, ready for a network, plus what is needed to
    map new raw points the same way."""

    name: str
    task: str  # "classification" | "regression"
    x_train: np.ndarray  # (n_train, d_in) float32, rows of norm sqrt(d_in)
    y_train: np.ndarray  # (n_train,) int64 labels | (n_train, d_out) float32 targets
    x_test: np.ndarray
    y_test: np.ndarray
    d_in: int
    d_out: int
    classes: list[str] | None = None
    input_kind: str = "vector"  # "vector" | "2d" | "image", as in the catalogue
    input_shape: tuple[int, ...] | None = None  # (channels, height, width) of each flat input row
    raw_train: np.ndarray | None = None  # features before `input_transform`, in split order
    raw_test: np.ndarray | None = None
    input_transform: InputTransform | None = field(default=None, repr=False)
    meta: dict = field(default_factory=dict, repr=False)  # e.g. the teacher's weights

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def n_test(self) -> int:
        return self.x_test.shape[0]

    def transform(self, x_raw) -> np.ndarray:
        """See the module function `transform`: for 2-D sets d_raw = 2 and d_in = 3."""
        return transform(self.name, self.input_transform, x_raw)


def from_arrays(
    name: str,
    x,
    y,
    task: str,
    seed: int = 0,
    test_fraction: float = 0.2,
    *,
    classes: list[str] | tuple[str, ...] | None = None,
    append_constant: bool = False,
    input_kind: str = "vector",
    keep_raw: bool = True,
    input_shape: tuple[int, ...] | None = None,
) -> Arrays:
    """Arrays from raw features: validate, split by `seed`, fit and apply the input map.

    x: (n, d_raw) features; y: (n,) integer labels (classification) or (n,) / (n, d_out) targets
    (regression). The split is a permutation from numpy's default_rng(seed); the last
    round(n · test_fraction) samples (at least 1) are the test set. Inputs are centred with the
    *train* mean (the test set must not leak into it), then rows scaled to ||x||_2 = sqrt(d_in);
    `append_constant` adds a constant feature before scaling (see InputTransform).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
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
        y = _labels(name, y)
        d_out = len(classes) if classes is not None else int(y.max()) + 1
        _check_labels(name, y, d_out)
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
    n_train, _ = _split(n, test_fraction)
    train_idx, test_idx = perm[:n_train], perm[n_train:]

    mean = x[train_idx].mean(axis=0)
    rms = 1.0
    if append_constant:
        rms = float(np.sqrt(np.mean(np.sum((x[train_idx] - mean) ** 2, axis=1))))
        rms = rms if rms > 0 else 1.0
    d_in = x.shape[1] + int(append_constant)
    tf = InputTransform(mean=mean, rms=rms, append_constant=append_constant, d_in=d_in)

    y_dtype = np.int64 if task == "classification" else np.float32
    return Arrays(
        name=name,
        task=task,
        x_train=tf(x[train_idx]).astype(np.float32),
        y_train=y[train_idx].astype(y_dtype),
        x_test=tf(x[test_idx]).astype(np.float32),
        y_test=y[test_idx].astype(y_dtype),
        d_in=d_in,
        d_out=d_out,
        classes=list(classes) if classes is not None else None,
        input_kind=input_kind,
        input_shape=tuple(input_shape) if input_shape is not None else None,
        raw_train=x[train_idx].astype(np.float32) if keep_raw else None,
        raw_test=x[test_idx].astype(np.float32) if keep_raw else None,
        input_transform=tf,
    )


def _labels(name: str, y: np.ndarray) -> np.ndarray:
    if y.ndim != 1:
        raise ValueError(f"dataset {name!r}: class labels must be 1-D, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        yf = y.astype(np.float64)
        if not (np.isfinite(yf).all() and (yf == np.round(yf)).all()):
            raise ValueError(f"dataset {name!r}: class labels must be integers")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"dataset {name!r}: class labels must be >= 0")
    return y


def _check_labels(name: str, y: np.ndarray, d_out: int, hint: str = "") -> None:
    if y.size and y.max() >= d_out:
        raise ValueError(f"dataset {name!r}: label {int(y.max())} but only {d_out} classes{hint}")


def _from_catalogue(name: str, x, y, seed: int, test_fraction: float, **kwargs) -> Arrays:
    """`from_arrays` with the task, classes, input kind and shape of `name`'s catalogue entry."""
    d = DATASETS[name]
    kwargs.setdefault("classes", d.classes)
    return from_arrays(name, x, y, d.task, seed, test_fraction, input_kind=d.input_kind,
                       input_shape=d.input_shape, append_constant=d.input_kind == "2d", **kwargs)


# ---------------------------------------------------------------------------------------------
# The loaders: loader(seed=..., **options) -> Arrays, options complete and checked.


def _load_digits(seed: int, test_fraction: float) -> Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _from_catalogue("digits", bunch.data, bunch.target, seed, test_fraction)


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


def _moons(rng: np.random.RandomState, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons

    return make_moons(n_samples=n, noise=noise, random_state=rng)


def _circles(rng: np.random.RandomState, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_circles

    return make_circles(n_samples=n, noise=noise, factor=0.5, random_state=rng)


def _xor(rng: np.random.RandomState, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    # Label by quadrant, then jitter: noise only blurs the axes, where the classes meet.
    x = rng.uniform(-1.0, 1.0, (n, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    return x + noise * rng.randn(n, 2), y


def _toy_loader(name: str, draw: Callable[..., tuple[np.ndarray, np.ndarray]]) -> Callable[..., Arrays]:
    """A 2-D set's loader: `draw(rng, n_samples, noise, **extra)` from numpy RandomState(seed)."""

    def loader(seed: int, n_samples: int, noise: float, test_fraction: float, **extra) -> Arrays:
        x, y = draw(np.random.RandomState(seed), n_samples, noise, **extra)
        classes = _arms(extra["classes"]) if name == "spirals" else DATASETS[name].classes
        return _from_catalogue(name, x, y, seed, test_fraction, classes=classes)

    return loader


def teacher_forward(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """f(x) = W_L φ(W_{L−1} … φ(W_1 x)), φ(z) = sqrt(2)·relu(z) — the student architecture's form."""
    h = x
    for w in weights[:-1]:
        h = np.maximum(h @ w.T, 0) * np.float32(math.sqrt(2.0))
    return h @ weights[-1].T


def _load_teacher(seed: int, d_in: int, d_out: int, depth: int, width: int, n_samples: int,
                  noise: float, test_fraction: float) -> Arrays:
    if n_samples * max(d_in, d_out) > MAX_ELEMENTS:
        raise ValueError(
            f"dataset 'teacher': n_samples × max(d_in, d_out) = {n_samples * max(d_in, d_out):,} "
            f"exceeds the limit of {MAX_ELEMENTS:,}; use fewer samples or dimensions"
        )
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, d_in))
    # Targets are computed from the *prepared* inputs, so a student of the teacher's shape can fit
    # them exactly (noise = 0); the placeholder zeros only carry the shape through from_arrays.
    arrays = _from_catalogue("teacher", x, np.zeros((n_samples, d_out)), seed, test_fraction)
    sizes = shapes.mlp_sizes(d_in, d_out, depth, width)
    # N(0, 1/fan_in) entries with the sqrt(2)-scaled relu keep E||h||²/dim ≈ 1 layer to layer, so
    # targets have entries of order one.
    weights = [(rng.standard_normal((sizes[k + 1], sizes[k])) / math.sqrt(sizes[k])).astype(np.float32)
               for k in range(depth)]
    y_train = teacher_forward(weights, arrays.x_train)
    y_test = teacher_forward(weights, arrays.x_test)
    if noise > 0:
        y_train = y_train + (noise * rng.standard_normal(y_train.shape)).astype(np.float32)
        y_test = y_test + (noise * rng.standard_normal(y_test.shape)).astype(np.float32)
    return dataclasses.replace(arrays, y_train=y_train, y_test=y_test, meta={"teacher_weights": weights})


def _prepare_images(x_u8: np.ndarray, mean: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """x -> (x/255 − mean) scaled per row to norm sqrt(d); the mean is the train split's per pixel.

    float32 and in place: CIFAR-10's training images take 600 MB so, and no temporary as large.
    """
    x = x_u8.astype(np.float32)
    x /= np.float32(255.0)
    if mean is None:
        mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    x -= mean
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    # An image equal to the mean has no direction; it stays zero instead of becoming NaN.
    scale = np.where(norms > 0, np.float32(math.sqrt(x.shape[1])) / np.maximum(norms, np.float32(1e-30)), 0)
    x *= scale.astype(np.float32)[:, None]
    return x, mean


def _image_loader(name: str) -> Callable[..., Arrays]:
    """A downloadable set: the official split from `downloads.read`, its training images
    optionally a seeded subset of `train_samples`."""

    def loader(seed: int, train_samples: int) -> Arrays:
        d = DATASETS[name]
        x_train, y_train, x_test, y_test = downloads.read(name)
        y_train, y_test = _labels(name, y_train), _labels(name, y_test)
        for y in (y_train, y_test):
            _check_labels(name, y, len(d.classes), "; the files are corrupt, download again")
        if train_samples < x_train.shape[0]:
            keep = np.sort(np.random.default_rng(seed).permutation(x_train.shape[0])[:train_samples])
            x_train, y_train = x_train[keep], y_train[keep]
        xt, mean = _prepare_images(x_train)
        xv, _ = _prepare_images(x_test, mean)
        d_in = xt.shape[1]
        return Arrays(
            name=name, task=d.task, x_train=xt, y_train=y_train, x_test=xv, y_test=y_test,
            d_in=d_in, d_out=len(d.classes), classes=list(d.classes),
            input_kind=d.input_kind, input_shape=d.input_shape,
            # Its raw inputs are pixels / 255, flattened channel, height, width.
            input_transform=InputTransform(mean=mean.astype(np.float64), rms=1.0, append_constant=False,
                                           d_in=d_in),
        )

    return loader


Loader = Callable[..., Arrays]

LOADERS: dict[str, Loader] = {
    "digits": _load_digits,
    "spirals": _toy_loader("spirals", _spirals),
    "moons": _toy_loader("moons", _moons),
    "circles": _toy_loader("circles", _circles),
    "xor": _toy_loader("xor", _xor),
    "teacher": _load_teacher,
    **{name: _image_loader(name) for name in DOWNLOADABLE},
}


def register(entry: DatasetInfo, loader: Loader) -> DatasetInfo:
    """Add a dataset at run time: its catalogue entry and its loader, called as
    `loader(seed=..., **options) -> Arrays` with every option of `entry.options` resolved."""
    if entry.name in DATASETS:
        raise ValueError(f"dataset {entry.name!r} is already registered")
    if entry.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {entry.task!r}")
    if not callable(loader):
        raise ValueError(f"dataset {entry.name!r} needs a loader")
    missing = set(entry.options) - set(entry.limits)
    if missing:
        raise ValueError(f"dataset {entry.name!r}: no limits for options {sorted(missing)}")
    # Own copies, so a caller mutating its dict later cannot change the catalogue.
    entry = dataclasses.replace(entry, options=dict(entry.options), limits=dict(entry.limits))
    DATASETS[entry.name] = entry
    LOADERS[entry.name] = loader
    global TOY_2D, DOWNLOADABLE
    TOY_2D = tuple(n for n, d in DATASETS.items() if d.input_kind == "2d")
    DOWNLOADABLE = tuple(n for n, d in DATASETS.items() if d.downloadable)
    return entry


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def load_arrays(name: str = DEFAULT_DATASET, seed: int = 0, **options) -> Arrays:
    """Dataset `name` with its train/test split fixed by `seed` (same seed, same split and data).

    Options are checked by `validate_options` (ValueError, one sentence); a downloadable set not
    downloaded yet raises `downloads.NotDownloadedError`, saying how to download it.
    """
    info(name)
    opts = validate_options(name, **options)
    return LOADERS[name](seed=_check_seed(seed), **opts)
