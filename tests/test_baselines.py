"""Learning-rate-free baselines (Prodigy, D-Adapt Adam, schedule-free AdamW) from their packages.

What a user sees: the `lr` curve of each baseline is the step size the package applies at that step
(d * lr for the D-adaptation family, the warmed-up lr for schedule-free), evaluation of schedule-free
AdamW happens at its averaged iterate, and a missing package is named with its install command.
"""

import math
import sys

import pytest
import torch
from torch import nn

from agd_viz import data, optim, train
from agd_viz.optim import make_optimizer, step_size, step_size_tensor
from agd_viz.optspec import available as optimizer_available
from agd_viz.optspec import parse as parse_optimizer
from agd_viz.spec import RunSpec, SpecError

pytest.importorskip("prodigyopt")
pytest.importorskip("dadaptation")
pytest.importorskip("schedulefree")

STEPS = 8
# Full batch (batch_size > n_train): every step sees the whole training set, so a hand-written loop
# over the same data reproduces the run up to float summation order.
BASE = dict(dataset="moons", depth=3, width=16, steps=STEPS, batch_size=1000, metrics="none",
            data_options={"n_samples": 120})


def logged(spec, key="lr"):
    recs = list(train.run(spec))
    ends = [r for r in recs if isinstance(r, train.End)]
    assert [e.status for e in ends] == ["finished"] * len(spec.optimizers), ends
    steps = [r for r in recs if isinstance(r, train.Step) and r.opt == 0 and r.step > 0]
    return [getattr(r, key) for r in steps], recs


def replay(spec, before_step=None, after_step=None):
    """Train the spec's first optimiser by hand on the same data and initial weights."""
    ds = train.load_dataset(spec)
    model = train.build_models(spec, ds, torch.device("cpu"))[0]
    opt = make_optimizer(spec.optimizers[0], model.parameters())
    optim.train_mode(opt)
    loss_fn = data.loss_fn(ds.task)
    for _ in range(spec.steps):
        if before_step:
            before_step(opt)
        opt.zero_grad()
        loss_fn(model(ds.x_train), ds.y_train).backward()
        opt.step()
        if after_step:
            after_step(opt)
    return ds, model, opt


@pytest.mark.parametrize("text", ["prodigy", "dadapt-adam", "prodigy:use_bias_correction=true"])
def test_d_adapted_baselines_log_d_times_lr_of_each_step(text):
    spec = RunSpec(**BASE, optimizers=(text,))
    lrs, _ = logged(spec)

    expected = []

    def record(opt):  # the step size this step applies: d * lr (x Adam's bias correction if on)
        g = opt.param_groups[0]
        bc = 1.0
        if g["use_bias_correction"]:
            b1, b2 = g["betas"]
            bc = math.sqrt(1 - b2 ** (g["k"] + 1)) / (1 - b1 ** (g["k"] + 1))
        expected.append(g["d"] * g["lr"] * bc)

    replay(spec, before_step=record)
    assert lrs == pytest.approx(expected, rel=1e-3)
    # d starts at d0 = 1e-6 and the packages grow it as the weights move: the curve must show it.
    if "bias" in text:
        assert lrs[-1] > 2 * lrs[0]
    else:
        assert lrs[0] == pytest.approx(1e-6, rel=1e-6)
        assert lrs[-1] > 10 * lrs[0]


def test_schedule_free_logs_warmed_up_lr_and_evaluates_the_averaged_iterate():
    spec = RunSpec(**{**BASE, "metrics": "full"}, optimizers=("schedulefree-adamw:lr=0.05,warmup_steps=4",),
                   eval_every=1)
    # eval_every=1: evaluation switches to eval mode before every step; step() raises in eval mode,
    # so finishing the run shows training resumed in train mode each time.
    lrs, recs = logged(spec)
    assert lrs == pytest.approx([0.0125, 0.025, 0.0375, 0.05, 0.05, 0.05, 0.05, 0.05], rel=1e-6)

    scheduled = []
    ds, model, opt = replay(spec, after_step=lambda o: scheduled.append(o.param_groups[0]["scheduled_lr"]))
    assert lrs == pytest.approx(scheduled, rel=1e-6)

    loss_fn = data.loss_fn(ds.task)
    with torch.no_grad():
        loss_y = loss_fn(model(ds.x_test), ds.y_test).item()  # train mode: params hold y
        with optim.eval_mode(opt):
            assert opt.param_groups[0]["train_mode"] is False
            loss_x = loss_fn(model(ds.x_test), ds.y_test).item()
        assert opt.param_groups[0]["train_mode"] is True
    final = [r for r in recs if isinstance(r, train.Step) and r.step == STEPS][0]
    assert abs(loss_x - loss_y) > 1e-3  # the two points differ enough to tell apart
    assert final.test_loss == pytest.approx(loss_x, rel=1e-4, abs=1e-5)


def test_eval_mode_restores_training_weights_and_ignores_other_optimisers():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3))
    sf = make_optimizer("schedulefree-adamw:lr=0.1", [w])
    optim.train_mode(sf)
    for _ in range(3):
        sf.zero_grad()
        (w ** 2).sum().backward()
        sf.step()
    y = w.detach().clone()
    with optim.eval_mode(sf):
        x = w.detach().clone()
    assert not torch.allclose(x, y)
    torch.testing.assert_close(w.detach(), y)

    adam = make_optimizer("adam", [w])
    with optim.eval_mode(adam):
        torch.testing.assert_close(w.detach(), y)


def test_step_size_of_plain_optimisers_is_their_lr_without_a_new_tensor_per_step():
    p = nn.Parameter(torch.zeros(2, 2))
    adam = make_optimizer("adam:lr=3e-4", [p])
    assert step_size(adam) == 3e-4
    a, b = step_size_tensor(adam), step_size_tensor(adam)
    assert a is b and a.dtype == torch.float32 and a.dim() == 0
    assert math.isnan(step_size(make_optimizer("agd", [p])))


def test_missing_package_is_reported_with_its_install_command(monkeypatch):
    assert optimizer_available("prodigy") == (True, None)
    assert optimizer_available("adam") == (True, None)
    # A None entry in sys.modules is how Python marks a module as not importable.
    monkeypatch.setitem(sys.modules, "prodigyopt", None)
    assert optimizer_available("prodigy") == (False, "pip install prodigyopt")
    assert optimizer_available("prodigy:lr=0.5") == (False, "pip install prodigyopt")
    with pytest.raises(ValueError, match="pip install prodigyopt"):
        parse_optimizer("prodigy")
    with pytest.raises(SpecError, match="pip install prodigyopt"):
        RunSpec(optimizers=("agd", "prodigy"))
    with pytest.raises(ValueError, match="unknown optimiser 'nope'"):
        optimizer_available("nope")


def test_options_parse_with_their_types_and_reach_the_package():
    spec = parse_optimizer("prodigy:d_coef=0.5,safeguard_warmup=true")
    assert spec.label == "prodigy lr=1 safeguard_warmup=true d_coef=0.5"
    assert parse_optimizer(spec.spec) == spec
    p = nn.Parameter(torch.zeros(2, 2))
    opt = make_optimizer(spec, [p])
    assert opt.param_groups[0]["d_coef"] == 0.5 and opt.param_groups[0]["safeguard_warmup"] is True
    sf = make_optimizer("schedulefree-adamw:warmup_steps=100,beta1=0.95", [p])
    assert sf.param_groups[0]["warmup_steps"] == 100 and sf.param_groups[0]["betas"] == (0.95, 0.999)
    with pytest.raises(ValueError, match="warmup_steps must be an integer"):
        parse_optimizer("schedulefree-adamw:warmup_steps=1.5")
    with pytest.raises(ValueError, match="d0 must be > 0"):
        parse_optimizer("dadapt-adam:d0=0")


def test_package_messages_do_not_reach_stdout(capsys):
    # Prodigy prints "Using decoupled weight decay"; on stdout it would break `train --json`.
    p = nn.Parameter(torch.zeros(2, 2))
    make_optimizer("prodigy:weight_decay=0.01", [p])
    make_optimizer("dadapt-adam:decouple=true", [p])
    assert capsys.readouterr().out == ""


def test_paper_presets_are_valid_runs_and_sweeps_with_their_expected_numbers():
    from agd_viz import paper
    from agd_viz.spec import SweepConfig

    for name, preset in paper.PRESETS.items():
        if preset.kind == "run":
            spec = paper.run_spec(name)
            assert spec.dataset in data.DATASETS
        else:
            config = SweepConfig(depths=preset.depths, widths=preset.widths, **preset.spec)
            # A GPU preset is sized for a GPU's memory budget (a CPU server's default refuses it).
            assert config.check(device="cuda" if preset.gpu else "cpu") == []
            assert len(config.specs()) == len(preset.depths) * len(preset.widths)
        for key in preset.expected + preset.context:
            assert key in paper.PAPER_RESULTS
    fcn16 = paper.run_spec("paper-fcn16-cifar10")
    assert (fcn16.dataset, fcn16.depth, fcn16.width, fcn16.batch_size) == ("cifar10", 16, 512, 128)
    assert paper.PRESETS["paper-depth-sweep-cifar10"].depths == (2, 4, 8, 16, 32)
    # 53.5 % is Adam's best over the paper's grid, whose winning rate the paper does not give: the
    # measured side is the best of our Adam runs, never one rate's.
    rows = paper.compare("paper-fcn16-cifar10", {"agd": 0.51, "adam:lr=1e-4": 0.5, "adam:lr=1e-3": 0.52})
    assert [(r["paper_value"], r["measured"]) for r in rows] == [(0.527, 0.51), (0.535, 0.52)]
    assert rows[0]["figure"] == "Figure 4" and "52.7" in rows[0]["paper"]
    assert "1e-4" not in rows[1]["paper"] + rows[1]["optimizer"]
    assert [r.value for r in paper.expected("paper-grid-cifar10")] == [0.637, 0.4255]
    assert paper.PAPER_RESULTS["resnet50_imagenet"].value == 0.655
