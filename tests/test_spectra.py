import math

import numpy as np
import pytest
import torch

from agd_viz import spectra
from agd_viz.spectra import PowerIteration, as_matrix, exact_spectral_norms, stable_rank, stable_rank_from


def semi_orthogonal(m, n, seed=0):
    q, _ = torch.linalg.qr(torch.randn(max(m, n), min(m, n), generator=torch.Generator().manual_seed(seed)))
    return q if m >= n else q.T


def test_exact_norms_match_numpy():
    a = np.random.default_rng(0).normal(size=(7, 5))
    t = torch.tensor(a)
    assert spectra.spectral_norm_exact(t).item() == pytest.approx(np.linalg.norm(a, 2), rel=1e-12)
    assert spectra.fro_norm(t).item() == pytest.approx(np.linalg.norm(a), rel=1e-12)
    s = np.linalg.svd(a, compute_uv=False)
    assert stable_rank(t).item() == pytest.approx((s**2).sum() / s[0] ** 2, rel=1e-12)


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5)])
def test_semi_orthogonal_matrix_has_stable_rank_min_dim(shape):
    q = semi_orthogonal(*shape) * 3.0  # stable rank ignores scale
    assert stable_rank(q).item() == pytest.approx(min(shape), rel=1e-5)
    assert spectra.spectral_norm_exact(q).item() == pytest.approx(3.0, rel=1e-5)


def test_rank_one_matrix_has_stable_rank_one():
    u, v = torch.randn(9, 1), torch.randn(1, 4)
    assert stable_rank(u @ v).item() == pytest.approx(1.0, rel=1e-5)


SYNC_FREE = pytest.mark.parametrize("sync_free", [False, True], ids=["cpu-eigh", "sync-free"])


def test_diagonal_matrix_known_singular_values():
    d = torch.diag(torch.tensor([3.0, -2.0, 1.0, 0.5]))
    assert spectra.spectral_norm_exact(d).item() == pytest.approx(3.0)
    assert stable_rank(d).item() == pytest.approx((9 + 4 + 1 + 0.25) / 9)
    assert PowerIteration()([d]).item() == pytest.approx(3.0, rel=1e-4)


def test_stable_rank_from_is_elementwise_and_zero_for_zero_matrices():
    fro = torch.tensor([2.0, 0.0, 3.0])
    spec = torch.tensor([1.0, 0.0, 3.0])
    torch.testing.assert_close(stable_rank_from(fro, spec), torch.tensor([4.0, 0.0, 1.0]))
    assert stable_rank(torch.zeros(3, 4)).item() == 0.0


def test_conv_kernel_as_matrix():
    w = torch.randn(8, 3, 5, 5)
    assert as_matrix(w).shape == (8, 75)
    assert as_matrix(torch.randn(4, 6)).shape == (4, 6)
    torch.testing.assert_close(
        spectra.spectral_norm_exact(w), torch.linalg.matrix_norm(w.reshape(8, 75), 2)
    )
    torch.testing.assert_close(PowerIteration()([w]), exact_spectral_norms([w]), rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="shape"):
        as_matrix(torch.randn(3, 4, 5))


@SYNC_FREE
def test_estimates_for_mixed_shapes_are_accurate_and_never_overshoot(sync_free):
    g = torch.Generator().manual_seed(1)
    mats = [torch.randn(s, generator=g) for s in [(64, 3), (64, 64), (64, 64), (10, 64), (200, 100), (1, 7)]]
    est = PowerIteration(sync_free=sync_free)(mats)
    exact = exact_spectral_norms(mats)
    assert est.shape == (6,) and est.dtype == torch.float32
    assert (est <= exact * (1 + 1e-5)).all()
    assert ((est / exact - 1).abs() < 1e-3).all()


@SYNC_FREE
def test_zero_and_nan_matrices_do_not_poison_later_estimates(sync_free):
    pi = PowerIteration(sync_free=sync_free)
    w = torch.randn(32, 32)
    pi([w])
    assert pi([torch.zeros(32, 32)]).item() == 0.0
    assert pi([w]).item() == pytest.approx(exact_spectral_norms([w]).item(), rel=1e-3)
    assert math.isnan(pi([torch.full((32, 32), float("nan"))]).item())
    assert pi([w]).item() == pytest.approx(exact_spectral_norms([w]).item(), rel=1e-3)
    # A layer that starts at zero (a zero gradient) is estimated once it becomes nonzero.
    pi = PowerIteration(sync_free=sync_free)
    assert pi([torch.zeros(16, 8)]).item() == 0.0
    v = torch.randn(16, 8)
    assert pi([v]).item() == pytest.approx(exact_spectral_norms([v]).item(), rel=1e-3)


def test_huge_and_tiny_matrices_stay_finite_in_float32():
    w = torch.randn(40, 40, generator=torch.Generator().manual_seed(2))
    ref = exact_spectral_norms([w]).item()
    for scale in (1e25, 1e-25):
        est = PowerIteration()([w * scale]).item()
        assert est == pytest.approx(ref * scale, rel=1e-3)


def test_shape_change_reseeds_and_dtypes_are_handled():
    pi = PowerIteration()
    pi([torch.randn(20, 10), torch.randn(5, 20)])
    mats = [torch.randn(30, 12, dtype=torch.float64), torch.randn(12, 30).bfloat16()]
    est = pi(mats)
    assert est.dtype == torch.float32
    torch.testing.assert_close(est, exact_spectral_norms(mats), rtol=2e-3, atol=0)
    assert pi([]).shape == (0,)
    with pytest.raises(ValueError, match="iters"):
        pi(mats, iters=0)


def _train_and_track(init, sync_free, steps=200, depth=4, width=64, d_in=32, d_out=10, seed=0):
    """Adam on a bias-free MLP; relative error of the estimates vs SVD, every step, every layer."""
    torch.manual_seed(seed)
    dims = [d_in] + [width] * (depth - 1) + [d_out]
    layers = [torch.nn.Linear(dims[i], dims[i + 1], bias=False) for i in range(depth)]
    if init == "orthogonal":  # AGD's init: all singular values equal, the flat spectrum case
        for layer in layers:
            torch.nn.init.orthogonal_(layer.weight)
            layer.weight.data *= math.sqrt(layer.weight.shape[0] / layer.weight.shape[1])
    mods = []
    for layer in layers:
        mods += [layer, torch.nn.ReLU()]
    net = torch.nn.Sequential(*mods[:-1])
    x = torch.randn(512, d_in)
    y = torch.randint(0, d_out, (512,))
    weights = [layer.weight for layer in layers]
    opt = torch.optim.Adam(weights, lr=1e-3)
    pi_w, pi_g = PowerIteration(sync_free=sync_free), PowerIteration(sync_free=sync_free)
    w_err, g_err = [], []
    for _ in range(steps):
        idx = torch.randint(0, 512, (64,))
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        grads = [w.grad for w in weights]
        w_err.append((pi_w(weights) / exact_spectral_norms(weights) - 1).abs())
        g_err.append((pi_g(grads) / exact_spectral_norms(grads) - 1).abs())
        opt.step()
    return torch.stack(w_err), torch.stack(g_err), loss.item()


@pytest.mark.parametrize(
    "init, sync_free", [("default", False), ("orthogonal", False), ("orthogonal", True)]
)
def test_warm_started_estimates_track_a_real_training_run_within_one_percent(init, sync_free):
    w_err, g_err, final_loss = _train_and_track(init, sync_free)
    assert final_loss < 2.0  # it did train (chance is log 10 = 2.3)
    # Every layer, every step; the worst case seen in development was 0.15% (see DEFAULT_ITERS).
    assert w_err.max().item() < 0.01, w_err.max(dim=0)
    assert g_err.max().item() < 0.01, g_err.max(dim=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_estimates_match_cpu_without_host_syncs():
    g = torch.Generator().manual_seed(3)
    mats = [torch.randn(s, generator=g) for s in [(128, 64), (128, 128), (128, 128), (10, 128)]]
    cpu = PowerIteration()(mats)
    pi = PowerIteration()
    cuda_mats = [m.cuda() for m in mats]
    pi(cuda_mats)  # the cold call copies the start blocks to the device once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        est = pi(cuda_mats)
        srank = stable_rank_from(torch.stack([spectra.fro_norm(m) for m in cuda_mats]), est)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert est.device.type == "cuda" and srank.device.type == "cuda"
    torch.testing.assert_close(est.cpu(), cpu, rtol=1e-3, atol=0)


def _probe_errors(optimizer: str, steps: int = 300, depth: int = 6, width: int = 128):
    """The training loop's own probe (`train._LayerProbe`) at the automatic cadence of a run of
    `steps` on digits; at each probe, the largest relative error of any layer's stable rank of the
    weights and of the gradients against SVD (float64)."""
    from agd_viz import data, nets, optspec, train
    from agd_viz.optim import make_optimizer
    from agd_viz.spec import RunSpec

    spec = RunSpec(dataset="digits", depth=depth, width=width, steps=steps, batch_size=128, device="cpu",
                   optimizers=(optimizer,))
    ds = data.load("digits")
    cadence = train._Cadence.of(spec, ds)
    torch.manual_seed(0)
    model = nets.MLP(ds.d_in, ds.d_out, depth, width)
    init = nets.init_agd_model_ if optspec.parse(optimizer).init == "agd" else nets.init_default_
    init(model, torch.Generator().manual_seed(1))
    opt = make_optimizer(optimizer, model.parameters())
    weights = list(model.parameters())
    probe = train._LayerProbe(weights, cadence.layer_every)
    probe.at_init()
    batches = train._Batches(ds.x_train.shape[0], 128, 0, torch.device("cpu"))
    names = train.LAYER_METRICS

    def exact_srank(mats):
        out = []
        for m in mats:
            a = m.detach().double()
            out.append(float(a.square().sum() / torch.linalg.matrix_norm(a, 2) ** 2))
        return torch.tensor(out)

    w_err, g_err = [], []
    for step in range(1, steps + 1):
        probed = cadence.probes(step)
        if probed:
            probe.before_step()
        idx = batches.next()
        opt.zero_grad(set_to_none=True)
        data.loss_fn(ds.task)(model(ds.x_train[idx]), ds.y_train[idx]).backward()
        opt.step()
        if probed:
            rows = probe.after_step().double()
            w_err.append((rows[names.index("w_srank")] / exact_srank(weights) - 1).abs().max().item())
            g_err.append((rows[names.index("g_srank")] / exact_srank([w.grad for w in weights]) - 1).abs().max().item())
    return cadence.layer_every, w_err, g_err


@pytest.mark.parametrize("optimizer", ["agd", "adam:lr=1e-3"])
def test_the_training_probe_keeps_stable_ranks_within_one_percent_along_a_run(optimizer):
    """The estimates the charts show, where the loop takes them: every probe of a 300-step run
    (Adam from PyTorch's init is the hard case: a new top direction rises out of the initial
    spectrum in its first steps), every layer, weights and gradients."""
    every, w_err, g_err = _probe_errors(optimizer)
    assert len(w_err) >= 60  # the resolution of a default 300-step run (cost.resolved_layer_every)
    assert max(w_err) < 0.01, (every, w_err)
    assert max(g_err) < 0.01, (every, g_err)
