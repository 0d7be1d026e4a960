"""AGD against its equations, written out again here in float64 NumPy, and the optimiser factory."""

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agd_viz.nets import MLP, init_agd_model_
from agd_viz.optim import (
    AGD,
    FACTORIES,
    agd_scale,
    agd_update,
    init_agd_,
    make_optimizer,
    optimizer_lr,
    optimizer_state_bytes,
    register_optimizer,
)
from agd_viz.optspec import OPTIMIZERS, OptSpec
from agd_viz.optspec import parse as parse_optimizer

MLP_SHAPES = [(32, 10), (64, 32), (64, 64), (8, 64), (3, 8)]  # includes wide -> narrow (8, 64)
CONV_SHAPES = [(8, 4, 3, 3), (16, 8, 3, 3), (4, 16, 1, 1), (10, 4)]


def reference_step(weights, grads, gains, L=None):
    """Algorithm 1 of Bernstein et al. (2023) in float64, slice by slice; returns (new weights, eta, G).

    `grads[k] is None` means the weight is skipped but still counted in L.
    """
    L = len(weights) if L is None else L
    G = 0.0
    plan = []
    for W, g in zip(weights, grads):
        if g is None:
            plan.append(None)
            continue
        g = np.asarray(g, dtype=np.float64)
        if g.ndim == 2:
            slices = {(): g}
            scale = math.sqrt(g.shape[0] / g.shape[1])
        else:
            kh, kw = g.shape[2:]
            slices = {(i, j): g[:, :, i, j] for i in range(kh) for j in range(kw)}
            scale = math.sqrt(g.shape[0] / g.shape[1]) / math.sqrt(kh * kw)
        norms = {ij: math.sqrt(float((s**2).sum())) for ij, s in slices.items()}
        G += scale * sum(norms.values()) / L
        plan.append((scale, slices, norms))
    eta = math.log((1 + math.sqrt(1 + 4 * G)) / 2)
    new = []
    for W, gain, item in zip(weights, gains, plan):
        W = np.array(W, dtype=np.float64)
        if item is not None:
            scale, slices, norms = item
            for ij, s in slices.items():
                if norms[ij] > 0:
                    idx = (slice(None), slice(None)) + ij
                    W[idx] -= gain * (eta / L) * scale * s / norms[ij]
        new.append(W)
    return new, eta, G


def make_params(shapes, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    params = [nn.Parameter(torch.randn(s, generator=gen, dtype=dtype) / math.sqrt(s[1])) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=dtype)
    return params


def snapshot(params):
    return [p.detach().double().numpy().copy() for p in params], [
        None if p.grad is None else p.grad.double().numpy().copy() for p in params
    ]


def assert_matches(params, expected):
    for p, w in zip(params, expected):
        np.testing.assert_allclose(p.detach().double().numpy(), w, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------- equations


@pytest.mark.parametrize("foreach", [False, True, None])
@pytest.mark.parametrize("shapes", [MLP_SHAPES, CONV_SHAPES], ids=["mlp", "conv"])
def test_step_matches_algorithm_1(shapes, foreach):
    params = make_params(shapes)
    w0, g0 = snapshot(params)
    expected, eta_ref, G_ref = reference_step(w0, g0, [1.0] * len(params))

    opt = AGD(params, foreach=foreach)
    eta = opt.step()

    assert_matches(params, expected)
    assert eta == pytest.approx(eta_ref, rel=1e-6)
    assert float(opt.last_G) == pytest.approx(G_ref, rel=1e-6)
    # eta is the closed form of the G it reports.
    assert eta == pytest.approx(math.log((1 + math.sqrt(1 + 4 * float(opt.last_G))) / 2), rel=1e-6)


@pytest.mark.parametrize("foreach", [False, True])
def test_gain_scales_the_update_per_group_and_L_spans_groups(foreach):
    params = make_params(MLP_SHAPES + [(5, 4, 3, 3)], seed=1)
    gains = [10.0, 10.0, 0.5, 0.5, 0.5, 2.0]
    w0, g0 = snapshot(params)
    expected, eta_ref, G_ref = reference_step(w0, g0, gains)

    opt = AGD(
        [{"params": params[:2], "gain": 10.0}, {"params": params[2:5], "gain": 0.5}, {"params": params[5:]}],
        gain=2.0,
        foreach=foreach,
    )
    eta = opt.step()

    assert_matches(params, expected)
    assert eta == pytest.approx(eta_ref, rel=1e-6)  # gain moves weights, never eta
    assert float(opt.last_G) == pytest.approx(G_ref, rel=1e-6)


def test_update_has_the_size_the_paper_prescribes():
    """||Delta W_k||_F = gain * eta/L * scale_k: the relative update is set by eta alone."""
    params = make_params(MLP_SHAPES, seed=2)
    before = [p.detach().clone() for p in params]
    eta = AGD(params, gain=3.0).step()
    L = len(params)
    for p, b in zip(params, before):
        assert float((p.detach() - b).norm()) == pytest.approx(3.0 * eta / L * agd_scale(p), rel=1e-5)


def test_foreach_equals_plain_over_several_steps():
    shapes = MLP_SHAPES + CONV_SHAPES
    a, b = make_params(shapes, seed=3), make_params(shapes, seed=3)
    opt_a = AGD([{"params": a[:4], "gain": 2.0}, {"params": a[4:]}], foreach=True)
    opt_b = AGD([{"params": b[:4], "gain": 2.0}, {"params": b[4:]}], foreach=False)
    gen = torch.Generator().manual_seed(4)
    for _ in range(5):
        for pa, pb in zip(a, b):
            pa.grad = torch.randn(pa.shape, generator=gen)
            pb.grad = pa.grad.clone()
        eta_a, G_a = opt_a.step_tensors()
        eta_b, G_b = opt_b.step_tensors()
        torch.testing.assert_close(eta_a, eta_b)
        torch.testing.assert_close(G_a, G_b)
    for pa, pb in zip(a, b):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)


def test_float64_params_stay_float64():
    params = make_params(MLP_SHAPES, dtype=torch.float64)
    w0, g0 = snapshot(params)
    expected, eta_ref, _ = reference_step(w0, g0, [1.0] * len(params))
    eta = AGD(params).step()
    for p, w in zip(params, expected):
        assert p.dtype == torch.float64
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-12, atol=1e-12)
    assert eta == pytest.approx(eta_ref, rel=1e-12)


def test_step_tensors_returns_0d_tensors_and_sets_last_values():
    params = make_params(MLP_SHAPES)
    opt = AGD(params)
    assert opt.last_eta is None and opt.last_G is None
    eta, G = opt.step_tensors()
    assert isinstance(eta, torch.Tensor) and eta.dim() == 0
    assert isinstance(G, torch.Tensor) and G.dim() == 0
    assert opt.last_eta is eta and opt.last_G is G


def test_functional_update_refuses_mismatched_lists():
    params = make_params(MLP_SHAPES[:2])
    with pytest.raises(ValueError, match="equal length"):
        agd_update(params, [p.grad for p in params], [1.0], [1.0, 1.0], L=2)


def test_closure_is_evaluated_with_grad_enabled():
    model = MLP(6, 3, depth=2, width=8)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    opt = AGD(model.parameters())
    calls = []

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        calls.append(float(loss.detach()))
        return loss

    with torch.no_grad():
        eta = opt.step(closure)
    assert calls and eta > 0


# ------------------------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("foreach", [False, True])
def test_zero_gradient_moves_nothing_and_makes_no_nan(foreach):
    params = make_params(MLP_SHAPES[:3] + [(4, 8, 3, 3)])
    params[1].grad.zero_()
    params[3].grad[:, :, 1, 2] = 0  # one dead conv slice
    w0, g0 = snapshot(params)
    expected, eta_ref, _ = reference_step(w0, g0, [1.0] * 4)

    eta = AGD(params, foreach=foreach).step()

    assert all(torch.isfinite(p).all() for p in params)
    assert torch.equal(params[1].detach().double(), torch.from_numpy(w0[1]))
    assert torch.equal(params[3].detach()[:, :, 1, 2].double(), torch.from_numpy(w0[3][:, :, 1, 2]))
    assert_matches(params, expected)
    assert eta == pytest.approx(eta_ref, rel=1e-6)


@pytest.mark.parametrize("foreach", [False, True])
def test_all_zero_gradients_give_eta_zero(foreach):
    params = make_params(MLP_SHAPES)
    for p in params:
        p.grad.zero_()
    before = [p.detach().clone() for p in params]
    assert AGD(params, foreach=foreach).step() == 0.0
    assert all(torch.equal(p, b) for p, b in zip(params, before))


@pytest.mark.parametrize("foreach", [False, True])
def test_param_without_grad_is_skipped_but_counted_in_L(foreach):
    params = make_params(MLP_SHAPES)
    params[2].grad = None
    w0, g0 = snapshot(params)
    expected, eta_ref, _ = reference_step(w0, g0, [1.0] * 5, L=5)

    eta = AGD(params, foreach=foreach).step()

    assert_matches(params, expected)
    assert eta == pytest.approx(eta_ref, rel=1e-6)
    assert torch.equal(params[2].detach().double(), torch.from_numpy(w0[2]))


def test_no_grads_at_all_is_a_no_op():
    params = make_params(MLP_SHAPES)
    for p in params:
        p.grad = None
    assert AGD(params).step() == 0.0


def test_one_dimensional_parameter_is_refused_with_its_shape():
    msg = "AGD got a 1-D parameter of shape (10,): AGD networks are bias-free; build layers with bias=False"
    with pytest.raises(ValueError, match=re.escape(msg)):
        AGD([nn.Parameter(torch.zeros(4, 10)), nn.Parameter(torch.zeros(10))])
    with pytest.raises(ValueError, match="bias-free"):
        AGD(nn.Linear(3, 4).parameters())  # bias=True by default
    with pytest.raises(ValueError, match=re.escape(msg)):
        init_agd_(torch.zeros(10))
    with pytest.raises(ValueError, match=re.escape("shape (2, 3, 4)")):
        AGD([nn.Parameter(torch.zeros(2, 3, 4))])
    opt = AGD([nn.Parameter(torch.zeros(4, 10))])
    with pytest.raises(ValueError, match="bias-free"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(10))]})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("gain", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_gain_is_refused(gain):
    with pytest.raises(ValueError, match="gain"):
        AGD([nn.Parameter(torch.zeros(4, 4))], gain=gain)


# ------------------------------------------------------------------- optimizer protocol and state


def test_state_stays_empty_while_adam_holds_two_copies_of_the_weights():
    model = MLP(20, 5, depth=3, width=32)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    x, y = torch.randn(8, 20), torch.randint(0, 5, (8,))
    sizes = {}
    for spec in ("agd", "adam"):
        opt = make_optimizer(spec, model.parameters())
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        sizes[spec] = optimizer_state_bytes(opt)
        if spec == "agd":
            assert len(opt.state) == 0
            assert opt.state_dict()["state"] == {}
    assert sizes["agd"] == 0
    # exp_avg and exp_avg_sq, plus a 4-byte step counter per tensor.
    assert 2 * weight_bytes <= sizes["adam"] <= 2 * weight_bytes + 8 * len(list(model.parameters()))


def test_state_dict_round_trip_restores_gains_and_the_trajectory():
    a = make_params(MLP_SHAPES, seed=5)
    b = make_params(MLP_SHAPES, seed=5)
    opt_a = AGD([{"params": a[:2], "gain": 3.0}, {"params": a[2:], "gain": 0.25}])
    saved = opt_a.state_dict()
    assert [g["gain"] for g in saved["param_groups"]] == [3.0, 0.25]

    opt_b = AGD([{"params": b[:2]}, {"params": b[2:]}])
    opt_b.load_state_dict(saved)
    assert [g["gain"] for g in opt_b.param_groups] == [3.0, 0.25]
    assert opt_b.state_dict() == saved

    assert opt_a.step() == opt_b.step()
    for pa, pb in zip(a, b):
        assert torch.equal(pa, pb)


def test_zero_grad_clears_gradients():
    params = make_params(MLP_SHAPES)
    opt = AGD(params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_add_param_group_joins_L_and_G():
    params = make_params(MLP_SHAPES + [(6, 3, 3, 3)], seed=6)
    w0, g0 = snapshot(params)
    gains = [1.0] * 5 + [4.0]
    expected, eta_ref, _ = reference_step(w0, g0, gains)

    opt = AGD(params[:5])
    opt.add_param_group({"params": params[5:], "gain": 4.0})
    eta = opt.step()

    assert_matches(params, expected)
    assert eta == pytest.approx(eta_ref, rel=1e-6)


# -------------------------------------------------------------------------------------------- init


@pytest.mark.parametrize("shape", [(64, 16), (16, 64), (32, 32), (1, 7)], ids=["tall", "wide", "square", "row"])
def test_init_gives_every_singular_value_the_scale(shape):
    w = torch.empty(shape)
    init_agd_(w, torch.Generator().manual_seed(0))
    sv = torch.linalg.svdvals(w.double())
    assert sv.numel() == min(shape)
    torch.testing.assert_close(sv, torch.full_like(sv, math.sqrt(shape[0] / shape[1])), rtol=1e-5, atol=1e-6)


def test_conv_init_is_semi_orthogonal_per_slice():
    w = torch.empty(8, 4, 3, 3)
    init_agd_(w, torch.Generator().manual_seed(0))
    scale = math.sqrt(8 / 4) / 3
    assert agd_scale(w) == pytest.approx(scale)
    for i in range(3):
        for j in range(3):
            sv = torch.linalg.svdvals(w[:, :, i, j].double())
            torch.testing.assert_close(sv, torch.full_like(sv, scale), rtol=1e-5, atol=1e-6)
    # slices are independent draws, not copies of one another
    assert not torch.allclose(w[:, :, 0, 0], w[:, :, 1, 1])


def test_init_is_deterministic_for_a_seed():
    def draw(seed):
        ws = [torch.empty(s) for s in MLP_SHAPES + CONV_SHAPES]
        gen = torch.Generator().manual_seed(seed)
        for w in ws:
            init_agd_(w, gen)
        return ws

    a, b, c = draw(7), draw(7), draw(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not any(torch.equal(x, z) for x, z in zip(a, c))


def test_optimizer_init_weights_covers_every_group():
    params = make_params(MLP_SHAPES + [(8, 4, 3, 3)])
    opt = AGD([{"params": params[:2]}, {"params": params[2:], "gain": 2.0}])
    opt.init_weights(torch.Generator().manual_seed(0))
    for p in params:
        mats = [p.detach()] if p.dim() == 2 else [p.detach()[:, :, i, j] for i in range(3) for j in range(3)]
        for m in mats:
            sv = torch.linalg.svdvals(m.double())
            torch.testing.assert_close(sv, torch.full_like(sv, agd_scale(p)), rtol=1e-5, atol=1e-6)
    assert all(p.grad is not None for p in params)  # init leaves gradients alone


def test_scale_of_matrix_and_kernel():
    assert agd_scale(torch.empty(8, 2)) == pytest.approx(2.0)
    assert agd_scale(torch.empty(2, 8)) == pytest.approx(0.5)
    assert agd_scale(torch.empty(16, 4, 5, 5)) == pytest.approx(2.0 / 5)


# ------------------------------------------------------------------------------------- end to end


def test_agd_trains_a_deep_mlp_without_tuning():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    d_in, classes, n = 16, 4, 256
    x = torch.randn(n, d_in, generator=gen)
    x = x / x.norm(dim=1, keepdim=True) * math.sqrt(d_in)
    y = (x @ torch.randn(d_in, classes, generator=gen)).argmax(1)

    model = MLP(d_in, classes, depth=4, width=32)
    init_agd_model_(model, gen)
    opt = AGD(model.parameters())
    losses = []
    for _ in range(50):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step_tensors()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses


def test_package_exports():
    from agd_viz import AGD as exported
    from agd_viz import make_optimizer as exported_factory

    assert exported is AGD
    assert exported_factory is make_optimizer


# ----------------------------------------------------------------------------------------- factory


@pytest.mark.parametrize(
    "spec, name, label, kwargs",
    [
        ("agd", "agd", "agd", {"gain": 1.0}),
        ("agd:gain=10", "agd", "agd gain=10", {"gain": 10.0}),
        ("  AGD : gain = 2.5 ", "agd", "agd gain=2.5", {"gain": 2.5}),
        ("adam", "adam", "adam lr=0.001", {"lr": 1e-3, "weight_decay": 0.0}),
        ("adam:lr=1e-3", "adam", "adam lr=0.001", {"lr": 1e-3}),
        ("adam:lr=3e-4,beta2=0.99", "adam", "adam lr=0.0003 beta2=0.99", {"lr": 3e-4, "beta2": 0.99}),
        ("sgd:lr=0.1,momentum=0.9", "sgd", "sgd lr=0.1 momentum=0.9", {"lr": 0.1, "momentum": 0.9}),
        ("sgd:lr=1,nesterov=true,momentum=0.5", "sgd", "sgd lr=1 momentum=0.5 nesterov=true",
         {"lr": 1.0, "nesterov": True}),
        ("adamw:lr=1e-3,weight_decay=0.01", "adamw", "adamw lr=0.001", {"weight_decay": 0.01}),
        ("adamw:weight_decay=0.1", "adamw", "adamw lr=0.001 weight_decay=0.1", {"weight_decay": 0.1}),
    ],
)
def test_parse_good_specs(spec, name, label, kwargs):
    parsed = parse_optimizer(spec)
    assert parsed.name == name
    assert parsed.label == label
    for key, value in kwargs.items():
        assert parsed.kwargs[key] == value and type(parsed.kwargs[key]) is type(value)
    assert parse_optimizer(parsed.spec) == parsed  # canonical strings round-trip
    assert parse_optimizer(parsed) is parsed


def test_defaults_and_init_key():
    assert parse_optimizer("adam").kwargs["lr"] == 1e-3
    assert parse_optimizer("adamw").kwargs["weight_decay"] == 0.01
    assert parse_optimizer("sgd").kwargs == {"lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
    assert parse_optimizer("agd").init == "agd" and parse_optimizer("agd").is_agd
    assert parse_optimizer("adam").init == "default" and not parse_optimizer("adam").is_agd
    spec = parse_optimizer("adam:lr=1e-2,init=agd")
    assert spec.init == "agd" and spec.label == "adam lr=0.01 init=agd"
    assert parse_optimizer("agd:init=default").init == "default"
    opt = make_optimizer(spec, [nn.Parameter(torch.zeros(3, 3))])  # init is not passed to torch
    assert isinstance(opt, torch.optim.Adam) and "init" not in opt.defaults


def test_specs_are_hashable_and_compare_by_value():
    assert parse_optimizer("adam") == parse_optimizer("adam:lr=0.001")
    assert len({parse_optimizer("adam"), parse_optimizer("adam:lr=1e-3"), parse_optimizer("agd")}) == 2
    with pytest.raises(AttributeError):
        parse_optimizer("agd").name = "adam"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("foo", "unknown optimiser 'foo'; valid: adam, adamw, agd, dadapt-adam, muon, nadam, prodigy, schedulefree-adamw, sgd"),
        ("", "unknown optimiser"),
        ("adam:foo=1", "valid options: beta1, beta2, eps, lr, weight_decay, init"),
        ("agd:lr=0.1", "valid options: gain, init"),
        ("adam:lr=abc", "lr must be a number, got 'abc'"),
        ("adam:lr=-1e-3", "lr must be > 0"),
        ("adam:lr=0", "lr must be > 0"),
        ("adam:lr=inf", "lr must be finite"),
        ("agd:gain=-2", "gain must be > 0"),
        ("sgd:momentum=1.5", "momentum must be in [0, 1)"),
        ("sgd:nesterov=maybe", "nesterov must be true or false"),
        ("adam:lr", "expected key=value"),
        ("adam:lr=1e-3,lr=1e-2", "given twice"),
        ("adam:init=xavier", "init must be one of agd, default"),
        ("adam:" + "lr=1," * 200, "too long"),
    ],
)
def test_parse_bad_specs(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_optimizer(spec)


def test_make_optimizer_builds_configured_torch_optimizers():
    params = [nn.Parameter(torch.zeros(4, 4))]
    adam = make_optimizer("adam:lr=1e-2,beta1=0.8", params)
    assert isinstance(adam, torch.optim.Adam)
    assert adam.defaults["lr"] == 1e-2 and adam.defaults["betas"] == (0.8, 0.999)
    sgd = make_optimizer("sgd:momentum=0.9", params)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    adamw = make_optimizer("adamw", params)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["weight_decay"] == 0.01
    agd = make_optimizer("agd:gain=2", params)
    assert isinstance(agd, AGD) and agd.param_groups[0]["gain"] == 2.0
    assert optimizer_lr(adam) == 1e-2
    assert math.isnan(optimizer_lr(agd))
    with pytest.raises(ValueError, match="nesterov"):
        make_optimizer("sgd:nesterov=true", params)


def test_registry_accepts_new_optimisers_with_typed_keys():
    register_optimizer("toysgd", lambda params, lr, steps, flag: torch.optim.SGD(params, lr=lr),
                       {"lr": 0.5, "steps": 3, "flag": False})
    try:
        assert "toysgd" in OPTIMIZERS
        assert OPTIMIZERS["toysgd"].defaults["steps"] == 3
        spec = parse_optimizer("toysgd:steps=10,flag=true,lr=2")
        assert spec.kwargs == {"lr": 2.0, "steps": 10, "flag": True}
        assert isinstance(spec.kwargs["steps"], int)
        with pytest.raises(ValueError, match="steps must be an integer"):
            parse_optimizer("toysgd:steps=1.5")
        assert isinstance(make_optimizer(spec, [nn.Parameter(torch.zeros(2, 2))]), torch.optim.SGD)
        assert "toysgd" in str(pytest.raises(ValueError, parse_optimizer, "nope").value)
    finally:
        OPTIMIZERS.pop("toysgd")
        FACTORIES.pop("toysgd")
    assert isinstance(parse_optimizer("agd"), OptSpec)
