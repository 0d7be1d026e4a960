"""The optimiser vocabulary (agd_viz.optspec): one grammar for spec strings and legend labels, and
every optimiser it names can be built by agd_viz.optim with exactly the options it declares."""

import inspect
import subprocess
import sys

import pytest

from agd_viz import optspec


@pytest.mark.parametrize("text", ["adam:lr=1e-3,beta2=0.99", "adam lr=0.001 beta2=0.99",
                                  " adam : lr = 1e-3 ; beta2=0.99 ", "ADAM:beta2=0.99"])
def test_a_spec_string_its_canonical_form_and_its_label_are_one_optimiser(text):
    parsed = optspec.parse(text)
    assert parsed == optspec.parse("adam:beta2=0.99")
    assert parsed.spec == "adam:beta2=0.99"
    assert parsed.label == "adam lr=0.001 beta2=0.99"
    assert optspec.parse(parsed.label) == parsed and optspec.parse(parsed.spec) == parsed


def test_comparable_keys_ignore_spelling_and_defaults():
    assert optspec.key_of("adam") == optspec.key_of("adam:lr=0.001") == optspec.key_of("adam lr=1e-3")
    assert optspec.key_of("adam:lr=1e-4") != optspec.key_of("adam")
    assert optspec.key_of("not an optimiser") == ("not an optimiser", ())


def test_bad_values_are_refused_before_anything_runs():
    for text, words in (("adam:lr=1e308", "lr must be > 0 and at most 10"),
                        ("sgd:nesterov=true", "nesterov=true needs momentum > 0"),
                        ("agd:gain=5000", "gain must be > 0 and at most 1000"),
                        ("adam:lr=nan", "lr must be finite")):
        with pytest.raises(ValueError, match=words):
            optspec.parse(text)
    assert optspec.parse("sgd:nesterov=true,momentum=0.9").kwargs["nesterov"] is True


def test_state_size_per_optimiser_in_units_of_the_model():
    assert [optspec.state_buffers(s) for s in ("agd", "sgd", "sgd:momentum=0.9", "adam", "adamw")] == [0, 0, 1, 2, 2]


def test_every_optimiser_of_the_vocabulary_has_a_factory_taking_exactly_its_options():
    from agd_viz.optim import FACTORIES

    assert set(FACTORIES) == set(optspec.OPTIMIZERS)
    for name, info in optspec.OPTIMIZERS.items():
        params = list(inspect.signature(FACTORIES[name]).parameters)
        assert params[0] == "params" and set(params[1:]) == set(info.defaults), name


def test_the_vocabulary_needs_no_torch():
    code = ("import sys; from agd_viz import optspec; optspec.parse('adam:lr=1e-3').label;"
            "optspec.available('prodigy'); assert 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_nadam_from_torch_is_one_vocabulary_entry_and_one_factory():
    """Adding an optimiser touches optspec (its entry) and optim (its factory): then it parses,
    labels, costs and trains like any other."""
    import torch

    from agd_viz import cost, train
    from agd_viz.spec import RunSpec

    parsed = optspec.parse("nadam:lr=1e-3")
    assert parsed.label == "nadam lr=0.001" and parsed.state_buffers == 2
    assert cost.estimate_memory_bytes({"optimizers": ["nadam"]}) == cost.estimate_memory_bytes({"optimizers": ["adam"]})
    spec = RunSpec(depth=3, width=16, steps=20, batch_size=64, optimizers=("nadam:lr=1e-2",), metrics="none",
                   device="cpu")
    ends = [r for r in train.run(spec) if isinstance(r, train.End)]
    assert ends[0].status == "finished" and ends[0].summary["final_train_acc"] > 0.5
    from agd_viz.optim import make_optimizer

    assert isinstance(make_optimizer("nadam", [torch.nn.Parameter(torch.zeros(2, 2))]), torch.optim.NAdam)
