"""Datasets as tensors on a device, and the loss and accuracy of a task.

`load(name, seed=0, **options) -> Dataset` is `agd_viz.datasets.load_arrays` (the catalogue and
its numpy loaders: which datasets exist, their options, how inputs are prepared) with the four
arrays turned into tensors. Torch lives here and below (docs/architecture.md): the training
worker uses this module, a page never does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from agd_viz import datasets
from agd_viz.datasets import DATASETS, DEFAULT_DATASET, TASKS, InputTransform

__all__ = ["DATASETS", "DEFAULT_DATASET", "Dataset", "accuracy", "augment", "load", "loss_fn", "tensors"]


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
    meta: dict = field(default_factory=dict, repr=False)  # e.g. the teacher's weights (numpy)

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
        x = datasets.transform(self.name, self.input_transform, x_raw)
        return torch.from_numpy(x).to(self.device)


def tensors(arrays: datasets.Arrays) -> Dataset:
    """The same dataset with its four arrays as CPU tensors (shared memory, no copy)."""
    fields = {f.name: getattr(arrays, f.name) for f in dataclasses.fields(arrays)}
    for key in ("x_train", "y_train", "x_test", "y_test"):
        fields[key] = torch.from_numpy(np.ascontiguousarray(fields[key]))
    return Dataset(**fields)


def load(name: str = DEFAULT_DATASET, seed: int = 0, **options) -> Dataset:
    """Load dataset `name` with its train/test split fixed by `seed` (same seed, same split and data);
    see `datasets.load_arrays` for the options and errors."""
    return tensors(datasets.load_arrays(name, seed, **options))


# ---------------------------------------------------------------------------------------------
# Loss and accuracy. Both return 0-d tensors on the outputs' device and never read values back to
# the host, so the training loop can batch its syncs.


def loss_fn(task: str, loss: str = "xent") -> Callable[[Tensor, Tensor], Tensor]:
    """The objective of a run (`RunSpec.loss`). Classification: cross entropy ("xent"), or the
    paper's square loss ("square", `square_loss`); regression: (1/B) Σ_b (1/(2 d_out)) ||f(x_b) − y_b||²
    whatever `loss` says."""
    if task == "classification":
        if loss == "xent":
            return torch.nn.functional.cross_entropy
        if loss == "square":
            return square_loss
        raise ValueError(f"loss must be 'xent' or 'square', got {loss!r}")
    if task == "regression":
        return _half_mse
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def square_loss(out: Tensor, labels: Tensor) -> Tensor:
    """The paper's square loss on class labels (Bernstein et al. 2023, Example 1, with the target
    scaling of Prescription 1): (1/B) Σ_b ‖f(x_b) − y_b‖² / (2 d_L), y_b the one-hot vector of
    label b times √d_L, so that ‖y_b‖ = √d_L like the inputs' √d_0. (The authors' code drops the
    ½, which doubles every gradient and so G; the paper's text, followed here, keeps it.)"""
    d = out.shape[-1]
    target = torch.nn.functional.one_hot(labels, d).to(out.dtype).mul_(d**0.5)
    return 0.5 * (out - target).square().mean()


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
# Training-time augmentation (`datasets.AUGMENTATIONS`), on the device, one draw per example.


def augment(x: Tensor, shape: tuple[int, int, int], pad: int, flip: bool,
            generator: torch.Generator | None = None) -> Tensor:
    """A random crop of each image padded by `pad` pixels, then a horizontal flip with probability
    ½ (when `flip`), for a batch of flat rows `x` (B, C·H·W) of images `shape` = (C, H, W).

    The padding is 0, which after the loaders' centring is the mean image of the training set, and
    each row is scaled back to norm √(C·H·W) afterwards: the paper's input scaling (Prescription 1)
    holds for augmented inputs too, as AGD's analysis needs. `generator` (on x's device) draws the
    offsets and flips, so a seeded run augments the same way every time.
    """
    B = x.shape[0]
    c, h, w = shape
    img = torch.nn.functional.pad(x.reshape(B, c, h, w), (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (B, 1), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (B, 1), generator=generator, device=x.device)
    rows = (dy + torch.arange(h, device=x.device)).view(B, 1, h, 1)
    cols = dx + torch.arange(w, device=x.device)
    if flip:
        mirror = torch.rand((B, 1), generator=generator, device=x.device) < 0.5
        cols = torch.where(mirror, cols.flip(-1), cols)
    batch = torch.arange(B, device=x.device).view(B, 1, 1, 1)
    channel = torch.arange(c, device=x.device).view(1, c, 1, 1)
    out = img[batch, channel, rows, cols.view(B, 1, 1, w)].reshape(B, c * h * w)
    norms = torch.linalg.vector_norm(out, dim=1, keepdim=True)
    return out * torch.where(norms > 0, (c * h * w) ** 0.5 / norms.clamp_min(1e-30), torch.zeros_like(norms))
