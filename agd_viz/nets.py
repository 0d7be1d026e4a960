"""Bias-free networks in the form AGD assumes, and the two weight inits the app compares.

f(x) = W_L phi(W_{L-1} ... phi(W_1 x)),  phi(z) = sqrt(2) * relu(z).

relu zeroes half of a symmetric input and so halves its mean square; the sqrt(2) restores it, so
activations keep their size through depth under the AGD init. The output layer is left linear.
`CNN` is the same recipe with 3x3 convolutions for image inputs (Bernstein et al. 2023, "Experiments":
AGD normalises each kh x kw slice of a kernel separately; optim.py implements that).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from agd_viz.optim import init_agd_
from agd_viz.shapes import mlp_sizes, pool_positions

__all__ = ["MLP", "CNN", "ARCHS", "build_model", "init_default_", "init_agd_model_"]


def _positive_int(name: str, value, kind: str = "MLP") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{kind} {name} must be an integer >= 1, got {value!r}")
    return value


class MLP(nn.Module):
    """`depth` bias-free Linear layers: d_in -> width -> ... -> width -> d_out (depth 1: d_in -> d_out)."""

    def __init__(self, d_in: int, d_out: int, depth: int, width: int):
        super().__init__()
        d_in, d_out = _positive_int("d_in", d_in), _positive_int("d_out", d_out)
        depth, width = _positive_int("depth", depth), _positive_int("width", width)
        sizes = mlp_sizes(d_in, d_out, depth, width)
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


class CNN(nn.Module):
    """`depth` bias-free weight tensors: depth-1 3x3 convs with `width` channels, then one Linear.

    x (n, C*H*W) is viewed as (n, C, H, W) (4-D input is taken as is), then
        h <- phi(conv3x3(h))            (padding 1, no bias; phi(z) = sqrt(2) relu(z))
        h <- avgpool2x2(h)              after the convs in `pool_after` (see shapes.pool_positions)
    then a global average over positions gives (n, width) and f = W_L h (unscaled output).
    Pooling has no weights, so depth counts weight tensors exactly as for the MLP.
    """

    def __init__(self, input_shape, d_out: int, depth: int, width: int):
        super().__init__()
        shape = tuple(input_shape) if input_shape is not None else ()
        if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
            raise ValueError(
                f"CNN input_shape must be (channels, height, width) of integers >= 1, got {input_shape!r}"
            )
        d_out, width = _positive_int("d_out", d_out, "CNN"), _positive_int("width", width, "CNN")
        depth = _positive_int("depth", depth, "CNN")
        if depth < 2:
            raise ValueError(
                f"CNN depth must be >= 2 (at least one conv layer and the final linear layer), got {depth}"
            )
        self.input_shape = shape
        channels = [shape[0]] + [width] * (depth - 1)
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, kernel_size=3, padding=1, bias=False) for a, b in zip(channels[:-1], channels[1:])
        )
        self.pool_after = pool_positions(depth - 1, min(shape[1], shape[2]))
        self.head = nn.Linear(width, d_out, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            x = x.reshape(x.shape[0], *self.input_shape)
        for i, conv in enumerate(self.convs):
            x = torch.relu(conv(x)) * math.sqrt(2)
            if i in self.pool_after:
                x = F.avg_pool2d(x, 2)
        return self.head(x.mean(dim=(2, 3)))

    def weights(self) -> list[nn.Parameter]:
        return [conv.weight for conv in self.convs] + [self.head.weight]

    @property
    def dims(self) -> list[tuple[int, int]]:
        """(out, in) channels of each layer, input side first (the Linear layer last)."""
        convs = [(c.out_channels, c.in_channels) for c in self.convs]
        return convs + [(self.head.out_features, self.head.in_features)]


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
    params = model.weights() if isinstance(model, (MLP, CNN)) else list(model.parameters())
    for p in params:
        init_agd_(p, generator)
    return model


ARCHS = {"mlp": MLP, "cnn": CNN}


def build_model(arch: str, d_in: int, d_out: int, depth: int, width: int,
                input_shape: tuple[int, int, int] | None = None) -> nn.Module:
    """The network a run spec names: "mlp" on flat inputs, or "cnn" on images of `input_shape`
    (channels, height, width), whose product must be d_in."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
    if arch == "cnn":
        if input_shape is None:
            raise ValueError("arch 'cnn' needs image inputs with a (channels, height, width) shape")
        if math.prod(input_shape) != d_in:
            raise ValueError(
                f"input_shape {tuple(input_shape)} holds {math.prod(input_shape)} values, not d_in = {d_in}"
            )
        return CNN(input_shape, d_out, depth, width)
    return MLP(d_in, d_out, depth, width)
