"""Spec-level validation shared by the CLI, the job manager and the pages: ranges, the data set
table the estimates use, parameter and memory estimates, the memory budget and the server's
limits, each refusal one sentence (issue 8)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agd_viz import cost, data, datasets, nets, spec
from agd_viz.jobs import JobManager, QueueFull
from agd_viz.spec import RunSpec, SpecError

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = ("digits", "spirals", "moons", "circles", "xor", "teacher")


def cli(*args, env=None, cwd=None):
    full = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "agd_viz", *args], capture_output=True, text=True,
                          env=full, cwd=cwd or ROOT, timeout=120)


def sentence(text: str) -> bool:
    return bool(text) and "\n" not in text.strip() and "Traceback" not in text


# -- one spec, one place -----------------------------------------------------------------------


def test_the_spec_and_its_cost_need_no_torch():
    code = ("import sys\nfrom agd_viz import cost, spec\n"
            "print(cost.estimate_memory_bytes({'depth': 8, 'width': 128, 'optimizers': ['agd', 'adam']}) > 0,\n"
            "      spec.check_fields({'depth': 0}), 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True {'depth': 'depth must be between 1 and 256, got 0.'} False"


def test_the_catalogues_shapes_match_the_loaded_data():
    """The built-in datasets load with exactly the shapes the catalogue states (with default
    options and with options that change them)."""
    cases = [(n, {}) for n in BUILT_IN] + [
        ("teacher", {"d_in": 5, "d_out": 3, "n_samples": 500}), ("spirals", {"classes": 3}),
        ("moons", {"n_samples": 333, "test_fraction": 0.3}), ("digits", {"test_fraction": 0.5})]
    for name, options in cases:
        ds = data.load(name, **options)
        shape = datasets.shape(name, options)
        assert (shape.d_in, shape.d_out, shape.n_train, shape.n_test, shape.input_shape) == \
            (ds.d_in, ds.d_out, ds.n_train, ds.n_test, ds.input_shape), (name, options)
    for name, info in datasets.DATASETS.items():  # the downloadable ones: from their catalogue entries
        shape = datasets.shape(name)
        assert shape.input_shape == info.input_shape
        if info.input_shape is not None:
            assert shape.d_in == info.input_shape[0] * info.input_shape[1] * info.input_shape[2]
        if "train_samples" in info.options:
            assert shape.n_train == info.options["train_samples"]
            assert datasets.shape(name, {"train_samples": 100}).n_train == 100


@pytest.mark.parametrize("fields", [
    dict(dataset="digits", depth=1, width=7), dict(dataset="digits", depth=8, width=128),
    dict(dataset="teacher", depth=5, width=33, data_options={"d_in": 9, "d_out": 2}),
    dict(dataset="spirals", depth=3, width=16, data_options={"classes": 4}),
    dict(dataset="digits", arch="cnn", depth=2, width=8), dict(dataset="digits", arch="cnn", depth=7, width=16),
])
def test_parameter_estimate_equals_the_real_models_count(fields):
    s = RunSpec(**fields)
    shape = datasets.shape(s.dataset, s.data_options)
    model = nets.build_model(s.arch, shape.d_in, shape.d_out, s.depth, s.width, input_shape=shape.input_shape)
    assert cost.estimate_params(s) == sum(p.numel() for p in model.parameters())


def test_memory_grows_with_the_network_the_batch_and_the_optimisers():
    base = dict(dataset="digits", depth=8, width=256, batch_size=128, optimizers=("agd",))
    m = cost.estimate_memory_bytes
    params = cost.estimate_params(base)
    assert m(base) >= 4 * 3 * params  # weights, gradients, the update's copy
    assert m({**base, "optimizers": ("adam",)}) - m(base) == 4 * 2 * params  # Adam's two moments
    assert m({**base, "optimizers": ("sgd:lr=0.1,momentum=0.9",)}) - m(base) == 4 * params
    assert m({**base, "optimizers": ("agd", "agd")}) > 1.9 * m(base)  # side by side: one model each
    assert m({**base, "width": 512}) > 2.5 * m(base)  # weights grow as width²
    assert m({**base, "batch_size": 4096}) > m(base)
    assert m({**base, "dataset": "mnist"}) - m(base) > 60000 * 784 * 4  # the data set on the device


def test_over_the_budget_is_refused_with_the_budget_and_the_ask(monkeypatch):
    monkeypatch.delenv("AGD_VIZ_MAX_MEMORY_MB", raising=False)
    big = RunSpec(depth=32, width=1024, optimizers=("agd",) + tuple(f"adam:lr={r}" for r in
                                                                    (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)))
    text = spec.memory_problem(big, "cpu")
    assert text.startswith("This network needs about ") and " GB (31.5 M parameters × 8 optimisers); " in text
    assert "the budget on this server is 2.0 GB." in text and sentence(text)
    with pytest.raises(SpecError, match="budget on this server is 2.0 GB"):
        spec.admit(big, "cpu")
    assert spec.memory_problem(big, "cuda") is None  # a GPU's default budget is larger
    assert spec.memory_problem(big.with_optimizer("agd"), "cpu") is None
    monkeypatch.setenv("AGD_VIZ_MAX_MEMORY_MB", "100")
    assert "budget on this server is 100 MB" in spec.memory_problem(big.with_optimizer("agd"), "cuda")
    monkeypatch.setenv("AGD_VIZ_MAX_MEMORY_MB", "lots")
    with pytest.raises(ValueError, match="AGD_VIZ_MAX_MEMORY_MB must be a whole number"):
        spec.admit(big)


def test_max_steps_from_the_environment(monkeypatch):
    assert spec.max_steps() == 1_000_000
    monkeypatch.setenv("AGD_VIZ_MAX_STEPS", "500")
    assert spec.steps_problem(500) is None
    assert spec.steps_problem(501) == ("This server allows at most 500 steps per run (AGD_VIZ_MAX_STEPS); "
                                       "you asked for 501.")
    monkeypatch.setenv("AGD_VIZ_MAX_STEPS", "5000000")  # never past the spec's own range
    assert spec.max_steps() == 1_000_000


def test_refusals_agree_between_the_spec_the_page_and_the_sweep():
    from agd_viz.views import live_form as live

    assert spec.check_fields({"width": 10**9})["width"] == "width must be between 1 and 16,384, got 1,000,000,000."
    with pytest.raises(SpecError, match=r"^width must be between 1 and 16,384, got 1,000,000,000\.$"):
        RunSpec(width=10**9)
    notes = live.check(dict(live.DEFAULTS, depth=100))  # the page's narrower range, same words
    assert [n.text for n in notes["depth"]] == ["Depth (weight matrices) must be between 1 and 64, got 100."]
    # within the page's ranges, but 8 runs of a 12.7 M-parameter network: over a 2 GB budget
    big = dict(live.DEFAULTS, depth=5, width=2048, optimizers=("agd", "adam", "adamw"),
               adam_lr="1e-4, 1e-3, 1e-2, 1e-1", adamw_lr="1e-4, 1e-3, 1e-2")
    page = [n.text for n in live.check(big)["width"] if n.level == "error"]
    assert page == [spec.memory_problem(live.spec_fields(big), "cpu")]
    assert "(12.7 M parameters × 8 optimisers)" in page[0]
    config = spec.SweepConfig(depths="5", widths="2048", optimizers=live.spec_fields(big)["optimizers"],
                               metrics="full")
    assert config.check(device="cpu") == page


# -- the command line -------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_refuses_an_oversized_network_before_writing_anything(tmp_path):
    db = tmp_path / "runs.db"
    p = cli("train", "--depth", "64", "--width", "16384", "--device", "cpu", "--db", str(db))
    assert p.returncode == 2
    assert sentence(p.stderr) and "This network needs about" in p.stderr and "budget on this server is 2.0 GB" in p.stderr
    assert not db.exists()
    p = cli("train", "--width", "1000000000", "--db", str(db))
    assert p.returncode == 2 and sentence(p.stderr) and "width must be between 1 and 16,384" in p.stderr
    p = cli("train", "--steps", "600", "--db", str(db), env={"AGD_VIZ_MAX_STEPS": "500"})
    assert p.returncode == 2 and sentence(p.stderr) and "at most 500 steps per run" in p.stderr
    p = cli("sweep", "--depths", "2,8", "--widths", "16,4096", "--optimizer", "agd", "--optimizer", "adam",
            "--device", "cpu", "--db", str(db))
    assert p.returncode == 2 and sentence(p.stderr) and "budget on this server" in p.stderr
    assert not db.exists()
    # the budget moves with the environment: the same small run is refused under 1 MB, then trains
    small = ("train", "--depth", "2", "--width", "16", "--steps", "3", "--device", "cpu", "--quiet", "--json")
    p = cli(*small, "--db", str(db), env={"AGD_VIZ_MAX_MEMORY_MB": "1"})
    assert p.returncode == 2 and "the budget on this server is 1 MB" in p.stderr and not db.exists()
    p = cli(*small, "--db", str(db))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[0]["status"] == "finished"


# -- the job manager ----------------------------------------------------------------------------


def tiny(**kw):
    return RunSpec(**{**dict(dataset="digits", depth=2, width=16, batch_size=32, steps=10, device="cpu"), **kw})


@pytest.mark.slow
def test_the_manager_refuses_over_budget_and_full_queues_before_writing(tmp_path, monkeypatch):
    sleeper = tmp_path / "python-stub"
    sleeper.write_text("#!/bin/sh\nexec sleep 60\n")
    sleeper.chmod(0o755)
    m = JobManager(tmp_path / "runs.db", max_workers=1, python=str(sleeper), start=False,
                   max_queued=4, max_queued_per_session=3)
    try:
        with pytest.raises(SpecError, match="budget on this server"):
            m.submit(RunSpec(depth=64, width=16384, device="cpu"))
        assert m.store.list_runs() == [] and m.store.list_groups() == []

        _, ab = m.submit(tiny(optimizers=("agd", "sgd")), session="alice")
        with pytest.raises(QueueFull) as info:  # alice's third and fourth would pass her share
            m.submit(tiny(optimizers=("agd", "sgd")), session="alice")
        assert sentence(str(info.value)) and "each session may have at most 3" in str(info.value)
        _, [c] = m.submit(tiny(), session="bob")
        room = m.room("bob")
        assert {k: room[k] for k in ("active", "free", "session_active", "session_free", "max_queued",
                                     "max_queued_per_session")} == {
            "active": 3, "free": 1, "session_active": 1, "session_free": 2, "max_queued": 4,
            "max_queued_per_session": 3}
        assert 0 < room["session_seconds"] < 60 and 0 < room["session_bytes"] < 10_000
        with pytest.raises(QueueFull, match=r"^The queue is full: 3 runs are waiting or training"):
            m.submit(tiny(optimizers=("agd", "sgd")), session="carol")
        assert len(m.store.list_runs()) == 3  # refused submissions wrote nothing
        for rid in ab:  # alice's runs end: her share and the server's room come back
            m.cancel(rid)
        deadline = time.monotonic() + 10
        while ab[0] in m.active_runs() and time.monotonic() < deadline:  # the worker has exited
            m.poll()
            time.sleep(0.05)
        m.check_room(3, "alice")
        _, more = m.submit(tiny(optimizers=("agd", "sgd")), session="alice")
        assert len(more) == 2
    finally:
        m.shutdown(timeout=2)
    monkeypatch.setenv("AGD_VIZ_MAX_QUEUED", "none")
    with pytest.raises(ValueError, match="AGD_VIZ_MAX_QUEUED must be a whole number"):
        JobManager(tmp_path / "runs.db", start=False)


# Peak resident memory from /proc (VmHWM belongs to this process's own memory map): ru_maxrss
# would start at the forking parent's size (the kernel carries it across exec), a whole pytest.
MEASURE = """
import json, sys
import torch
torch.set_num_threads(1)
from agd_viz import cost, data, spec, train

def peak_rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

s = spec.RunSpec(**json.loads(sys.argv[1]))
data.load(s.dataset)  # imports and the data set are paid for before the baseline
base = peak_rss()
ends = [rec.status for rec in train.run(s) if isinstance(rec, train.End)]
peak = peak_rss()
print(json.dumps({"measured": peak - base, "estimate": cost.estimate_memory_bytes(s), "ends": ends}))
"""


@pytest.mark.parametrize("fields", [
    dict(depth=8, width=1024, optimizers=["adam"]),  # 7.4 M parameters, Adam's state
    dict(depth=16, width=1024, optimizers=["agd"], metrics="none"),  # 16 M parameters, no state
])
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from Linux's /proc")
@pytest.mark.slow
def test_the_memory_estimate_is_close_to_what_a_real_run_takes(fields):
    """Peak resident memory a few steps of training add to a process, against the estimate."""
    fields = {**fields, "steps": 3, "eval_every": 3, "device": "cpu"}
    out = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(fields)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["ends"] == ["finished"], r
    assert 0.7 * r["measured"] <= r["estimate"] <= 1.5 * r["measured"], r
