"""The shapes of the networks the app builds, without building them (no torch): the layer sizes of
the bias-free MLP and where the CNN pools. `agd_viz.nets` builds exactly these; `agd_viz.spec`
counts their cost from them; the How AGD works page draws them.
"""

from __future__ import annotations

__all__ = ["layer_dims", "mlp_sizes", "weight_count", "pool_positions", "pools_before"]


def mlp_sizes(d_in: int, d_out: int, depth: int, width: int) -> list[int]:
    """d_in -> width -> ... -> width -> d_out: `depth` weight matrices (depth 1: d_in -> d_out)."""
    return [int(d_in)] + [int(width)] * (int(depth) - 1) + [int(d_out)]


def layer_dims(d_in: int, d_out: int, depth: int, width: int) -> list[tuple[int, int]]:
    """(d_k, d_{k-1}) of each weight matrix W_k of the MLP, input side first (PyTorch's (out, in))."""
    sizes = mlp_sizes(d_in, d_out, depth, width)
    return [(sizes[k + 1], sizes[k]) for k in range(int(depth))]


def weight_count(d_in: int, d_out: int, depth: int, width: int) -> int:
    """Σ_k d_k·d_{k−1}: the MLP's weights, and its multiply-adds per example."""
    return sum(a * b for a, b in layer_dims(d_in, d_out, depth, width))


def pool_positions(n_conv: int, side: int) -> tuple[int, ...]:
    """After which convs (0-based) the CNN's 2x2 average pool halves the resolution.

    Halve while the smaller side is at least 8 (32 -> 16 -> 8 -> 4, 28 -> 14 -> 7, 8 -> 4), never
    after the last conv (the global pool follows it), spread evenly through depth; ceil, so that
    stages at high resolution are the longer ones: 7 convs, 3 pools -> after 1, 3, 5.
    """
    n_pool = 0
    while side >= 8 and n_pool < n_conv - 1:
        side //= 2
        n_pool += 1
    return tuple(-(-(k + 1) * n_conv // (n_pool + 1)) - 1 for k in range(n_pool))


def pools_before(n_conv: int, side: int) -> list[int]:
    """How many poolings precede each conv layer."""
    after = set(pool_positions(n_conv, side))
    out, pools = [], 0
    for i in range(n_conv):
        out.append(pools)
        if i in after:
            pools += 1
    return out
