"""The bias-free CNN: shapes, AGD's per-slice conv rule (init and update, against the equations), and
a few training steps through train.run on a tiny image dataset in MNIST's file format."""

import gzip
import math
import struct

import numpy as np
import pytest
import torch

from agd_viz import downloads, nets, train
from agd_viz.nets import CNN, build_model
from agd_viz.optim import AGD, agd_scale
from agd_viz.spec import RunSpec, SpecError


def test_forward_shapes_pools_and_no_biases():
    model = CNN((3, 32, 32), d_out=10, depth=8, width=6)
    assert model.pool_after == (1, 3, 5)  # three halvings, 32 -> 4, spread through the 7 convs
    assert model(torch.randn(5, 3 * 32 * 32)).shape == (5, 10)
    assert model(torch.randn(5, 3, 32, 32)).shape == (5, 10)  # image-shaped input as is
    assert model.dims == [(6, 3)] + [(6, 6)] * 6 + [(10, 6)]
    assert [tuple(w.shape) for w in model.weights()][:2] == [(6, 3, 3, 3), (6, 6, 3, 3)]
    assert [p.dim() for p in model.parameters()] == [4] * 7 + [2]  # weights only: AGD's bias-free form
    assert CNN((1, 28, 28), 10, depth=6, width=4).pool_after == (1, 3)  # 28 -> 14 -> 7
    assert CNN((1, 8, 8), 10, depth=2, width=4).pool_after == ()  # one conv: the global pool follows it
    with pytest.raises(ValueError, match="depth must be >= 2"):
        CNN((1, 8, 8), 10, depth=1, width=4)
    with pytest.raises(ValueError, match=r"\(channels, height, width\)"):
        CNN((8, 8), 10, depth=2, width=4)
    with pytest.raises(ValueError, match="not d_in = 100"):
        build_model("cnn", 100, 10, 3, 4, input_shape=(1, 8, 8))
    assert isinstance(build_model("cnn", 64, 10, 3, 4, input_shape=(1, 8, 8)), CNN)


@pytest.mark.parametrize("shape, depth", [((3, 32, 32), 8), ((1, 28, 28), 6), ((1, 8, 8), 5), ((3, 32, 32), 2)])
def test_the_cnn_pools_where_the_cost_estimates_expect(shape, depth):
    """The CNN built for training and the shapes the server sizes it by (no torch) agree."""
    from agd_viz import shapes

    model = CNN(shape, 10, depth=depth, width=4)
    assert model.pool_after == shapes.pool_positions(depth - 1, min(shape[1:]))
    sizes = []
    x = torch.zeros(1, *shape)
    for i, conv in enumerate(model.convs):
        sizes.append(x.shape[-1])
        x = conv(x)
        if i in model.pool_after:
            x = torch.nn.functional.avg_pool2d(x, 2)
    assert [shape[-1] // 2**k for k in shapes.pools_before(depth - 1, shape[-1])] == sizes


def test_agd_init_makes_every_kernel_slice_semi_orthogonal_at_its_scale():
    model = CNN((2, 8, 8), d_out=3, depth=3, width=5)
    nets.init_agd_model_(model, torch.Generator().manual_seed(0))
    for w in model.weights():
        scale = math.sqrt(w.shape[0] / w.shape[1]) / (3.0 if w.dim() == 4 else 1.0)
        assert agd_scale(w) == pytest.approx(scale)
        slices = [w[:, :, i, j] for i in range(3) for j in range(3)] if w.dim() == 4 else [w]
        for s in slices:
            sv = torch.linalg.svdvals(s.detach().double())
            torch.testing.assert_close(sv, torch.full_like(sv, scale), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("foreach", [False, True])
def test_agd_step_on_conv_kernels_follows_the_equations(foreach):
    torch.manual_seed(0)
    model = CNN((2, 8, 8), d_out=3, depth=3, width=4)
    opt = AGD(model.parameters(), foreach=foreach)
    opt.init_weights(torch.Generator().manual_seed(1))
    x, y = torch.randn(6, 128), torch.tensor([0, 1, 2, 0, 1, 2])
    torch.nn.functional.cross_entropy(model(x), y).backward()
    ws = [w.detach().double().clone() for w in model.weights()]
    gs = [w.grad.double().clone() for w in model.weights()]
    L = len(ws)

    # G = (1/L) sum_k sum_slices scale_k ||grad slice||_F ;  eta = log((1 + sqrt(1 + 4G)) / 2)
    def slices(t):
        return [(i, j) for i in range(t.shape[2]) for j in range(t.shape[3])] if t.dim() == 4 else [None]

    def part(t, ij):
        return t if ij is None else t[:, :, ij[0], ij[1]]

    scales = [math.sqrt(w.shape[0] / w.shape[1]) / (math.sqrt(w.shape[2] * w.shape[3]) if w.dim() == 4 else 1)
              for w in ws]
    G = sum(s * part(g, ij).norm() for g, s in zip(gs, scales) for ij in slices(g)) / L
    eta = math.log((1 + math.sqrt(1 + 4 * G)) / 2)
    eta_t, G_t = opt.step_tensors()
    assert float(G_t) == pytest.approx(float(G), rel=1e-5)
    assert float(eta_t) == pytest.approx(eta, rel=1e-5)

    # W_k slice <- W_k slice - (eta/L) scale_k grad slice / ||grad slice||_F
    for w_new, w, g, s in zip(model.weights(), ws, gs, scales):
        expected = w.clone()
        for ij in slices(g):
            gp = part(g, ij)
            part(expected, ij).sub_((eta / L) * s * gp / gp.norm())
        torch.testing.assert_close(w_new.detach().double(), expected, rtol=1e-5, atol=1e-6)


def test_runspec_accepts_cnn_only_for_image_datasets():
    assert RunSpec(arch="cnn", dataset="digits", depth=3).arch == "cnn"  # digits are 1x8x8 images
    assert RunSpec(arch="cnn", dataset="cifar10", depth=3).dataset == "cifar10"
    with pytest.raises(SpecError, match="arch 'cnn' needs an image dataset .*'moons' is not one"):
        RunSpec(arch="cnn", dataset="moons")
    with pytest.raises(SpecError, match="depth ≥ 2"):
        RunSpec(arch="cnn", dataset="digits", depth=1)


def write_stripes_mnist(folder, n_train=40, n_test=10, seed=0):
    """MNIST-format files: class 0 has vertical stripes, class 1 horizontal ones, plus noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 2
        stripes = (np.arange(28) // 2 % 2) * 160
        images = rng.integers(0, 60, (n, 28, 28))
        images[labels == 0] += stripes[None, None, :]
        images[labels == 1] += stripes[None, :, None]
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (folder / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def test_tiny_cnn_trains_through_the_run_loop(tmp_path, monkeypatch):
    monkeypatch.setenv(downloads.ENV_DIR, str(tmp_path))
    write_stripes_mnist(tmp_path / "mnist")
    spec = RunSpec(dataset="mnist", arch="cnn", depth=3, width=8, steps=12, batch_size=64,
                   optimizers=("agd", "adam:lr=1e-2"), eval_every=4, metrics="full")
    recs = list(train.run(spec))
    ends = [r for r in recs if isinstance(r, train.End)]
    assert [e.status for e in ends] == ["finished", "finished"]
    agd = [r for r in recs if isinstance(r, train.Step) and r.opt == 0]
    first, last = agd[0], agd[-1]
    assert last.step == 12 and last.train_loss < first.train_loss
    assert all(math.isfinite(r.eta) and r.eta > 0 for r in agd[1:])
    assert len(first.layers["w_spec_scaled"]) == 3
    # AGD's init puts the hidden conv kernel at scaled spectral norm 1 (out = in channels).
    assert first.layers["w_spec_scaled"][1] == pytest.approx(1.0, abs=0.1)
    adam = [r for r in recs if isinstance(r, train.Step) and r.opt == 1]
    assert adam[-1].lr == pytest.approx(1e-2)
