"""The bias-free MLP and its two inits."""

import math

import pytest
import torch
from torch import nn

from agd_viz.nets import ARCHS, MLP, build_model, init_agd_model_, init_default_
from agd_viz.optim import AGD


def test_depth_counts_weight_matrices_and_dims_are_out_in():
    assert MLP(5, 3, depth=1, width=99).dims == [(3, 5)]
    model = MLP(5, 3, depth=4, width=16)
    assert model.dims == [(16, 5), (16, 16), (16, 16), (3, 16)]
    assert [tuple(w.shape) for w in model.weights()] == model.dims
    assert model.weights() == list(model.parameters())  # bias-free, in input-to-output order
    AGD(model.parameters())  # so AGD accepts it as is


@pytest.mark.parametrize("d_in, d_out, depth, width", [(5, 3, 1, 99), (64, 10, 4, 32), (3, 2, 8, 1)])
def test_the_mlp_has_the_shapes_the_server_sizes_it_by(d_in, d_out, depth, width):
    from agd_viz import shapes

    model = MLP(d_in, d_out, depth, width)
    assert model.dims == shapes.layer_dims(d_in, d_out, depth, width)
    assert sum(w.numel() for w in model.weights()) == shapes.weight_count(d_in, d_out, depth, width)


def test_forward_is_scaled_relu_between_linear_layers_and_flattens_input():
    torch.manual_seed(0)
    model = MLP(18, 4, depth=3, width=8)
    x = torch.randn(5, 2, 3, 3)
    w1, w2, w3 = model.weights()
    h = torch.relu(x.reshape(5, 18) @ w1.T) * math.sqrt(2)
    h = torch.relu(h @ w2.T) * math.sqrt(2)
    expected = h @ w3.T  # output layer unscaled, no activation
    out = model(x)
    assert out.shape == (5, 4)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(model(x.reshape(5, 18)), out)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"depth": 0}, "depth"),
        ({"width": 0}, "width"),
        ({"d_in": 0}, "d_in"),
        ({"d_out": -1}, "d_out"),
        ({"depth": 2.5}, "depth"),
        ({"width": True}, "width"),
    ],
)
def test_bad_sizes_are_refused(kwargs, name):
    args = {"d_in": 4, "d_out": 2, "depth": 2, "width": 8, **kwargs}
    with pytest.raises(ValueError, match=name):
        MLP(**args)


def test_default_init_is_uniform_in_the_pytorch_bound_and_seeded():
    def draw(seed):
        model = MLP(50, 10, depth=3, width=200)
        return init_default_(model, torch.Generator().manual_seed(seed))

    a, b, c = draw(0), draw(0), draw(1)
    for wa, wb, wc in zip(a.weights(), b.weights(), c.weights()):
        assert torch.equal(wa, wb)
        assert not torch.equal(wa, wc)
        bound = 1 / math.sqrt(wa.shape[1])
        assert wa.abs().max() <= bound
        assert wa.abs().max() > 0.95 * bound  # fills the interval, not a narrower law
        # variance of U(-b, b) is b^2/3
        assert wa.var().item() == pytest.approx(bound**2 / 3, rel=0.1)


def test_default_init_covers_biases_of_ordinary_layers():
    layer = nn.Linear(400, 300)
    init_default_(layer, torch.Generator().manual_seed(0))
    bound = 1 / math.sqrt(400)
    assert layer.bias.abs().max() <= bound and layer.bias.abs().max() > 0.9 * bound


def test_agd_init_sets_every_layer_to_its_scale_and_is_seeded():
    model = init_agd_model_(MLP(64, 10, depth=4, width=32), torch.Generator().manual_seed(0))
    for w, (d_out, d_in) in zip(model.weights(), model.dims):
        sv = torch.linalg.svdvals(w.detach().double())
        torch.testing.assert_close(sv, torch.full_like(sv, math.sqrt(d_out / d_in)), rtol=1e-5, atol=1e-6)
    again = init_agd_model_(MLP(64, 10, depth=4, width=32), torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(model.weights(), again.weights()))


def test_agd_init_refuses_layers_with_bias():
    with pytest.raises(ValueError, match="bias-free"):
        init_agd_model_(nn.Sequential(nn.Linear(4, 4)), torch.Generator().manual_seed(0))


def test_agd_init_keeps_activations_the_same_size_through_depth():
    """The point of the sqrt(d_out/d_in) scales and the sqrt(2) relu: signals neither vanish nor blow up."""
    depth, width, d_in = 16, 128, 32
    model = init_agd_model_(MLP(d_in, 10, depth=depth, width=width), torch.Generator().manual_seed(0))
    x = torch.randn(256, d_in, generator=torch.Generator().manual_seed(1))
    h = x / x.norm(dim=1, keepdim=True) * math.sqrt(d_in)
    rms = []
    with torch.no_grad():
        for layer in model.layers[:-1]:
            h = torch.relu(layer(h)) * math.sqrt(2)
            rms.append(h.pow(2).mean().sqrt().item())
    assert 0.3 < rms[-1] / rms[0] < 3, rms


def test_build_model():
    model = build_model("mlp", 6, 2, 3, 16)
    assert isinstance(model, MLP) and model.dims == [(16, 6), (16, 16), (2, 16)]
    assert set(ARCHS) == {"mlp", "cnn"}
    with pytest.raises(ValueError, match="arch 'cnn' needs image inputs"):
        build_model("cnn", 6, 2, 3, 16)
    with pytest.raises(ValueError, match="unknown arch 'resnet'; valid: mlp, cnn"):
        build_model("resnet", 6, 2, 3, 16)
