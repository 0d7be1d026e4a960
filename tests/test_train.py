import math

import pytest

from agd_viz import train
from agd_viz.train import LAYER_METRICS, RunSpec, SpecError

SMALL = dict(dataset="digits", depth=3, width=32, steps=20, batch_size=64, seed=0, device="cpu")


def records(spec, **kw):
    return list(train.run(spec, **kw))


def steps_of(recs, opt=0):
    return [r for r in recs if r["type"] == "step" and r["opt"] == opt]


def end_of(recs, opt=0):
    [end] = [r for r in recs if r["type"] == "end" and r["opt"] == opt]
    return end


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
    assert [r["step"] for r in agd] == list(range(0, 21))
    first = agd[1]
    assert {"loss", "acc", "eta", "G", "t"} <= set(first)
    assert first["eta"] > 0 and first["G"] > 0
    assert "lr" in adam[1] and adam[1]["lr"] == pytest.approx(1e-3)
    assert set(first["layers"]) == set(LAYER_METRICS)
    assert all(len(v) == 3 for v in first["layers"].values())
    evals = [r["step"] for r in agd if "train_acc" in r]
    assert evals == [0, 5, 10, 15, 20]
    assert end_of(recs, 0)["status"] == "finished"
    assert end_of(recs, 0)["summary"]["final_train_acc"] == agd[-1]["train_acc"]


def test_agd_holds_scaled_spectral_norm_near_one_at_init():
    recs = records(RunSpec(**{**SMALL, "steps": 1}))
    init = steps_of(recs)[0]["layers"]
    assert init["w_spec_scaled"] == pytest.approx([1.0] * 3, rel=1e-3)
    # orthogonal init: every singular value equal, so stable rank = min(d_out, d_in)
    assert init["w_srank"] == pytest.approx([32, 32, 10], rel=1e-3)


def test_same_seed_is_deterministic_and_optimisers_see_the_same_batches():
    spec = RunSpec(**SMALL, optimizers=("agd", "agd"))
    a, b = records(spec), records(spec)
    la = [r["loss"] for r in steps_of(a, 0)[1:]]
    assert la == [r["loss"] for r in steps_of(b, 0)[1:]]
    # two identical optimisers side by side: identical trajectories means identical batches and init
    assert la == [r["loss"] for r in steps_of(a, 1)[1:]]
    other_seed = [r["loss"] for r in steps_of(records(spec.replace(seed=1)), 0)[1:]]
    assert other_seed != la


def test_same_init_gives_baselines_agd_weights():
    spec = RunSpec(**{**SMALL, "steps": 1}, optimizers=("agd", "adam"), same_init=True)
    recs = records(spec)
    assert steps_of(recs, 0)[0]["train_loss"] == steps_of(recs, 1)[0]["train_loss"]
    default = records(spec.replace(same_init=False))
    assert steps_of(default, 0)[0]["train_loss"] != steps_of(default, 1)[0]["train_loss"]


def test_divergence_ends_one_optimiser_and_the_others_finish():
    spec = RunSpec(**{**SMALL, "depth": 6}, optimizers=("agd", "sgd:lr=1e12"))
    recs = records(spec)
    assert end_of(recs, 0)["status"] == "finished"
    bad = end_of(recs, 1)
    assert bad["status"] == "diverged"
    assert "non-finite" in bad["error"]
    assert bad["step"] < 20
    last = steps_of(recs, 1)[-1]
    assert last["step"] == bad["step"]
    assert not (math.isfinite(last["loss"]) and math.isfinite(last.get("train_loss", 0.0)))


def test_stop_callback_cancels_only_the_named_optimiser():
    spec = RunSpec(**{**SMALL, "steps": 400}, optimizers=("agd", "adam"), metrics="none")
    recs = records(spec, stop=lambda i: i == 1)
    assert end_of(recs, 1)["status"] == "cancelled"
    assert end_of(recs, 1)["step"] < 400
    assert end_of(recs, 0)["status"] == "finished"
    assert steps_of(recs, 0)[-1]["step"] == 400


def test_metrics_none_skips_layer_metrics_but_keeps_losses():
    recs = records(RunSpec(**SMALL, metrics="none"))
    assert not any("layers" in r for r in steps_of(recs))
    assert all(math.isfinite(r["loss"]) for r in steps_of(recs)[1:])


def test_agd_trains_depth_32_on_digits_without_tuning():
    """The paper's headline on the bundled data: depth 32, width 128, no learning rate."""
    spec = RunSpec(dataset="digits", depth=32, width=128, steps=300, batch_size=128, seed=0,
                   device="cpu", optimizers=("agd",), metrics="none")
    end = end_of(records(spec))
    assert end["status"] == "finished"
    assert end["summary"]["final_train_acc"] >= 0.97


def test_regression_dataset_uses_square_loss():
    recs = records(RunSpec(**{**SMALL, "dataset": "teacher"}))
    rows = steps_of(recs)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert math.isnan(rows[1]["acc"])
