"""Bias-free networks in the form AGD assumes, and the two weight inits the app compares.

f(x) = W_L phi(W_{L-1} ... phi(W_1 x)),  phi(z) = sqrt(2) * relu(z).

relu zeroes half of a symmetric input and so halves its mean square; the sqrt(2) restores it, so
activations keep their size through depth under the AGD init. The output layer is left linear.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from agd_viz.optim import init_agd_

__all__ = ["MLP", "ARCHS", "build_model", "init_default_", "init_agd_model_"]


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"MLP {name} must be an integer >= 1, got {value!r}")
    return value


class MLP(nn.Module):
    """`depth` bias-free Linear layers: d_in -> width -> ... -> width -> d_out (depth 1: d_in -> d_out)."""

    def __init__(self, d_in: int, d_out: int, depth: int, width: int):
        super().__init__()
        d_in, d_out = _positive_int("d_in", d_in), _positive_int("d_out", d_out)
        depth, width = _positive_int("depth", depth), _positive_int("width", width)
        sizes = [d_in] + [width] * (depth - 1) + [d_out]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x)) * math.sqrt(2)
        return self.layers[-1](x)

    def weights(self) -> list[nn.Parameter]:
        return [layer.weight for layer in self.layers]

    @property
    def dims(self) -> list[tuple[int, int]]:
        """(out, in) of each layer, input side first."""
        return [(layer.out_features, layer.in_features) for layer in self.layers]


@torch.no_grad()
def init_default_(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """PyTorch's default Linear/Conv init, W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from `generator`.

    This is the bound torch's kaiming_uniform_(a=sqrt(5)) gives; drawing it here from one generator,
    in module order, makes a seeded comparison start every optimiser from identical weights.
    """
    device = generator.device if generator is not None else None
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, Tensor) or weight.dim() < 2:
            continue
        bound = 1.0 / math.sqrt(weight[0].numel())
        bias = getattr(module, "bias", None)
        for p in (weight, bias):
            if isinstance(p, Tensor):
                draw = torch.empty(p.shape, device=device or p.device, dtype=p.dtype)
                p.copy_(draw.uniform_(-bound, bound, generator=generator))
    return model


@torch.no_grad()
def init_agd_model_(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """AGD init (optim.init_agd_) of every parameter in order; a bias raises AGD's bias-free error."""
    params = model.weights() if isinstance(model, MLP) else list(model.parameters())
    for p in params:
        init_agd_(p, generator)
    return model


ARCHS = {"mlp": MLP}
_RESERVED = ("cnn",)


def build_model(arch: str, d_in: int, d_out: int, depth: int, width: int) -> nn.Module:
    """The network a run spec names: arch "mlp" (a "cnn" is planned)."""
    if arch in _RESERVED:
        raise ValueError(f"arch {arch!r} is not available yet; valid: {', '.join(ARCHS)}")
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
    return ARCHS[arch](d_in, d_out, depth, width)
