import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Real worker processes and servers, seconds each: left out of the quick loop (README, "Tests").
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None, env=None, timeout=300):
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "agd_viz", *args],
        cwd=cwd or ROOT, env={**full_env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=timeout,
    )


def test_train_json_prints_one_document_with_a_row_per_run(tmp_path):
    db = tmp_path / "runs.db"
    p = cli("train", "--dataset", "digits", "--depth", "3", "--width", "32", "--optimizer", "agd",
            "--optimizer", "adam:lr=1e-3", "--steps", "30", "--batch-size", "64", "--seed", "0",
            "--device", "cpu", "--db", str(db), "--json")
    assert p.returncode == 0, p.stderr
    runs = json.loads(p.stdout)
    assert [r["optimizer"] for r in runs] == ["agd", "adam:lr=1e-3"]
    for r in runs:
        assert {"run_id", "optimizer", "status", "steps", "final_train_loss", "final_train_acc",
                "final_test_acc", "elapsed_s"} <= set(r)
        assert r["status"] == "finished" and r["steps"] == 30
        assert 0 <= r["final_train_acc"] <= 1
    # progress goes to stderr, never into the JSON document
    assert "step" in p.stderr

    listed = json.loads(cli("runs", "--json", "--db", str(db)).stdout)
    assert sorted(r["run_id"] for r in listed) == sorted(r["run_id"] for r in runs)
    assert all(r["status"] == "finished" for r in listed)

    rid = runs[0]["run_id"]
    out = cli("export", str(rid), "--format", "csv", "--db", str(db))
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [int(float(r["step"])) for r in rows] == list(range(31))
    assert "w_spec_scaled[0]" in rows[0] and float(rows[1]["eta"]) > 0

    doc = json.loads(cli("export", str(rid), "--format", "json", "--db", str(db)).stdout)
    assert doc["run"]["optimizer"] == "agd"
    assert len(doc["metrics"]) == 31


@pytest.mark.parametrize(
    "args, words",
    [
        (["--depth", "0"], "depth must be between 1"),
        (["--width", "-1"], "width must be between 1"),
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--optimizer", "adamm"], "adamm"),
        (["--optimizer", "adam:learning_rate=1"], "learning_rate"),
        (["--steps", "ten"], "invalid int value"),
        (["--device", "tpu"], "invalid choice"),
        (["--loss", "mse"], "invalid choice: 'mse'"),
        (["--augment"], "defined for cifar10 only, not 'digits'"),
        (["--optimizer", "muon:ns_steps=0"], "ns_steps must be between 1 and 99"),
    ],
)
def test_bad_arguments_give_one_line_exit_2_and_write_nothing(tmp_path, args, words):
    db = tmp_path / "runs.db"
    p = cli("train", *args, "--db", str(db), "--steps", "5") if "--steps" not in args else cli(
        "train", *args, "--db", str(db))
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert words in lines[0]
    assert not db.exists()


def test_default_db_is_in_the_working_directory_and_env_overrides(tmp_path):
    args = ("train", "--depth", "2", "--width", "8", "--steps", "3", "--device", "cpu", "--quiet", "--json")
    p = cli(*args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "agd_viz_runs.db").exists()
    other = tmp_path / "elsewhere.db"
    p = cli(*args, cwd=tmp_path, env={"AGD_VIZ_DB": str(other)})
    assert p.returncode == 0, p.stderr
    assert other.exists()


def test_foreign_db_is_refused_and_left_untouched(tmp_path):
    db = tmp_path / "notes.db"
    db.write_bytes(b"these are my notes, not a database\n" * 10)
    before = db.read_bytes()
    p = cli("train", "--depth", "2", "--width", "8", "--steps", "3", "--db", str(db))
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1
    assert str(db) in p.stderr
    assert db.read_bytes() == before


def test_paper_contrast_at_depth_32_agd_trains_adam_does_not(tmp_path):
    """The must-show command: AGD reaches >= 97% train accuracy; Adam at lr=1e-3 is printed beside it."""
    p = cli("train", "--dataset", "digits", "--depth", "32", "--width", "128", "--optimizer", "agd",
            "--optimizer", "adam:lr=1e-3", "--steps", "300", "--batch-size", "128", "--seed", "0",
            "--device", "cpu", "--metrics", "none", "--db", str(tmp_path / "r.db"), "--json", "--quiet")
    assert p.returncode == 0, p.stderr
    agd, adam = json.loads(p.stdout)
    assert agd["final_train_acc"] >= 0.97
    assert adam["optimizer"] == "adam:lr=1e-3"
    print(f"\ndepth 32 digits: AGD train acc {agd['final_train_acc']:.3f}, Adam lr=1e-3 {adam['final_train_acc']:.3f}")


def test_train_on_a_2d_set_stores_its_decision_boundary_through_the_worker_sink(tmp_path):
    db = tmp_path / "runs.db"
    p = cli("train", "--dataset", "moons", "--data-option", "noise=0.2", "--data-option", "n_samples=400",
            "--depth", "3", "--width", "16", "--steps", "30", "--device", "cpu", "--db", str(db), "--json",
            "--quiet")
    assert p.returncode == 0, p.stderr
    [run] = json.loads(p.stdout)
    from agd_viz.store import Store

    with Store(db) as store:
        row = store.get_run(run["run_id"])
        assert row["spec"]["data_options"] == {"n_samples": 400, "noise": 0.2}  # numbers, not text
        assert row["label"] == "agd"
        steps = store.frame_steps(run["run_id"], "boundary")
        assert steps[0] == 0 and steps[-1] == 30


@pytest.mark.parametrize("option, words", [("noise=lots", "noise must be a number"),
                                           ("colour=red", "unknown option(s) colour"),
                                           ("noise", "expects KEY=VALUE")])
def test_bad_data_options_give_one_line_exit_2_and_write_nothing(tmp_path, option, words):
    db = tmp_path / "runs.db"
    p = cli("train", "--dataset", "moons", "--data-option", option, "--steps", "3", "--db", str(db))
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1 and words in p.stderr, p.stderr
    assert not db.exists()


def test_sweep_prints_its_size_and_estimate_then_a_table(tmp_path):
    db = tmp_path / "runs.db"
    p = cli("sweep", "--depths", "1,2", "--widths", "8", "--optimizer", "agd", "--steps", "5",
            "--batch-size", "32", "--device", "cpu", "--db", str(db))
    assert p.returncode == 0, p.stderr
    assert "sweep 1: 2 runs (2 depths × 1 width × 1 optimiser) on cpu, about " in p.stderr
    assert "final train accuracy, agd (rows: depth, columns: width)" in p.stdout
    p = cli("sweep", "--depths", "1,2", "--widths", "8", "--steps", "0", "--db", str(tmp_path / "no.db"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "steps" in p.stderr
    assert not (tmp_path / "no.db").exists()


def test_paper_lists_every_figure_and_refuses_unknown_ones(tmp_path):
    p = cli("paper", "--list")
    assert p.returncode == 0, p.stderr
    for key in ("fig1_left", "fig1_middle", "fig4", "fig5", "fig6", "fig7"):
        assert f"python -m agd_viz paper {key} --scale cifar10 --device cuda" in p.stdout
    for args, words in ((["fig9"], "invalid choice: 'fig9'"), (["fig4", "--scale", "imagenet"], "invalid choice"),
                        ([], "name a figure")):
        bad = cli("paper", *args, "--db", str(tmp_path / "runs.db"))
        assert bad.returncode == 2 and words in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs.db").exists()


def test_paper_reruns_figure_7_on_digits_into_one_group(tmp_path):
    db = tmp_path / "runs.db"
    p = cli("paper", "fig7", "--scale", "digits", "--device", "cpu", "--quiet", "--db", str(db))
    assert p.returncode == 0, p.stderr
    assert "Figure 7 (digits): 4 job(s), 4 run(s)" in p.stdout
    assert "paper: batch 4096: 59.8 % test accuracy" in p.stdout and "here:  batch 1438:" in p.stdout
    runs = json.loads(cli("runs", "--json", "--db", str(db)).stdout)
    assert len(runs) == 4 and {r["group_id"] for r in runs} == {1} and all(r["status"] == "finished" for r in runs)
