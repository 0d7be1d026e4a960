"""Logic of the Live training page (agd_viz.views.live_form and live_panel): what a presenter sees
when a preset, a link or a typo arrives, and how the panel reads and describes running runs."""

import pytest

from agd_viz import datasets, fmt
from agd_viz.store import LAYER_METRICS, Store
from agd_viz.views import live_form as live
from agd_viz.views import live_panel as panel

DATASETS = live.DATASET_CHOICES


# -- presets ---------------------------------------------------------------------------------------


def test_the_classic_preset_is_agd_against_default_adam_at_depth_32():
    s = live.PRESETS["Adam fails at depth 32"].state()
    assert (s["dataset"], s["depth"], s["width"]) == ("digits", 32, 128)
    assert live.optimizer_specs(s) == ["agd", "adam:lr=0.001"]
    assert not live.has_errors(live.check(s, datasets=DATASETS))


@pytest.mark.parametrize("name", list(live.PRESETS))
def test_every_preset_is_a_complete_valid_form_that_survives_a_link(name):
    s = live.PRESETS[name].state()
    assert set(s) == set(live.DEFAULTS)
    assert not live.has_errors(live.check(s, datasets=DATASETS)), live.check(s, datasets=DATASETS)
    back, notes = live.state_from_query(live.query_from_state(s), datasets=DATASETS)
    assert notes == []
    assert back == s


def test_required_presets_exist():
    for name in ("Adam fails at depth 32", "Wide vs narrow", "Deep and narrow", "Tuned Adam vs AGD"):
        assert name in live.PRESETS
    tuned = live.PRESETS["Tuned Adam vs AGD"].state()
    assert live.optimizer_specs(tuned) == ["agd", "adam:lr=0.0001", "adam:lr=0.001", "adam:lr=0.01"]


# -- the URL ---------------------------------------------------------------------------------------


def test_a_link_sets_every_field_and_reads_back_the_same():
    s = dict(live.DEFAULTS, dataset="moons", depth=5, width=48, batch_size=64, steps=250, seed=7,
             device="cpu", optimizers=("agd", "sgd", "adamw"), gain=2.5, sgd_lr="0.05, 0.5",
             adamw_lr="3e-4", same_init=True)
    q = live.query_from_state(s)
    assert all(isinstance(v, str) for v in q.values())
    assert q["optimizers"] == "agd,sgd,adamw" and q["sgd_lr"] == "0.05, 0.5" and q["same_init"] == "1"
    back, notes = live.state_from_query({**q, "group": "3", "present": "1", "utm": "x"}, datasets=DATASETS)
    assert notes == [] and back == s


def test_bad_link_values_are_explained_and_fall_back_to_defaults_field_by_field():
    q = {"depth": "abc", "width": "99999", "dataset": "imagenet", "optimizers": "agd,lion",
         "adam_lr": "-1", "same_init": "maybe", "steps": "50", "gain": "nan"}
    s, notes = live.state_from_query(q, datasets=DATASETS)
    assert s["steps"] == 50  # the good value is kept
    for name in ("depth", "width", "dataset", "optimizers", "adam_lr", "same_init", "gain"):
        assert s[name] == live.DEFAULTS[name]
    text = "\n".join(notes)
    assert len(notes) == 7
    assert "'abc' is not a whole number" in text and "Using the default, 8" in text
    assert "99,999 is outside 1–2,048" in text
    assert "'imagenet' is not one of" in text
    assert "unknown optimiser 'lion'" in text
    assert "positive" in text and "not 0 or 1" in text


def test_group_and_present_parameters():
    assert live.parse_group("12") == 12
    assert live.parse_group("x") is None and live.parse_group("-3") is None and live.parse_group(None) is None
    assert live.parse_flag("1") and live.parse_flag("true") and not live.parse_flag("0")


# -- checks next to each control ---------------------------------------------------------------------


def test_learning_rate_lists():
    assert live.parse_rates("1e-3, 1e-2") == [1e-3, 1e-2]
    assert live.parse_rates("0.1;0.1  0.3") == [0.1, 0.3]  # repeats dropped, any separator
    for text, words in (("", "at least one"), ("1e-3, fast", "'fast' is not a number"),
                        ("0", "positive"), ("inf", "positive"), ("100", "far too large"),
                        ("1,2,3,4,5", "at most 4")):
        with pytest.raises(ValueError, match=words):
            live.parse_rates(text.replace("1,2,3,4,5", "0.1,0.2,0.3,0.4,0.5"))


def _errors(notes, field):
    return [n.text for n in notes.get(field, []) if n.level == "error"]


def test_invalid_combinations_are_reported_on_the_control_that_caused_them():
    base = dict(live.DEFAULTS)
    n = live.check(dict(base, optimizers=()), datasets=DATASETS)
    assert _errors(n, "optimizers") == ["Choose at least one optimiser to train."]
    n = live.check(dict(base, adam_lr="1e-3, x"), datasets=DATASETS)
    assert "'x' is not a number" in _errors(n, "adam_lr")[0]
    # A bad SGD rate does not matter while SGD is not selected.
    assert not live.has_errors(live.check(dict(base, sgd_lr="oops"), datasets=DATASETS))
    n = live.check(dict(base, depth=64, width=2048), datasets=DATASETS)
    assert "hidden weights" in _errors(n, "width")[0]
    n = live.check(dict(base, optimizers=("agd", "adam", "sgd"), adam_lr="1e-4,1e-3,1e-2,1e-1",
                        sgd_lr="0.01,0.1,0.5,1"), datasets=DATASETS)
    assert "9 runs" in _errors(n, "optimizers")[0]
    n = live.check(dict(base, device="cuda"), devices=("cpu",), datasets=DATASETS)
    assert "no CUDA device" in _errors(n, "device")[0]
    n = live.check(dict(base, depth=1), datasets=DATASETS)
    assert not live.has_errors(n) and "width is not used" in n["width"][0].text
    n = live.check(dict(base, steps=20000, depth=16, width=1024), datasets=DATASETS)
    assert not live.has_errors(n) and "may take about" in n["start"][0].text


def test_form_to_run_spec_fields_and_back():
    s = dict(live.DEFAULTS, optimizers=("agd", "adam", "adamw"), gain=2.0, adam_lr="1e-3, 1e-2")
    fields = live.spec_fields(s)
    assert fields["optimizers"] == ("agd:gain=2", "adam:lr=0.001", "adam:lr=0.01", "adamw:lr=0.001")
    assert fields["metrics"] == "full" and fields["depth"] == 8
    odd = live.state_from_spec(dict(fields, depth=100, dataset="imagenet"))
    assert odd["depth"] == live.DEFAULTS["depth"] and odd["dataset"] == "digits" and odd["width"] == 128
    back = live.state_from_spec(fields)
    assert live.optimizer_specs(back) == list(fields["optimizers"])
    assert {k: v for k, v in back.items() if not k.endswith("_lr")} == \
        {k: v for k, v in s.items() if not k.endswith("_lr")}


# -- progress text ---------------------------------------------------------------------------------


def test_progress_lines_say_where_each_run_is():
    assert panel.progress_text("adam lr=0.001", {"status": "queued", "queue_position": 2}) == \
        "adam lr=0.001 · queued · position 2 in the queue"
    line = panel.progress_text("agd", {"status": "running", "step": 120, "steps": 300,
                                      "steps_per_s": 35.2, "eta_s": 5.1})
    assert line == "agd · running · step 120 / 300 · 35 steps/s · ETA 5 s"
    early = panel.progress_text("agd", {"status": "running", "step": 3, "steps": 300, "steps_per_s": 0.2,
                                        "eta_s": 1490.0})
    assert early == "agd · running · step 3 / 300 · 0.2 steps/s"  # no ETA from the start-up's pace
    assert panel.progress_text("agd", {"status": "diverged", "step": 7, "steps": 300}) == \
        "agd · diverged · step 7 / 300"
    assert panel.progress_fraction({"status": "running", "step": 150, "steps": 300}) == 0.5
    assert panel.progress_fraction({"status": "finished", "step": 3, "steps": 300}) == 1.0
    assert fmt.duration(3725) == "1 h 02 min"
    assert [fmt.number(v) for v in (0.3441, 1.523, 7.66e-4, 3.1e-5, 0.0, None)] == \
        ["0.344", "1.52", "7.7e-4", "3.1e-5", "0", "–"]
    assert panel.all_final({1: {"status": "finished"}, 2: {"status": "diverged"}}, [1, 2])
    assert not panel.all_final({1: {"status": "finished"}, 2: {"status": "running"}}, [1, 2])


def test_the_refresh_slows_down_when_refreshes_get_expensive():
    assert panel.refresh_interval(None) == 1.0 and panel.refresh_interval(0.05) == 1.0
    assert panel.refresh_interval(0.3) == 1.5 and panel.refresh_interval(0.6) == 2.5
    assert panel.refresh_interval(10.0) == 5.0
    assert panel.interval_drifted(1.0, 2.5) and not panel.interval_drifted(1.0, 1.0)
    assert panel.interval_drifted(5.0, 1.0) and not panel.interval_drifted(2.0, 2.5)


def test_error_text_from_a_worker_is_shown_literally():
    shown = fmt.md_escape("[click](http://x) **boom** `rm`")
    assert "](" not in shown.replace("\\]\\(", "") and "\\*\\*boom\\*\\*" in shown


# -- incremental reads -----------------------------------------------------------------------------


def _records(steps, loss=1.0, layers=3):
    return [{"step": k, "t": 0.01 * k, "loss": loss, "acc": 0.5,
             "layers": {m: [0.1] * layers for m in LAYER_METRICS}} for k in steps]


def test_live_frames_read_only_new_steps(tmp_path):
    store = Store(tmp_path / "runs.db")
    rid = store.create_run({"dataset": "digits", "depth": 3, "width": 8}, "agd")
    store.append_metrics(rid, _records(range(0, 10)))
    frames = panel.LiveFrames()
    fr = frames.refresh(store, [rid])[rid]
    assert list(fr.scalars["step"]) == list(range(10)) and fr.last_step == 9
    assert len(fr.layers) == 10 * 3
    # Rewrite an old step and add new ones: only steps after the last seen are read, so the
    # old value stays as first read and the new steps are appended.
    store.append_metrics(rid, _records([5], loss=99.0) + _records(range(10, 15)))
    fr = frames.refresh(store, [rid])[rid]
    assert list(fr.scalars["step"]) == list(range(15))
    assert fr.scalars.loc[fr.scalars["step"] == 5, "loss"].item() == 1.0
    assert len(fr.layers) == 15 * 3 and fr.last_layer_step == 14
    fr = frames.refresh(store, [rid])[rid]  # nothing new
    assert len(fr.scalars) == 15 and fr.reads == 3
    vals = panel.latest_values(fr.scalars)
    assert vals["step"] == 14 and vals["loss"] == 1.0 and vals["eta"] is None
    store.close()


def test_page_logic_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, agd_viz.views.live_form as f, agd_viz.views.live_panel, agd_viz.charts, agd_viz.jobs,"
            " agd_viz.store; from agd_viz.spec import RunSpec;"
            "f.check(f.default_state()); RunSpec(**f.spec_fields(f.default_state()));"
            "assert 'torch' not in sys.modules, 'torch'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_the_form_offers_exactly_the_data_sets_of_the_catalogue():
    assert set(live.DATASET_CHOICES) == set(datasets.DATASETS)
    assert {n for n in datasets.DATASETS if live.image_shape(n)} == \
        {n for n, i in datasets.DATASETS.items() if i.input_shape}


def test_lemma8_names_the_conditions_a_comparison_does_not_meet():
    from agd_viz.views import live_panel

    gaps = live_panel.lemma8_gaps({"dataset": "digits", "batch_size": 128, "loss": "xent"})
    assert "cross-entropy, not the square loss" in gaps and "128 of 1,438 examples" in gaps
    assert "Assumption 1 and Assumption 2 are not checked" in gaps
    full = live_panel.lemma8_gaps({"dataset": "digits", "batch_size": 4096, "loss": "square"})
    assert full == "Assumption 1 and Assumption 2 are not checked"
    assert "CNN" in live_panel.lemma8_gaps({"dataset": "digits", "batch_size": 8, "arch": "cnn"})


def test_right_after_start_the_panel_waits_for_the_first_step_or_for_the_runs_to_end(tmp_path):
    import threading

    store = Store(tmp_path / "runs.db")
    a = store.create_run({"dataset": "digits", "depth": 3, "width": 8}, "agd")
    b = store.create_run({"dataset": "digits", "depth": 3, "width": 8}, "adam:lr=0.001")
    store.set_status(a, "running")
    store.set_status(b, "running")
    # Another writer (the worker) stores step 0 and the first training step with its progress, a moment later.
    writer = threading.Timer(0.2, lambda: Store(tmp_path / "runs.db").append_metrics(b, _records([0, 1]), progress={}))
    writer.start()
    assert panel.wait_first_step(store, [a, b], timeout=60)
    writer.join()
    store.finish_run(a, "cancelled")
    store.finish_run(b, "cancelled")
    c = store.create_run({"dataset": "digits", "depth": 3, "width": 8}, "agd")
    store.finish_run(c, "failed", error="boom")
    assert not panel.wait_first_step(store, [c], timeout=60)  # ended without a step: no wait
    store.close()
