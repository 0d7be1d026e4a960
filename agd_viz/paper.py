"""What Bernstein et al. (2023) report, and presets that rerun their comparisons here.

Every number below is stated in the text or a figure caption of the paper (arXiv:2304.05187, subsection
"Experiments" of Sec. 3); figure numbers follow that version: Fig. 1 "AGD trains neural networks reliably
without hyperparameters", Fig. 4 "Benchmarking AGD on a range of architectures and datasets",
Fig. 5 "Comparing AGD to tuned Adam and SGD", Fig. 6 "... networks of varying width and depth",
Fig. 7 "... at varying mini-batch size". Where the paper shows only a picture, an entry carries no
number and says what the picture shows.

The presets are not the paper's exact protocol, so measured numbers should come out close, not equal:
the paper trained CIFAR-10 networks with square loss and standard data augmentation for longer than
these presets run, while this app trains with cross-entropy and no augmentation, and evaluates on the
first 8,192 images of each split. The paper's CNNs (ResNet-18, VGG-16, ResNet-50) are not available
here; the app's "cnn" is a plain bias-free conv net, so those rows are context, not targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agd_viz.spec import RunSpec

__all__ = ["PAPER", "PAPER_URL", "PaperResult", "PAPER_RESULTS", "Preset", "PRESETS", "compare",
           "expected", "run_spec"]

PAPER = ("Bernstein, Mingard, Huang, Azizan & Yue (2023), Automatic Gradient Descent: Deep Learning "
         "without Hyperparameters, arXiv:2304.05187")
PAPER_URL = "https://arxiv.org/abs/2304.05187"

# One epoch of CIFAR-10 at the paper's mini-batch size of 128.
CIFAR10_EPOCH = 50_000 // 128 + 1


@dataclass(frozen=True)
class PaperResult:
    """One reported outcome. `value` is a fraction (0.527 for 52.7 %) or None for a qualitative result;
    `optimizer` is the spec string of the matching run in this app's presets (None: no counterpart)."""

    figure: str
    setting: str  # the network, dataset and protocol, in words
    optimizer_text: str  # the optimiser as the paper ran it
    metric: str  # "test_acc" | "best_lr" | "qualitative"
    display: str  # what the UI shows in the "paper" column
    value: float | None = None
    optimizer: str | None = None
    reproducible_here: bool = True  # False: architecture or dataset not available in this app


PAPER_RESULTS: dict[str, PaperResult] = {
    "fcn16_cifar10_agd": PaperResult(
        "Fig. 4", "FCN, depth 16, width 512, CIFAR-10, square loss, batch 128", "AGD",
        "test_acc", "52.7 % test accuracy", 0.527, "agd"),
    "fcn16_cifar10_adam": PaperResult(
        "Fig. 4", "FCN, depth 16, width 512, CIFAR-10, square loss, batch 128",
        "Adam, learning rate tuned over 1e-5 … 1e-1", "test_acc", "53.5 % test accuracy", 0.535,
        "adam:lr=1e-4"),
    "fcn32_defaults": PaperResult(
        "Fig. 1 (left)", "FCN, depth 32, CIFAR-10", "AGD vs Adam (lr 1e-3) and SGD (lr 0.1), defaults",
        "qualitative", "AGD trains; Adam and SGD at their default learning rates fail to train"),
    "fcn8_w256_best_lrs": PaperResult(
        "Fig. 5", "FCN, depth 8, width 256, CIFAR-10, square loss", "Adam and SGD tuned over 1e-5 … 1e-1",
        "best_lr", "best rates: Adam 1e-4, SGD 1e-1 (three orders of magnitude apart); SGD reaches a "
        "higher training objective than Adam and AGD"),
    "fcn_grid_best": PaperResult(
        "Fig. 6", "FCN grid on CIFAR-10: depth 2–32 × width 64–2048, batch 128", "AGD",
        "test_acc", "best cell: depth 4, width 2048, 63.7 % test accuracy", 0.637, "agd"),
    "fcn_grid_worst": PaperResult(
        "Fig. 6", "FCN grid on CIFAR-10: depth 2–32 × width 64–2048, batch 128", "AGD",
        "test_acc", "worst cell: depth 2, width 64, 42.55 % test accuracy", 0.4255, "agd"),
    "fcn_grid_shape": PaperResult(
        "Fig. 6", "FCN grid on CIFAR-10: depth 2–32 × width 64–2048, batch 128", "AGD",
        "qualitative", "training: wider was always better; depths 8 and 16 beat depth 32"),
    "fcn4_batch_size": PaperResult(
        "Fig. 7", "FCN, depth 4, CIFAR-10, mini-batch 32 … 4096", "AGD",
        "qualitative", "final test accuracies 55.0 %, 58.0 %, 60.0 %, 59.8 % in order of increasing "
        "mini-batch size: larger batches generally did better"),
    "resnet18_cifar10": PaperResult(
        "Fig. 4", "ResNet-18 (no biases or affine parameters), CIFAR-10, square loss", "AGD vs tuned Adam",
        "test_acc", "AGD 91.2 %, tuned Adam 92.9 % test accuracy", 0.912, None, reproducible_here=False),
    "vgg16_cifar100": PaperResult(
        "Fig. 4", "VGG-16, CIFAR-100, square loss", "AGD vs tuned Adam",
        "test_acc", "AGD 67.4 %, tuned Adam 69.7 % test accuracy", 0.674, None, reproducible_here=False),
    "resnet50_imagenet": PaperResult(
        "Fig. 1 (right), Fig. 4", "ResNet-50, ImageNet, cross-entropy, batch 1024, 350 epochs", "AGD",
        "test_acc", "65.5 % top-1 test accuracy", 0.655, None, reproducible_here=False),
}


@dataclass(frozen=True)
class Preset:
    """A run (or a sweep) the UI can offer with one click. `spec` holds `spec.RunSpec` fields; a
    sweep adds `depths` and `widths` (fields of `spec.SweepConfig`). `expected` lists PAPER_RESULTS
    keys to show beside the measured numbers, `context` ones to show for orientation only."""

    title: str
    description: str
    spec: Mapping[str, Any]
    kind: str = "run"  # "run" | "sweep"
    depths: tuple[int, ...] = ()
    widths: tuple[int, ...] = ()
    expected: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    gpu: bool = True  # advisory: minutes on a GPU, far longer on a laptop CPU
    from_paper: bool = True
    notes: str = field(default="")


_LR_FREE = ("agd", "prodigy", "dadapt-adam", "schedulefree-adamw")

PRESETS: dict[str, Preset] = {
    "paper-fcn16-cifar10": Preset(
        "Paper: FCN depth 16 × width 512 on CIFAR-10",
        "The paper's fully-connected benchmark: AGD with no learning rate against Adam at 1e-4, the best "
        "rate the paper found for a CIFAR-10 FCN (Fig. 5). About 50 epochs.",
        dict(dataset="cifar10", arch="mlp", depth=16, width=512, batch_size=128, steps=50 * CIFAR10_EPOCH,
             optimizers=("agd", "adam:lr=1e-4"), metrics="full"),
        expected=("fcn16_cifar10_agd", "fcn16_cifar10_adam"),
        notes="The paper used square loss and data augmentation; expect close, not equal, numbers.",
    ),
    "paper-fcn32-defaults": Preset(
        "Paper: depth 32, default learning rates (Fig. 1)",
        "A 32-layer FCN on CIFAR-10: AGD trains it; Adam (1e-3) and SGD (0.1) at their default rates "
        "do not. Ten epochs are enough to see it.",
        dict(dataset="cifar10", arch="mlp", depth=32, width=256, batch_size=128, steps=10 * CIFAR10_EPOCH,
             optimizers=("agd", "adam", "sgd"), metrics="full"),
        expected=("fcn32_defaults",),
        notes="Fig. 1's caption gives no width; 256 is the default of the authors' code.",
    ),
    "paper-fcn8-tuned": Preset(
        "Paper: AGD vs tuned Adam and SGD (Fig. 5)",
        "An 8-layer FCN of width 256 on CIFAR-10, Adam and SGD at the best rates of the paper's grid "
        "(1e-4 and 1e-1): the best rates differ by three orders of magnitude; AGD needs none.",
        dict(dataset="cifar10", arch="mlp", depth=8, width=256, batch_size=128, steps=50 * CIFAR10_EPOCH,
             optimizers=("agd", "adam:lr=1e-4", "sgd:lr=0.1"), metrics="full"),
        expected=("fcn8_w256_best_lrs",),
    ),
    "paper-depth-sweep-cifar10": Preset(
        "Paper: depth sweep 2–32 at width 512 on CIFAR-10",
        "AGD and Adam (1e-4) at depths 2, 4, 8, 16 and 32: AGD trains every depth without a change.",
        dict(dataset="cifar10", batch_size=128, steps=20 * CIFAR10_EPOCH, optimizers=("agd", "adam:lr=1e-4"),
             metrics="none"),
        kind="sweep", depths=(2, 4, 8, 16, 32), widths=(512,),
        context=("fcn_grid_shape", "fcn_grid_best", "fcn_grid_worst"),
    ),
    "paper-grid-cifar10": Preset(
        "Paper: the full depth × width grid (Fig. 6)",
        "AGD on every FCN with depth 2–32 and width 64–2048 (powers of two) on CIFAR-10: 30 runs.",
        dict(dataset="cifar10", batch_size=128, steps=20 * CIFAR10_EPOCH, optimizers=("agd",), metrics="none"),
        kind="sweep", depths=(2, 4, 8, 16, 32), widths=(64, 128, 256, 512, 1024, 2048),
        expected=("fcn_grid_best", "fcn_grid_worst"), context=("fcn_grid_shape",),
    ),
    "lr-free-fcn16-cifar10": Preset(
        "Beyond the paper: learning-rate-free optimisers on CIFAR-10",
        "AGD against Prodigy, D-Adapt Adam and schedule-free AdamW, each at its package's defaults, on "
        "the paper's depth-16 width-512 FCN.",
        dict(dataset="cifar10", arch="mlp", depth=16, width=512, batch_size=128, steps=50 * CIFAR10_EPOCH,
             optimizers=_LR_FREE, metrics="full"),
        context=("fcn16_cifar10_agd", "fcn16_cifar10_adam"), from_paper=False,
    ),
    "lr-free-digits": Preset(
        "Beyond the paper: learning-rate-free optimisers on digits (laptop)",
        "The same four optimisers on the bundled 8×8 digits, depth 8, width 128: seconds on a CPU.",
        dict(dataset="digits", arch="mlp", depth=8, width=128, batch_size=128, steps=400,
             optimizers=_LR_FREE, metrics="full"),
        gpu=False, from_paper=False,
    ),
    "cnn-cifar10": Preset(
        "Beyond the paper: a bias-free CNN on CIFAR-10",
        "AGD's per-slice conv rule on an 8-layer 3×3 CNN of width 128 (three 2×2 average pools, a global "
        "pool, one linear layer) against Adam at 1e-3.",
        dict(dataset="cifar10", arch="cnn", depth=8, width=128, batch_size=128, steps=20 * CIFAR10_EPOCH,
             optimizers=("agd", "adam"), metrics="full"),
        context=("resnet18_cifar10",), from_paper=False,
        notes="The paper's CNN results are for ResNet-18 and VGG-16, which this app does not build.",
    ),
    "cnn-mnist-small": Preset(
        "Beyond the paper: a small CNN on MNIST (laptop)",
        "A 4-layer CNN of width 32 on 10,000 MNIST training images, AGD against Adam: a few minutes on a CPU.",
        dict(dataset="mnist", arch="cnn", depth=4, width=32, batch_size=128, steps=300,
             optimizers=("agd", "adam"), metrics="full", data_options={"train_samples": 10000}),
        gpu=False, from_paper=False,
    ),
}


def expected(name: str) -> list[PaperResult]:
    """The paper's results a preset should be compared with (its `expected` keys)."""
    return [PAPER_RESULTS[k] for k in _preset(name).expected]


def run_spec(name: str, **overrides):
    """The `spec.RunSpec` of a run preset (fields overridden by `overrides`), validated."""
    preset = _preset(name)
    if preset.kind != "run":
        raise ValueError(f"preset {name!r} is a sweep; build a spec.SweepConfig from its spec, depths and widths")
    return RunSpec(**{**dict(preset.spec), **overrides})


def compare(name: str, measured: Mapping[str, float | None]) -> list[dict]:
    """Rows for a "paper vs measured" table: one per expected and context result of preset `name`.

    `measured` maps optimiser spec strings (as in the preset, e.g. "adam:lr=1e-4") to a measured
    final test accuracy (fraction). Rows: figure, setting, optimizer, paper (text), paper_value,
    measured (fraction or None), role ("expected" | "context").
    """
    preset = _preset(name)
    rows = []
    for role, keys in (("expected", preset.expected), ("context", preset.context)):
        for key in keys:
            r = PAPER_RESULTS[key]
            got = measured.get(r.optimizer) if (r.optimizer and r.metric == "test_acc") else None
            rows.append({"figure": r.figure, "setting": r.setting, "optimizer": r.optimizer_text,
                         "paper": r.display, "paper_value": r.value, "measured": got, "role": role})
    return rows


def _preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name]
