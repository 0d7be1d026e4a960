"""The paper, in one place: every item of Bernstein et al. (2023) the app cites (`ITEMS`: figures,
tables, the algorithm, sections, lemmas, assumptions), every number it reports (`PAPER_RESULTS`),
presets that rerun its comparisons (`PRESETS`), and the reproduction of each of its experimental
figures on digits and at the paper's scale on CIFAR-10 (`REPRODUCTIONS`).

Pages, views, charts, the command line and the docs take every citation from here (`ref`, `cite`),
never from a literal, so one table holds them all; tests/test_paper.py checks the table against the
paper's LaTeX (the authors' repository jxbz/agd, `latex/`, arXiv v1 numbering) and that no text of
the app cites an item this table does not have.

The presets and reproductions are not the paper's exact protocol, so measured numbers come out
close, not equal: they train the app's bias-free MLP (the paper's FCN has the same form, relu·√2
hidden layers), for fewer epochs than the paper, and evaluate the test split whole (10,000 images
for CIFAR-10) but at most `cost.EVAL_MAX` (8,192) training images. The paper's CNNs (ResNet-18,
VGG-16, ResNet-50) are not built here; those rows are context, not targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agd_viz.spec import RunSpec

# Nothing of agd_viz at import time (RunSpec is imported where a spec is built): the charts cite
# the paper from this table too, and they sit below `spec` (docs/architecture.md).

__all__ = ["PAPER", "PAPER_URL", "Item", "ITEMS", "ALGORITHM_STEPS", "ref", "cite", "PaperResult",
           "PAPER_RESULTS", "Preset", "PRESETS", "compare", "expected", "run_spec", "Reproduction",
           "REPRODUCTIONS", "reproduction", "CIFAR10_EPOCH", "DIGITS_EPOCH"]

PAPER = ("Bernstein, Mingard, Huang, Azizan & Yue (2023), Automatic Gradient Descent: Deep Learning "
         "without Hyperparameters, arXiv:2304.05187")
PAPER_SHORT = "Bernstein et al. (2023)"
PAPER_URL = "https://arxiv.org/abs/2304.05187"


# -------------------------------------------------------------------------------------------------
# The paper's items


@dataclass(frozen=True)
class Item:
    """One numbered thing of the paper: its `label` as the paper numbers it ("Figure 1 (left)",
    "Lemma 4"), the `section` it sits in, its `name` (caption title or statement name) and what it
    `says`, in our words, checked against the LaTeX."""

    label: str
    section: str
    name: str
    says: str


ITEMS: dict[str, Item] = {
    # Figures and tables, in the paper's order.
    "fig1": Item("Figure 1", "before Sec. 1", "AGD trains neural networks reliably without hyperparameters",
                 "Three panels of train (solid) and test (dotted) accuracy: left, middle and right below."),
    "fig1_left": Item("Figure 1 (left)", "before Sec. 1", "AGD vs Adam and SGD at their defaults, depth 32",
                      "A 32-layer fully-connected network on CIFAR-10: AGD trains it; Adam (lr 0.001) and SGD "
                      "(lr 0.1) at their default learning rates fail to train."),
    "fig1_middle": Item("Figure 1 (middle)", "before Sec. 1", "A learning-rate grid for ResNet-18 on CIFAR-10",
                        "Accuracy of Adam and SGD over a learning-rate grid; AGD, with no learning rate, attains "
                        "performance comparable to the best tuned Adam and SGD."),
    "fig1_right": Item("Figure 1 (right)", "before Sec. 1", "ResNet-50 on ImageNet",
                       "AGD reaches 65.5 % top-1 test accuracy; the baseline is SGD at lr 0.1 with no decay."),
    "table1": Item("Table 1", "Sec. 1", "Comparing practical optimisers",
                   "Adam, momentum SGD, SGD + muP and AGD: hyperparameter-free, width scaling, depth scaling, "
                   "automatic schedule, memory (3×, 2×, 1×, 1× the weights). Adam and SGD give no guidance on "
                   "scaling hyperparameters with the architecture; muP does for width."),
    "fig2": Item("Figure 2", "Sec. 1.1", "The majorise-minimise meta-algorithm",
                 "A diagram: a bound touching the objective at the current weights, minimised."),
    "table2": Item("Table 2", "Sec. 2", "Comparing theoretical frameworks", "A table of theory frameworks."),
    "fig3": Item("Figure 3", "Sec. 2.1", "The perturbation hierarchy of a deep network",
                 "A diagram of how a weight perturbation moves the layers, the output, the loss and the objective; "
                 "no experiment."),
    "alg1": Item("Algorithm 1", "Sec. 3", "Automatic gradient descent",
                 "initialise_weights (each W_k uniform semi-orthogonal, scaled by √(d_k/d_{k−1})) and "
                 "update_weights, in three commented steps: get gradient summary, set automatic learning rate, "
                 "update weights. Its lines are not numbered."),
    "fig4": Item("Figure 4", "Sec. 3.3", "Benchmarking AGD on a range of architectures and datasets",
                 "Top row: the automatic learning rate η per epoch (mean, with its max and min per epoch in the "
                 "first three panels) and the objective; bottom row: train and test accuracy. AGD solid, tuned "
                 "Adam dashed (ImageNet: SGD at lr 0.1)."),
    "fig5": Item("Figure 5", "Sec. 3.3", "Comparing AGD to tuned Adam and SGD",
                 "An 8-layer FCN of width 256 on CIFAR-10, square loss: objective, accuracies, and the relative "
                 "update (1/L) Σ_k ‖ΔW_k‖_F/‖W_k‖_F with its max, min and mean per epoch."),
    "fig6": Item("Figure 6", "Sec. 3.3", "Benchmarking AGD on networks of varying width and depth",
                 "AGD alone on FCNs of depth 2–32 and width 64–2048 on CIFAR-10. Training: wider was always "
                 "better; depths 8 and 16 beat 32. Larger networks show two phases: η rises slowly while the "
                 "objective falls slowly, then both drop sharply, typically as train accuracy reaches 100 %."),
    "fig7": Item("Figure 7", "Sec. 3.3", "Benchmarking AGD at varying mini-batch size",
                 "A 4-layer FCN on CIFAR-10 at batch 32 to 4096: test accuracy generally improved with batch "
                 "size; η seemed to dip at first, more so at larger batch. Metrics every iteration in the "
                 "first epoch, then once per epoch."),
    # Sections.
    "sec2": Item("Sec. 2", "Sec. 2", "Majorise-minimise for generic learning problems",
                 "Functional expansion: the objective's change through the output's change."),
    "sec2_2": Item("Sec. 2.2", "Sec. 2", "Functional expansion and functional majorisation",
                   "Assumption 1, Theorem 1 and its corollaries for square and cross-entropy loss."),
    "sec3": Item("Sec. 3", "Sec. 3", "Majorise-minimise for deep learning problems",
                 "Prescription 1, the output bound (Lemma 3) and deep relative trust (Lemma 4), derived for "
                 "fully-connected networks with square loss."),
    "sec3_1": Item("Sec. 3.1", "Sec. 3", "Deriving automatic gradient descent", "Lemma 5 and Theorem 2."),
    "sec3_2": Item("Sec. 3.2", "Sec. 3", "Convergence analysis", "Lemmas 6–8, Assumption 3 and Theorem 3."),
    "sec3_3": Item("Sec. 3.3", "Sec. 3", "Experiments", "Figures 4–7; all use the square loss but ImageNet."),
    # Statements.
    "example1": Item("Example 1", "Sec. 2", "Square loss", "ℓ(f(x), y) = ‖f(x) − y‖² / (2 d_L)."),
    "example2": Item("Example 2", "Sec. 2", "Xent loss", "ℓ(f(x), y) = −log softmax(f(x))ᵀ y."),
    "prop1": Item("Proposition 1", "Sec. 2.1", "Decomposition of linearisation error",
                  "The objective's linearisation error is the model's linearisation error seen through the loss "
                  "gradient, plus the Bregman divergence of the loss."),
    "lemma1": Item("Lemma 1", "Sec. 2.1", "Bregman divergence of square loss",
                   "For the square loss the Bregman divergence is ‖Δf(x)‖² / (2 d_L)."),
    "lemma2": Item("Lemma 2", "Sec. 2.1", "Bregman divergence of xent loss",
                   "For cross-entropy it is a KL divergence, at most ½‖Δf(x)‖∞² + O(Δf³)."),
    "assumption1": Item("Assumption 1", "Sec. 2.2", "Orthogonality of model linearisation error",
                        "The averaged inner product of the loss gradient with the model's linearisation error "
                        "(the term from the network not being linear) is taken to be zero."),
    "theorem1": Item("Theorem 1", "Sec. 2.2", "Functional expansion",
                     "Under Assumption 1 the objective after a step is its first-order Taylor expansion plus "
                     "the averaged Bregman divergence of the output change."),
    "corollary1": Item("Corollary 1", "Sec. 2.2", "Functional expansion of mean squared error",
                       "Under Assumption 1, for square loss the second-order term is the average of "
                       "‖Δf(x)‖² / (2 d_L)."),
    "corollary2": Item("Corollary 2", "Sec. 2.2", "Functional majorisation for xent loss",
                       "Under Assumption 1, for cross-entropy the objective is bounded by the Taylor expansion "
                       "plus the average of ½‖Δf(x)‖∞² + O(Δf³); with ‖Δf‖∞² ≈ ‖Δf‖₂²/d_L for a spread-out "
                       "Δf this agrees with the square loss to second order, which the paper takes as its "
                       "reason to apply AGD to cross-entropy (as on ImageNet)."),
    "prescription1": Item("Prescription 1", "Sec. 3", "Dimensional scaling",
                          "‖x‖₂ = √d_0, ‖W_k‖_* = √(d_k/d_{k−1}), ‖ΔW_k‖_* = √(d_k/d_{k−1})·η/L, ‖y‖₂ = √d_L."),
    "lemma3": Item("Lemma 3", "Sec. 3", "Output bound",
                   "‖f(x)‖₂ ≤ (∏_k ‖W_k‖_*)·‖x‖₂, which is √d_L under Prescription 1."),
    "lemma4": Item("Lemma 4", "Sec. 3", "Deep relative trust",
                   "‖Δf(x)‖₂ ≤ (∏_k ‖W_k‖_*)·‖x‖₂·[∏_k (1 + ‖ΔW_k‖_*/‖W_k‖_*) − 1], which is ≤ √d_L·(e^η − 1) "
                   "under Prescription 1. An absolute bound, not one on ‖Δf‖/‖f‖."),
    "lemma5": Item("Lemma 5", "Sec. 3.1", "Exponential majorisation",
                   "For an FCN with square loss, under Assumption 1 and Prescription 1, the objective after the "
                   "step is at most its value plus a first-order term plus ½(e^η − 1)²."),
    "assumption2": Item("Assumption 2", "Sec. 3.1", "Gradient conditioning",
                        "Every layer's gradient has stable rank 1."),
    "theorem2": Item("Theorem 2", "Sec. 3.1", "Automatic gradient descent",
                     "Under Assumptions 1–2 and Prescription 1, Lemma 5's bound is minimised by "
                     "η = log((1 + √(1 + 4G))/2) and ΔW_k = −(η/L)·√(d_k/d_{k−1})·∇W_k/‖∇W_k‖_F."),
    "lemma6": Item("Lemma 6", "Sec. 3.2", "Bounded objective",
                   "For square loss the objective is at most 1 under Prescription 1."),
    "lemma7": Item("Lemma 7", "Sec. 3.2", "Bounded gradient",
                   "For square loss ‖∇W_k‖_F ≤ √(2·d_{k−1}/d_k) under Prescription 1."),
    "lemma8": Item("Lemma 8", "Sec. 3.2", "Convergence rate to critical point",
                   "For AGD on an FCN with square loss for T iterations, under Assumptions 1–2 and "
                   "Prescription 1: min over t ≤ T of G_t² ≤ 11/T (G_t of the full objective)."),
    "assumption3": Item("Assumption 3", "Sec. 3.2", "Deep Polyak-Łojasiewicz inequality",
                        "A lower bound on each layer's gradient norm by α times its Lemma 7 upper bound."),
    "theorem3": Item("Theorem 3", "Sec. 3.2", "Convergence rate to global minima",
                     "With Assumption 3 added, the objective at step T is at most 6/(α² T)."),
}

# Algorithm 1 names its steps by comments, not line numbers: cite them by these names.
ALGORITHM_STEPS = ("get gradient summary", "set automatic learning rate", "update weights")


def ref(key: str) -> str:
    """The paper's own label of item `key`: ref("fig6") == "Figure 6"."""
    return ITEMS[key].label


def cite(key: str) -> str:
    """"Bernstein et al. (2023), Figure 6"."""
    return f"{PAPER_SHORT}, {ITEMS[key].label}"


# One epoch at batch 128: CIFAR-10's 50,000 training images, the digits' 1,438 (steps, remainder
# dropped as agd_viz.train draws its batches).
CIFAR10_EPOCH = 50_000 // 128
DIGITS_EPOCH = 1438 // 128


# -------------------------------------------------------------------------------------------------
# What the paper reports


@dataclass(frozen=True)
class PaperResult:
    """One reported outcome, cited by `item` (an ITEMS key). `value` is a fraction (0.527 for
    52.7 %) or None for a qualitative result. `optimizer` names the matching run of this app's
    presets (None: no counterpart); with `best_of` the paper's number is for a tuned rate it does
    not give, so the measured value is the best of every run of that optimiser family. `metric`:
    "test_acc", "train" (a claim about training performance: compare train numbers), "best_lr"
    or "qualitative"."""

    item: str
    setting: str  # the network, dataset and protocol, in words
    optimizer_text: str  # the optimiser as the paper ran it
    metric: str
    display: str  # what the UI shows in the "paper" column
    value: float | None = None
    optimizer: str | None = None
    reproducible_here: bool = True  # False: architecture or dataset not available in this app
    best_of: bool = False

    @property
    def figure(self) -> str:
        return ITEMS[self.item].label


_FCN16 = "FCN, depth 16, width 512, CIFAR-10, square loss, batch 128"
_GRID = "FCN grid on CIFAR-10: depth 2–32 × width 64–2048, square loss, batch 128"
_FCN4 = "FCN, depth 4, CIFAR-10, square loss"

PAPER_RESULTS: dict[str, PaperResult] = {
    "fcn16_cifar10_agd": PaperResult("fig4", _FCN16, "AGD", "test_acc", "52.7 % test accuracy", 0.527, "agd"),
    # The paper tuned Adam over 1e-5 … 1e-1 and does not say which rate gave 53.5 %.
    "fcn16_cifar10_adam": PaperResult(
        "fig4", _FCN16, "Adam, learning rate tuned over 1e-5 … 1e-1 (the winning rate is not given)",
        "test_acc", "53.5 % test accuracy (best tuned rate)", 0.535, "adam", best_of=True),
    "fcn32_defaults": PaperResult(
        "fig1_left", "FCN, depth 32, CIFAR-10", "AGD vs Adam (lr 1e-3) and SGD (lr 0.1), defaults",
        "qualitative", "AGD trains; Adam and SGD at their default learning rates fail to train"),
    "resnet18_lr_grid": PaperResult(
        "fig1_middle", "ResNet-18, CIFAR-10", "Adam and SGD over a learning-rate grid, AGD once", "qualitative",
        "AGD comparable to the best tuned Adam and SGD", reproducible_here=False),
    "fcn8_w256_best_lrs": PaperResult(
        "fig5", "FCN, depth 8, width 256, CIFAR-10, square loss", "Adam and SGD tuned over 1e-5 … 1e-1",
        "best_lr", "best rates: Adam 1e-4, SGD 1e-1 (three orders of magnitude apart); SGD did not reach as "
        "low an objective as Adam and AGD"),
    "fcn_grid_best": PaperResult("fig6", _GRID, "AGD", "test_acc",
                                 "best test cell: depth 4, width 2048, 63.7 % test accuracy", 0.637, "agd"),
    "fcn_grid_worst": PaperResult("fig6", _GRID, "AGD", "test_acc",
                                  "worst test cell: depth 2, width 64, 42.55 % test accuracy", 0.4255, "agd"),
    "fcn_grid_shape": PaperResult("fig6", _GRID, "AGD", "train",
                                  "training performance: wider was always better; depths 8 and 16 beat depth 32"),
    "fcn_grid_phases": PaperResult(
        "fig6", _GRID, "AGD", "qualitative",
        "larger networks: η rises slowly while the objective falls slowly, then both drop sharply (typically "
        "as train accuracy reaches 100 %)"),
    **{f"fcn4_batch{b}": PaperResult("fig7", f"{_FCN4}, batch {b}", "AGD", "test_acc",
                                     f"batch {b}: {100 * v:.1f} % test accuracy", v, "agd")
       for b, v in ((32, 0.550), (128, 0.580), (1024, 0.600), (4096, 0.598))},
    "fcn4_batch_eta": PaperResult("fig7", f"{_FCN4}, batch 32 … 4096", "AGD", "qualitative",
                                  "η seemed to dip at first, more so at larger batch"),
    "resnet18_cifar10": PaperResult(
        "fig4", "ResNet-18 (no biases or affine parameters), CIFAR-10, square loss", "AGD vs tuned Adam",
        "test_acc", "AGD 91.2 %, tuned Adam 92.9 % test accuracy", 0.912, None, reproducible_here=False),
    "vgg16_cifar100": PaperResult(
        "fig4", "VGG-16, CIFAR-100, square loss", "AGD vs tuned Adam",
        "test_acc", "AGD 67.4 %, tuned Adam 69.7 % test accuracy", 0.674, None, reproducible_here=False),
    "resnet50_imagenet": PaperResult(
        "fig1_right", "ResNet-50, ImageNet, cross-entropy, batch 1024, 350 epochs", "AGD",
        "test_acc", "65.5 % top-1 test accuracy (also in Figure 4)", 0.655, None, reproducible_here=False),
}


# -------------------------------------------------------------------------------------------------
# Presets: one comparison (or sweep) each, for the Live and Sweep pages


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
_GRID_RATES = ("1e-5", "1e-4", "1e-3", "1e-2", "1e-1")  # the paper's tuning grid (Sec. 3.3)
_PAPER_DATA = dict(dataset="cifar10", loss="square", batch_size=128)

PRESETS: dict[str, Preset] = {
    "paper-fcn16-cifar10": Preset(
        f"Paper: FCN depth 16 × width 512 on CIFAR-10 ({ref('fig4')})",
        "The paper's fully-connected benchmark: AGD with no learning rate against Adam at four rates of the "
        "paper's grid 1e-5 … 1e-1 (the paper gives 53.5 % for its best rate without naming it; the form takes "
        "four rates, the command-line reproduction all five). Square loss, augmentation, about 50 epochs.",
        dict(_PAPER_DATA, arch="mlp", depth=16, width=512, steps=50 * CIFAR10_EPOCH, eval_every=CIFAR10_EPOCH,
             optimizers=("agd", *(f"adam:lr={r}" for r in _GRID_RATES[:4])), metrics="full"),
        expected=("fcn16_cifar10_agd", "fcn16_cifar10_adam"),
        notes="Fewer epochs than the paper; expect close, not equal, numbers.",
    ),
    "paper-fcn32-defaults": Preset(
        f"Paper: depth 32, default learning rates ({ref('fig1_left')})",
        "A 32-layer FCN on CIFAR-10: AGD trains it; Adam (1e-3) and SGD (0.1) at their default rates "
        "do not. Ten epochs are enough to see it.",
        dict(_PAPER_DATA, arch="mlp", depth=32, width=256, steps=10 * CIFAR10_EPOCH, eval_every=CIFAR10_EPOCH,
             optimizers=("agd", "adam", "sgd"), metrics="full"),
        expected=("fcn32_defaults",),
        notes=f"{ref('fig1')}'s caption gives no width; 256 is the default of the authors' code.",
    ),
    "paper-fcn8-tuned": Preset(
        f"Paper: AGD vs tuned Adam and SGD ({ref('fig5')})",
        "An 8-layer FCN of width 256 on CIFAR-10, Adam and SGD at the best rates of the paper's grid "
        "(1e-4 and 1e-1): the best rates differ by three orders of magnitude; AGD needs none.",
        dict(_PAPER_DATA, arch="mlp", depth=8, width=256, steps=50 * CIFAR10_EPOCH, eval_every=CIFAR10_EPOCH,
             optimizers=("agd", "adam:lr=1e-4", "sgd:lr=0.1"), metrics="full"),
        expected=("fcn8_w256_best_lrs",),
    ),
    "paper-depth-sweep-cifar10": Preset(
        "Paper: depth sweep 2–32 at width 512 on CIFAR-10",
        "AGD and Adam (1e-4, the best rate of the paper's depth-8 net) at depths 2, 4, 8, 16 and 32: AGD "
        "trains every depth without a change.",
        dict(_PAPER_DATA, steps=20 * CIFAR10_EPOCH, optimizers=("agd", "adam:lr=1e-4"), metrics="none"),
        kind="sweep", depths=(2, 4, 8, 16, 32), widths=(512,),
        context=("fcn_grid_shape", "fcn_grid_best", "fcn_grid_worst"),
    ),
    "paper-grid-cifar10": Preset(
        f"Paper: the full depth × width grid ({ref('fig6')})",
        "AGD on every FCN with depth 2–32 and width 64–2048 (powers of two) on CIFAR-10: 30 runs.",
        dict(_PAPER_DATA, steps=20 * CIFAR10_EPOCH, optimizers=("agd",), metrics="none"),
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
        notes=f"The paper's CNN results ({ref('fig4')}) are for ResNet-18 and VGG-16, which this app does not build.",
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


def run_spec(name: str, **overrides) -> "RunSpec":
    """The `spec.RunSpec` of a run preset (fields overridden by `overrides`), validated."""
    from agd_viz.spec import RunSpec

    preset = _preset(name)
    if preset.kind != "run":
        raise ValueError(f"preset {name!r} is a sweep; build a spec.SweepConfig from its spec, depths and widths")
    return RunSpec(**{**dict(preset.spec), **overrides})


def _family(text: str) -> str:
    return str(text).split(":", 1)[0].strip().lower()


def measured_value(result: PaperResult, measured: Mapping[str, float | None]) -> float | None:
    """The number of `measured` (optimiser spec -> final test accuracy) to set beside `result`: the
    matching optimiser's, or the best of its family's runs for a tuned (`best_of`) result."""
    if not result.optimizer or result.metric != "test_acc":
        return None
    if result.best_of:
        values = [v for k, v in measured.items() if _family(k) == result.optimizer and v is not None]
        return max(values) if values else None
    return measured.get(result.optimizer)


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
            rows.append({"figure": r.figure, "setting": r.setting, "optimizer": r.optimizer_text,
                         "paper": r.display, "paper_value": r.value, "measured": measured_value(r, measured),
                         "role": role})
    return rows


def _preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name]


# -------------------------------------------------------------------------------------------------
# Reproductions: each experimental figure, on digits (one click, under two minutes on a 2-core
# laptop: docs/paper.md has the times measured) and at the paper's scale on CIFAR-10 (the CLI)

SCALES = ("digits", "cifar10")
# What each scale trains on: digits as shipped; CIFAR-10 as the paper (square loss everywhere,
# augmentation on by default for it, batch 128 unless the figure varies it).
_SCALE_DATA = {"digits": dict(dataset="digits", loss="square"), "cifar10": dict(dataset="cifar10", loss="square")}
_EPOCH = {"digits": DIGITS_EPOCH, "cifar10": CIFAR10_EPOCH}
_N_TRAIN = {"digits": 1438, "cifar10": 50_000}


@dataclass(frozen=True)
class Reproduction:
    """One figure of the paper, rerun here: `specs` (RunSpec fields, one job each: a comparison, a
    grid cell or a batch size) per scale, the PAPER_RESULTS it is compared with, and how it
    differs from the paper (`note`)."""

    key: str  # an ITEMS key
    specs: Mapping[str, tuple[Mapping[str, Any], ...]]
    results: tuple[str, ...]
    note: str
    epochs: Mapping[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return ITEMS[self.key].label

    def run_specs(self, scale: str = "digits", **overrides) -> "list[RunSpec]":
        """The validated specs of `scale` (one job each), fields overridden by `overrides`."""
        from agd_viz.spec import RunSpec

        if scale not in self.specs:
            raise ValueError(f"{self.label} has no {scale!r} reproduction; scales: {', '.join(self.specs)}")
        return [RunSpec(**{**dict(s), **overrides}) for s in self.specs[scale]]

    def command(self, scale: str = "cifar10", device: str | None = None) -> str:
        """The command line that reruns this figure at `scale` into the run store."""
        dev = f" --device {device}" if device else (" --device cuda" if scale == "cifar10" else "")
        return f"python -m agd_viz paper {self.key} --scale {scale}{dev}"

    def train_commands(self, scale: str = "cifar10", device: str | None = "cuda") -> list[str]:
        """The same runs as plain `agd_viz train` commands, one per job."""
        out = []
        for s in self.run_specs(scale):
            words = ["python -m agd_viz train", f"--dataset {s.dataset}", f"--depth {s.depth}",
                     f"--width {s.width}", f"--batch-size {s.batch_size}", f"--steps {s.steps}",
                     f"--loss {s.loss}", "--augment" if s.augment else "", f"--metrics {s.metrics}",
                     f"--eval-every {s.eval_every}" if s.eval_every else "",
                     f"--layer-every {s.layer_every}" if s.layer_every else "",
                     *(f"--optimizer {o}" for o in s.optimizers), f"--device {device}" if device else ""]
            out.append(" ".join(w for w in words if w))
        return out


def _specs(scale: str, epochs: int, **fields) -> dict[str, Any]:
    batch = fields.get("batch_size", 128)
    per_epoch = max(1, _N_TRAIN[scale] // min(batch, _N_TRAIN[scale]))
    return dict(_SCALE_DATA[scale], steps=epochs * per_epoch, eval_every=per_epoch, seed=0, **fields)


def _both(epochs: Mapping[str, int], **fields) -> dict[str, tuple[dict, ...]]:
    return {scale: (_specs(scale, epochs[scale], **fields),) for scale in SCALES}


_ADAM_GRID = tuple(f"adam:lr={r}" for r in _GRID_RATES)
_SGD_GRID = tuple(f"sgd:lr={r}" for r in _GRID_RATES)
_GRID_DEPTHS = {"digits": (2, 4, 8, 16, 32), "cifar10": (2, 4, 8, 16, 32)}
# On digits two widths four times apart: each cell is one job with a worker's start-up, and a grid
# of 10 fits a laptop's two minutes where 15 did not (docs/paper.md).
_GRID_WIDTHS = {"digits": (64, 256), "cifar10": (64, 128, 256, 512, 1024, 2048)}
_BATCHES = {"digits": (32, 128, 512, 1438), "cifar10": (32, 128, 1024, 4096)}

REPRODUCTIONS: dict[str, Reproduction] = {
    "fig1_left": Reproduction(
        "fig1_left",
        {"digits": (_specs("digits", 36, depth=32, width=128, optimizers=("agd", "adam", "sgd"), metrics="none"),),
         "cifar10": (_specs("cifar10", 10, depth=32, width=256, optimizers=("agd", "adam", "sgd"), metrics="none"),)},
        ("fcn32_defaults",),
        "The paper's network is an FCN of depth 32 on CIFAR-10, width not given: 256 at CIFAR-10 scale (the "
        "default of the authors' code), 128 on digits.",
        {"digits": 36, "cifar10": 10}),
    "fig1_middle": Reproduction(
        "fig1_middle",
        _both({"digits": 30, "cifar10": 20}, depth=8, width=128, optimizers=("agd", *_ADAM_GRID, *_SGD_GRID),
              metrics="none"),
        ("resnet18_lr_grid",),
        "The paper's grid is for ResNet-18, which this app does not build: an FCN of depth 8 × width 128 "
        "stands in, over the paper's grid 1e-5 … 1e-1 for both Adam and SGD.",
        {"digits": 30, "cifar10": 20}),
    "fig4": Reproduction(
        "fig4",
        {"digits": (_specs("digits", 30, depth=16, width=128, optimizers=("agd", *_ADAM_GRID), metrics="none"),),
         "cifar10": (_specs("cifar10", 50, depth=16, width=512, optimizers=("agd", *_ADAM_GRID), metrics="none"),)},
        ("fcn16_cifar10_agd", "fcn16_cifar10_adam"),
        "The FCN panel of the figure (depth 16 × width 512 on CIFAR-10; width 128 on digits). Adam is tuned "
        "over the paper's grid here too; the dashed line is its best rate by final test accuracy.",
        {"digits": 30, "cifar10": 50}),
    "fig5": Reproduction(
        "fig5",
        _both({"digits": 30, "cifar10": 50}, depth=8, width=256, optimizers=("agd", "adam:lr=1e-4", "sgd:lr=0.1"),
              metrics="full", layer_every=1),
        ("fcn8_w256_best_lrs",),
        "Adam and SGD at the best rates the paper found (1e-4 and 1e-1); the relative update is logged every "
        "step and summarised per epoch as in the paper.",
        {"digits": 30, "cifar10": 50}),
    "fig6": Reproduction(
        "fig6",
        {scale: tuple(_specs(scale, {"digits": 25, "cifar10": 50}[scale], depth=d, width=w, optimizers=("agd",),
                             metrics="none")
                      for d in _GRID_DEPTHS[scale] for w in _GRID_WIDTHS[scale]) for scale in SCALES},
        ("fcn_grid_best", "fcn_grid_worst", "fcn_grid_shape", "fcn_grid_phases"),
        "AGD alone on every cell; on digits widths 64 and 256 only and 25 epochs, so the grid fits the laptop "
        "budget.",
        {"digits": 25, "cifar10": 50}),
    "fig7": Reproduction(
        "fig7",
        {scale: tuple(_specs(scale, {"digits": 30, "cifar10": 50}[scale], depth=4, width=256, batch_size=b,
                             optimizers=("agd",), metrics="none")
                      for b in _BATCHES[scale]) for scale in SCALES},
        ("fcn4_batch32", "fcn4_batch128", "fcn4_batch1024", "fcn4_batch4096", "fcn4_batch_eta"),
        "The same number of epochs at every batch size; the width is not given by the paper (256, the default "
        "of the authors' code). Digits has 1,438 training images, so its largest batch is the whole set.",
        {"digits": 30, "cifar10": 50}),
}


def reproduction(key: str) -> Reproduction:
    if key not in REPRODUCTIONS:
        raise ValueError(f"no reproduction of {key!r}; available: {', '.join(REPRODUCTIONS)}")
    return REPRODUCTIONS[key]
