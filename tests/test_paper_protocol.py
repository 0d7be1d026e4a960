"""The paper's protocol in the library: its square loss, CIFAR-10 augmentation, whole test sets;
and beyond it, Muon with the update stable rank that tells it from AGD."""

import math

import numpy as np
import pytest
import torch

from agd_viz import data, datasets, train
from agd_viz.optim import make_optimizer
from agd_viz.spec import RunSpec, SpecError, SweepConfig

SMALL = dict(dataset="digits", depth=3, width=32, steps=20, batch_size=64, seed=0, device="cpu")


def ends(spec):
    return {r.opt: r for r in train.run(spec) if isinstance(r, train.End)}


# -------------------------------------------------------------------------------------------------
# Square loss


def test_square_loss_is_the_papers_on_one_hot_targets_scaled_by_root_d():
    out = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, -1.0]], requires_grad=True)
    labels = torch.tensor([2, 0])
    d = 4
    y = torch.zeros(2, d)
    y[0, 2] = y[1, 0] = math.sqrt(d)  # ‖y‖ = √d_L (Prescription 1)
    want = ((out - y).square().sum(dim=1) / (2 * d)).mean()  # Example 1, averaged over the batch
    got = data.loss_fn("classification", "square")(out, labels)
    assert got.item() == pytest.approx(want.item())
    got.backward()
    np.testing.assert_allclose(out.grad.numpy(), ((out - y) / (d * 2)).detach().numpy(), rtol=1e-6)
    assert data.loss_fn("classification") is torch.nn.functional.cross_entropy
    with pytest.raises(ValueError, match="'xent' or 'square'"):
        data.loss_fn("classification", "mse")


def test_loss_is_a_spec_field_default_cross_entropy_refused_when_unknown():
    assert RunSpec(**SMALL).loss == "xent"
    assert RunSpec(**SMALL, loss="square").to_dict()["loss"] == "square"
    with pytest.raises(SpecError, match="loss must be one of xent, square"):
        RunSpec(**SMALL, loss="mse")
    assert SweepConfig(loss="square").specs()[0].loss == "square"


def test_a_square_loss_run_trains_and_its_objective_starts_below_one():
    recs = list(train.run(RunSpec(**{**SMALL, "steps": 60}, loss="square")))
    first = next(r for r in recs if isinstance(r, train.Step) and r.step == 0)
    (end,) = [r for r in recs if isinstance(r, train.End)]
    assert end.status == "finished" and end.summary["final_train_acc"] > 0.5
    # Lemma 6: under Prescription 1 (AGD's init, inputs of norm √d_0, targets of norm √d_L) the
    # square-loss objective is at most 1.
    assert first.train_loss <= 1.0 and end.summary["final_train_loss"] < first.train_loss


# -------------------------------------------------------------------------------------------------
# Augmentation


def test_augmentation_is_on_for_cifar10_off_elsewhere_and_refused_where_undefined():
    assert RunSpec(**{**SMALL, "dataset": "cifar10"}).augment is True
    assert RunSpec(**{**SMALL, "dataset": "cifar10"}, augment=False).augment is False
    assert RunSpec(**SMALL).augment is False
    assert RunSpec(**{**SMALL, "dataset": "cifar10"}).to_dict()["augment"] is True  # visible in the stored spec
    with pytest.raises(SpecError, match="defined for cifar10 only, not 'digits'"):
        RunSpec(**SMALL, augment=True)
    with pytest.raises(SpecError, match="augment must be true or false"):
        RunSpec(**SMALL, augment="yes")
    assert datasets.AUGMENTATIONS["cifar10"] == datasets.Augmentation(pad=4, flip=True)


def test_augment_crops_a_padded_image_flips_it_and_keeps_the_input_scale():
    c, h, w = 2, 5, 6
    x = torch.arange(1.0, 1 + 3 * c * h * w).reshape(3, c * h * w)
    pad = 2
    out = data.augment(x, (c, h, w), pad, True, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    np.testing.assert_allclose(out.norm(dim=1).numpy(), math.sqrt(c * h * w), rtol=1e-5)
    padded = torch.nn.functional.pad(x.reshape(3, c, h, w), (pad,) * 4)
    for b in range(3):  # each row is one crop of its padded image, mirrored or not, rescaled
        img = out[b].reshape(c, h, w)
        found = False
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                crop = padded[b, :, dy:dy + h, dx:dx + w]
                for cand in (crop, crop.flip(-1)):
                    if cand.norm() > 0:
                        cand = cand * math.sqrt(c * h * w) / cand.norm()
                        found |= torch.allclose(cand, img, atol=1e-4)
        assert found
    flips = data.augment(x.repeat(200, 1), (c, h, w), 0, True, torch.Generator().manual_seed(1)).reshape(-1, c, h, w)
    mirrored = flips[:, 0, 0, 0] > flips[:, 0, 0, -1]  # rows of x increase left to right
    assert 240 < int(mirrored.sum()) < 360  # about half of the 600 flipped
    same = data.augment(x, (c, h, w), pad, True, torch.Generator().manual_seed(0))
    assert torch.equal(out, same)  # seeded: the same crops every time


def test_training_augments_batches_once_for_every_optimiser_never_the_evaluation(monkeypatch):
    monkeypatch.setitem(datasets.AUGMENTATIONS, "digits", datasets.Augmentation(pad=1, flip=False))
    seen = []
    real = data.augment

    def spy(x, shape, pad, flip, generator=None):
        seen.append((tuple(x.shape), shape, pad, flip))
        return real(x, shape, pad, flip, generator)

    monkeypatch.setattr(data, "augment", spy)
    spec = RunSpec(**SMALL, optimizers=("agd", "adam"), augment=True)
    both = ends(spec)
    assert len(seen) == spec.steps and seen[0] == ((64, 64), (1, 8, 8), 1, False)
    plain = ends(RunSpec(**SMALL, optimizers=("agd", "adam"), augment=False))
    assert both[0].summary["final_train_loss"] != plain[0].summary["final_train_loss"]


# -------------------------------------------------------------------------------------------------
# Whole test sets


def test_the_test_split_is_evaluated_whole_the_train_split_up_to_eval_max(monkeypatch):
    sizes = []
    real = train._evaluate

    def spy(model, x, y, loss_fn, task, chunk=4096, limit=train.cost.EVAL_MAX):
        sizes.append((x.shape[0], limit))
        return real(model, x, y, loss_fn, task, chunk, limit)

    monkeypatch.setattr(train, "_evaluate", spy)
    # 10,000 points, half of them test: more than EVAL_MAX in neither split, so lower the cap.
    monkeypatch.setattr(train.cost, "EVAL_MAX", 100)
    list(train.run(RunSpec(dataset="moons", depth=2, width=8, steps=2, batch_size=32, device="cpu",
                           data_options={"n_samples": 1000, "test_fraction": 0.5})))
    test_calls = [s for s in sizes if s[1] is None]
    assert test_calls and all(n == 500 for n, _ in test_calls)
    n_test, n_train = 500, 500
    assert {n for n, lim in sizes if lim is not None} == {n_train}
    model = torch.nn.Linear(2, 2)
    x, y = torch.randn(300, 2), torch.randint(0, 2, (300,))
    loss, acc = real(model, x, y, torch.nn.functional.cross_entropy, "classification", 64, None)
    assert acc.item() == pytest.approx((model(x).argmax(1) == y).float().mean().item())
    assert n_test == 500


# -------------------------------------------------------------------------------------------------
# Muon


def test_muon_is_torch_muon_on_matrices_and_refuses_conv_kernels_and_biases_in_one_sentence():
    opt = make_optimizer("muon", [torch.nn.Parameter(torch.randn(4, 3))])
    assert isinstance(opt, torch.optim.Muon) and opt.param_groups[0]["lr"] == 0.02
    assert opt.param_groups[0]["weight_decay"] == 0.1 and opt.param_groups[0]["ns_steps"] == 5
    for shape in ((8, 3, 3, 3), (8,)):
        with pytest.raises(ValueError, match="Muon trains 2-D weight matrices only, not conv kernels or biases"):
            make_optimizer("muon:lr=0.01", [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(*shape))])
    with pytest.raises(SpecError, match="Muon trains 2-D weight matrices only.*use arch 'mlp'"):
        RunSpec(**{**SMALL, "depth": 3}, arch="cnn", optimizers=("agd", "muon"))
    with pytest.raises(SpecError, match="ns_steps must be between 1 and 99"):
        RunSpec(**SMALL, optimizers=("muon:ns_steps=0",))
    with pytest.raises(SpecError, match="momentum must be in"):
        RunSpec(**SMALL, optimizers=("muon:momentum=1.5",))


def test_muon_trains_and_logs_its_rate_and_an_update_of_high_stable_rank():
    spec = RunSpec(dataset="digits", depth=4, width=64, steps=60, batch_size=128, device="cpu",
                   optimizers=("agd", "muon", "adam"), layer_every=5)
    recs = list(train.run(spec))
    done = {r.opt: r for r in recs if isinstance(r, train.End)}
    assert all(e.status == "finished" for e in done.values())
    assert done[1].summary["final_train_acc"] > 0.8
    steps = [r for r in recs if isinstance(r, train.Step) and r.opt == 1 and r.step > 0]
    assert steps[0].lr == pytest.approx(0.02)
    probed = {opt: [r for r in recs if isinstance(r, train.Step) and r.opt == opt and r.layers and r.step > 0]
              for opt in range(3)}
    hidden = slice(1, -1)  # the 64 × 64 layers
    mean = {opt: np.mean([np.mean(r.layers["u_srank"][hidden]) for r in rows]) for opt, rows in probed.items()}
    # AGD's update is the normalised gradient: its stable rank is the gradient's.
    for r in probed[0]:
        np.testing.assert_allclose(r.layers["u_srank"], r.layers["g_srank"], rtol=0.05)
    assert mean[1] > 4 * mean[0]  # Muon's orthogonalised update spreads over many directions


def test_update_stable_rank_is_a_stored_layer_metric():
    assert train.LAYER_METRICS[-1] == "u_srank"
    recs = list(train.run(RunSpec(**SMALL, layer_every=5)))
    first = next(r for r in recs if isinstance(r, train.Step) and r.step == 0)
    assert all(math.isnan(v) for v in first.layers["u_srank"])  # no update at initialisation
    later = next(r for r in recs if isinstance(r, train.Step) and r.step == 5)
    assert all(1 <= v <= 32 for v in later.layers["u_srank"])


def test_agd_and_plain_sgd_updates_have_their_gradients_stable_rank_so_it_is_not_estimated_twice():
    from agd_viz import nets
    from agd_viz.optim import AGD
    from agd_viz.optspec import parse

    torch.manual_seed(0)
    model = nets.MLP(64, 10, depth=4, width=32)
    gen = torch.Generator().manual_seed(1)
    nets.init_agd_model_(model, gen)
    params = list(model.parameters())
    estimated = train._LayerProbe(params, 1, update_is_gradient=False)
    opt = AGD(params)
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    estimated.before_step()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    row = estimated.after_step()
    names = list(train.LAYER_METRICS)
    np.testing.assert_allclose(row[names.index("u_srank")], row[names.index("g_srank")], rtol=2e-2)
    assert train._update_is_gradient(parse("agd"), params) and train._update_is_gradient(parse("sgd"), params)
    assert not train._update_is_gradient(parse("sgd:momentum=0.9"), params)
    assert not train._update_is_gradient(parse("adam"), params) and not train._update_is_gradient(parse("muon"), params)
    conv = [torch.nn.Parameter(torch.randn(8, 3, 3, 3))]
    assert not train._update_is_gradient(parse("agd"), conv)  # normalised per slice: not one multiple
