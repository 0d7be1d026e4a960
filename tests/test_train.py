import dataclasses
import math

import numpy as np
import pytest

from agd_viz import store, train
from agd_viz.spec import RunSpec, SpecError
from agd_viz.train import LAYER_METRICS

SMALL = dict(dataset="digits", depth=3, width=32, steps=20, batch_size=64, seed=0, device="cpu")
MOONS = dict(dataset="moons", depth=3, width=32, steps=60, batch_size=64, seed=0, device="cpu")


def records(spec, **kw):
    return list(train.run(spec, **kw))


def steps_of(recs, opt=0):
    return [r for r in recs if isinstance(r, train.Step) and r.opt == opt]


def end_of(recs, opt=0):
    [end] = [r for r in recs if isinstance(r, train.End) and r.opt == opt]
    return end


def pictures_of(recs, opt=0):
    return [r for r in recs if isinstance(r, train.Boundary) and r.opt == opt]


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(depth=0), "depth must be between 1"),
        (dict(width=-1), "width must be between 1"),
        (dict(width=10**9), "width must be between 1"),
        (dict(steps=0), "steps must be between 1"),
        (dict(batch_size=2.5), "batch_size must be a whole number"),
        (dict(dataset="imagenet"), "unknown dataset 'imagenet'"),
        (dict(optimizers=("adamm",)), "adamm"),
        (dict(optimizers=()), "at least one optimiser"),
        (dict(device="tpu"), "device must be one of"),
        (dict(metrics="some"), "metrics must be"),
    ],
)
def test_bad_specs_are_refused_with_a_sentence(changes, words):
    with pytest.raises(SpecError) as info:
        RunSpec(**{**SMALL, **changes})
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_spec_round_trips_through_a_dict():
    spec = RunSpec(**SMALL, optimizers=["agd", "adam:lr=1e-3"], data_options={"test_fraction": 0.25})
    assert isinstance(spec.optimizers, tuple)
    again = RunSpec.from_dict(spec.to_dict())
    assert again == spec
    with pytest.raises(SpecError, match="unknown spec field"):
        RunSpec.from_dict({**spec.to_dict(), "learning_rate": 1})


def test_records_carry_the_design_metric_names():
    spec = RunSpec(**SMALL, optimizers=("agd", "adam:lr=1e-3"), eval_every=5, layer_every=1)
    recs = records(spec)
    agd, adam = steps_of(recs, 0), steps_of(recs, 1)
    assert [r.step for r in agd] == list(range(0, 21))
    first = agd[1]
    assert first.eta > 0 and first.G > 0 and first.t >= 0 and math.isfinite(first.loss)
    assert math.isnan(first.lr)  # AGD has no learning rate
    assert adam[1].lr == pytest.approx(1e-3) and math.isnan(adam[1].eta)
    assert list(first.layers) == list(LAYER_METRICS) == list(store.LAYER_METRICS)
    assert all(len(v) == 3 for v in first.layers.values())
    evals = [r.step for r in agd if not math.isnan(r.train_acc)]
    assert evals == [0, 5, 10, 15, 20]
    assert end_of(recs, 0).status == "finished"
    assert end_of(recs, 0).summary["final_train_acc"] == agd[-1].train_acc


def test_records_are_typed_with_named_fields():
    recs = records(RunSpec(**{**SMALL, "steps": 3}))
    kinds = {type(r) for r in recs}
    assert kinds == {train.Step, train.Sync, train.End}  # digits: no decision boundary
    step = steps_of(recs)[1]
    assert [f.name for f in dataclasses.fields(step)] == [
        "opt", "step", "t", "loss", "acc", "eta", "G", "lr", "train_loss", "train_acc", "test_loss",
        "test_acc", "layers"]
    with pytest.raises(TypeError):
        step["loss"]  # a record, not a dict
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.loss = 0.0
    end = end_of(recs)
    assert (end.opt, end.status, end.step, end.error) == (0, "finished", 3, None)
    assert isinstance(recs[-1], train.End) and isinstance(recs[-2], train.Sync)


def test_agd_holds_scaled_spectral_norm_near_one_at_init():
    recs = records(RunSpec(**{**SMALL, "steps": 1}))
    init = steps_of(recs)[0].layers
    assert init["w_spec_scaled"] == pytest.approx([1.0] * 3, rel=1e-3)
    # orthogonal init: every singular value equal, so stable rank = min(d_out, d_in)
    assert init["w_srank"] == pytest.approx([32, 32, 10], rel=1e-3)


def test_same_seed_is_deterministic_and_optimisers_see_the_same_batches():
    spec = RunSpec(**SMALL, optimizers=("agd", "agd"))
    a, b = records(spec), records(spec)
    la = [r.loss for r in steps_of(a, 0)[1:]]
    assert la == [r.loss for r in steps_of(b, 0)[1:]]
    # two identical optimisers side by side: identical trajectories means identical batches and init
    assert la == [r.loss for r in steps_of(a, 1)[1:]]
    other_seed = [r.loss for r in steps_of(records(spec.replace(seed=1)), 0)[1:]]
    assert other_seed != la


def test_same_init_gives_baselines_agd_weights():
    spec = RunSpec(**{**SMALL, "steps": 1}, optimizers=("agd", "adam"), same_init=True)
    recs = records(spec)
    assert steps_of(recs, 0)[0].train_loss == steps_of(recs, 1)[0].train_loss
    default = records(spec.replace(same_init=False))
    assert steps_of(default, 0)[0].train_loss != steps_of(default, 1)[0].train_loss


def test_divergence_ends_one_optimiser_and_the_others_finish():
    spec = RunSpec(**{**SMALL, "depth": 6}, optimizers=("agd", "sgd:lr=10"))  # lr 10: the most a spec may ask
    recs = records(spec)
    assert end_of(recs, 0).status == "finished"
    bad = end_of(recs, 1)
    assert bad.status == "diverged"
    assert "non-finite" in bad.error
    assert bad.step < 20
    last = steps_of(recs, 1)[-1]
    assert last.step == bad.step
    assert not (math.isfinite(last.loss) and (math.isnan(last.train_loss) or math.isfinite(last.train_loss)))


def test_stop_callback_cancels_only_the_named_optimiser():
    spec = RunSpec(**{**SMALL, "steps": 400}, optimizers=("agd", "adam"), metrics="none")
    recs = records(spec, stop=lambda i: i == 1)
    assert end_of(recs, 1).status == "cancelled"
    assert end_of(recs, 1).step < 400
    assert end_of(recs, 0).status == "finished"
    assert steps_of(recs, 0)[-1].step == 400


def test_metrics_none_skips_layer_metrics_but_keeps_losses():
    recs = records(RunSpec(**SMALL, metrics="none"))
    assert all(r.layers is None for r in steps_of(recs))
    assert all(math.isfinite(r.loss) for r in steps_of(recs)[1:])


def test_agd_trains_depth_32_on_digits_without_tuning():
    """The paper's headline on the bundled data: depth 32, width 128, no learning rate."""
    spec = RunSpec(dataset="digits", depth=32, width=128, steps=300, batch_size=128, seed=0,
                   device="cpu", optimizers=("agd",), metrics="none")
    end = end_of(records(spec))
    assert end.status == "finished"
    assert end.summary["final_train_acc"] >= 0.97


def test_regression_dataset_uses_square_loss():
    recs = records(RunSpec(**{**SMALL, "dataset": "teacher"}))
    rows = steps_of(recs)
    assert rows[-1].train_loss < rows[0].train_loss
    assert math.isnan(rows[1].acc)


# -- decision boundaries ---------------------------------------------------------------------------


def test_a_2d_run_draws_its_decision_boundary_from_start_to_finish():
    spec = RunSpec(**MOONS, optimizers=("agd", "adam:lr=1e-2"))
    recs = records(spec)
    for opt in (0, 1):
        pics = pictures_of(recs, opt)
        steps = [p.step for p in pics]
        assert steps[0] == 0 and steps[-1] == spec.steps and steps == sorted(set(steps))
        grid = pics[0].grid
        ny, nx = len(grid.y), len(grid.x)
        assert max(nx, ny) == train.BOUNDARY_POINTS
        assert np.allclose(np.diff(grid.x), np.diff(grid.y)[0])  # square cells: the chart's one scale
        for p in pics:
            assert p.probs.dtype == np.uint8 and p.probs.shape == (ny, nx, 2)
            assert np.abs(p.probs.astype(int).sum(-1) - 255).max() <= 1  # probabilities × 255
    points = pics[0].grid.points
    assert points.shape == (800, 2) and pics[0].grid.labels.shape == (800,)
    assert (grid.x.min() < points[:, 0].min() and grid.x.max() > points[:, 0].max()
            and grid.y.min() < points[:, 1].min() and grid.y.max() > points[:, 1].max())


def test_the_last_picture_shows_what_the_trained_model_predicts():
    """Where the training points are, the final picture's class agrees with the labels about as
    often as the final train accuracy says the model does."""
    spec = RunSpec(**{**MOONS, "steps": 300}, optimizers=("agd",))
    recs = records(spec)
    final = pictures_of(recs)[-1]
    g = final.grid
    ix = np.abs(g.points[:, :1] - g.x[None, :]).argmin(axis=1)
    iy = np.abs(g.points[:, 1:] - g.y[None, :]).argmin(axis=1)
    agree = (final.probs[iy, ix].argmax(-1) == g.labels).mean()
    acc = end_of(recs).summary["final_train_acc"]
    assert acc > 0.9 and abs(agree - acc) < 0.05


def test_no_pictures_for_digits_nor_for_a_2d_model_over_a_million_weights():
    assert not pictures_of(records(RunSpec(**{**SMALL, "steps": 2})))
    big = RunSpec(**{**MOONS, "depth": 3, "width": 1024, "steps": 2})  # 3·1024 + 1024² + 1024·2 weights
    assert not pictures_of(records(big))


def test_metrics_none_draws_only_the_first_and_the_last_picture():
    recs = records(RunSpec(**MOONS, metrics="none"))
    assert [p.step for p in pictures_of(recs)] == [0, MOONS["steps"]]


def test_a_schedule_free_run_draws_its_averaged_iterate():
    """Schedule-free AdamW evaluates x (the average), not y (where gradients are taken): the final
    picture must agree with the final (x-based) train accuracy, as for any optimiser."""
    pytest.importorskip("schedulefree")
    spec = RunSpec(**{**MOONS, "steps": 200}, optimizers=("schedulefree-adamw:lr=0.01",))
    recs = records(spec)
    final = pictures_of(recs)[-1]
    g = final.grid
    ix = np.abs(g.points[:, :1] - g.x[None, :]).argmin(axis=1)
    iy = np.abs(g.points[:, 1:] - g.y[None, :]).argmin(axis=1)
    agree = (final.probs[iy, ix].argmax(-1) == g.labels).mean()
    assert abs(agree - end_of(recs).summary["final_train_acc"]) < 0.05
