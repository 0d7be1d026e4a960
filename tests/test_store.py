"""The SQLite run store, on real files: what a worker writes is what the app reads, concurrently,
and a file that is not ours is refused without being touched."""

import csv
import hashlib
import io
import json
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agd_viz import store as store_mod
from agd_viz.store import (
    APPLICATION_ID,
    FINAL_STATUSES,
    INTERRUPTED,
    LAYER_METRICS,
    SCALAR_METRICS,
    SCHEMA_VERSION,
    Store,
    StoreError,
    default_db_path,
)

REPO = Path(__file__).resolve().parents[1]
SPEC = {"dataset": "digits", "depth": 4, "width": 16, "steps": 100, "optimizers": ("agd", "adam"),
        "data_options": (("noise", 0.1),)}  # fmt: skip


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def step_record(k, n_layers=3, **overrides):
    rec = {
        "type": "step", "opt": 0, "step": k, "t": 0.01 * k, "loss": 1.0 / (k + 1), "acc": 0.5,
        "eta": 0.2, "G": 1.5, "lr": 0.2,
        "layers": {m: [k + j / 10 + i / 100 for i in range(n_layers)]
                   for j, m in enumerate(LAYER_METRICS)},
    }  # fmt: skip
    rec.update(overrides)
    return rec


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs.db") as s:
        yield s


def test_new_file_is_stamped_and_in_wal_mode(tmp_path):
    path = tmp_path / "sub" / "runs.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    Store(path).close()  # reopening our own current file is fine


def test_runs_and_metrics_round_trip(store):
    gid = store.create_group("compare", "agd vs adam", {"seed": 0})
    rid = store.create_run(SPEC, "adam:lr=1e-3", group_id=gid)
    run = store.get_run(rid)
    assert run["status"] == "queued" and run["optimizer"] == "adam:lr=1e-3"
    assert run["label"] == "adam lr=0.001" and run["group_id"] == gid  # optspec's label
    assert (run["dataset"], run["depth"], run["width"], run["steps"]) == ("digits", 4, 16, 100)
    assert run["spec"]["data_options"] == [["noise", 0.1]]  # JSON has no tuples

    records = [
        step_record(0, loss=float("nan"), train_loss=0.9, test_acc=0.25),
        step_record(1, loss=float("inf"), unknown_metric=3.0),
        step_record(2, layers=None),
        {"type": "end", "status": "finished", "step": 2},  # not a metric row
        step_record(3, layers={"w_fro": [1.0, float("nan"), 3.0], "g_fro": [4.0, 5.0]}),
    ]
    assert store.append_metrics(rid, records) == 4

    df = store.metrics(rid)
    assert list(df.columns) == ["step", "t", *SCALAR_METRICS]
    assert df["step"].tolist() == [0, 1, 2, 3]
    assert all(df[c].dtype == np.float64 for c in df.columns[1:])
    assert math.isnan(df["loss"][0]) and math.isnan(df["loss"][1])  # NaN and inf both read as NaN
    assert df["loss"][2] == pytest.approx(1 / 3)
    assert df["train_loss"][0] == 0.9 and math.isnan(df["train_loss"][1])
    assert df["test_acc"][0] == 0.25 and df["G"][3] == 1.5

    lm = store.layer_metrics(rid)
    assert list(lm.columns) == ["step", "t", "layer", *LAYER_METRICS]
    assert lm["step"].tolist() == [0, 0, 0, 1, 1, 1, 3, 3, 3]  # step 2 logged no layers
    assert lm["layer"].tolist() == [0, 1, 2] * 3
    np.testing.assert_array_equal(
        lm["w_spec"][:3], np.float32([0.1, 0.11, 0.12]).astype(np.float64)
    )
    step3 = lm[lm.step == 3]
    np.testing.assert_array_equal(step3["w_fro"], [1.0, np.nan, 3.0])
    np.testing.assert_array_equal(step3["g_fro"], [4.0, 5.0, np.nan])  # shorter list padded
    assert step3["rel_update"].isna().all()  # not logged that step

    # the same (run, step) again replaces the row
    store.append_metrics(rid, [step_record(1, loss=0.75)])
    assert store.metrics(rid)["loss"].tolist()[1] == 0.75


def test_since_step_reads_only_new_rows(store):
    rid = store.create_run(SPEC, "agd")
    store.append_metrics(rid, [step_record(k) for k in range(5)])
    first = store.metrics(rid)
    store.append_metrics(rid, [step_record(k) for k in range(5, 8)])
    new = store.metrics(rid, since_step=int(first["step"].iloc[-1]))
    assert new["step"].tolist() == [5, 6, 7]
    assert store.layer_metrics(rid, since_step=6)["step"].unique().tolist() == [7]
    assert store.metrics(rid, since_step=7).empty
    assert list(store.metrics(rid, since_step=7).columns) == ["step", "t", *SCALAR_METRICS]
    assert store.layer_metrics(rid, since_step=7).empty

    other = store.create_run(SPEC, "sgd:lr=0.1")
    store.append_metrics(other, [step_record(k) for k in range(3)])
    many = store.metrics_many([rid, other], since={rid: 6})
    assert many[rid]["step"].tolist() == [7] and many[other]["step"].tolist() == [0, 1, 2]


def test_progress_and_run_lifecycle(store):
    rid = store.create_run(SPEC, "agd")
    store.start_run(rid, device="cpu", pid=4242)
    store.append_metrics(rid, [step_record(k) for k in range(40)], progress={"steps_per_s": 20.0})
    prog = store.progress([rid, 99999])
    assert set(prog) == {rid}  # unknown ids are left out
    p = prog[rid]
    assert p["status"] == "running" and p["step"] == 39 and p["steps"] == 100
    assert p["last_loss"] == pytest.approx(1 / 40)
    store.append_metrics(rid, [{"step": 39, "test_loss": 0.5}], progress={})  # eval-only row
    assert store.progress([rid])[rid]["last_loss"] == pytest.approx(1 / 40)
    assert p["eta_s"] == pytest.approx((100 - 39) / 20.0)
    assert time.time() - p["updated"] < 60

    store.finish_run(rid, "diverged", summary={"final_loss": float("nan"), "steps": 40},
                     error="loss is NaN")  # fmt: skip
    run = store.get_run(rid)
    assert run["status"] == "diverged" and run["error"] == "loss is NaN"
    assert run["summary"] == {"final_loss": None, "steps": 40}
    assert run["ended"] >= run["started"] and run["device"] == "cpu" and run["pid"] == 4242
    assert store.progress([rid])[rid]["eta_s"] is None
    with pytest.raises(ValueError):
        store.finish_run(rid, "running")
    with pytest.raises(ValueError):
        store.set_status(rid, "exploded")
    with pytest.raises(KeyError):
        store.start_run(12345, "cpu", 1)


def test_list_runs_filters(store):
    g = store.create_group("sweep", "depth x width", {"depths": [2, 4]})
    a = store.create_run(SPEC, "agd", group_id=g)
    b = store.create_run({**SPEC, "dataset": "spirals"}, "adam:lr=1e-3", group_id=g)
    c = store.create_run(SPEC, "adam:lr=1e-2")
    store.set_status(c, "failed", error="boom")
    assert [r["id"] for r in store.list_runs()] == [c, b, a]  # newest first
    assert [r["id"] for r in store.list_runs(dataset="spirals")] == [b]
    assert [r["id"] for r in store.list_runs(optimizer="adam")] == [c, b]
    assert [r["id"] for r in store.list_runs(optimizer="adam:lr=1e-3")] == [b]
    assert [r["id"] for r in store.list_runs(status="failed")] == [c]
    assert [r["id"] for r in store.list_runs(status=("queued", "failed"), limit=2)] == [c, b]
    assert [r["id"] for r in store.list_runs(group_id=g)] == [b, a]
    assert store.get_run(c)["ended"] is not None  # a final status stamps the end time
    groups = store.list_groups(kind="sweep")
    assert [(x["id"], x["run_ids"], x["spec"]) for x in groups] == [(g, [a, b], {"depths": [2, 4]})]
    assert store.list_groups(kind="compare") == []


def test_cancel_request(store):
    rid = store.create_run(SPEC, "agd")
    assert store.cancel_requested(rid) is False
    assert store.request_cancel(rid) is True
    assert store.cancel_requested(rid) is True
    assert store.request_cancel(9999) is False
    assert store.cancel_requested(9999) is True  # a deleted run's worker should stop too


def test_delete_run_and_group_remove_metrics(store):
    g = store.create_group("compare", "pair", {})
    r1 = store.create_run(SPEC, "agd", group_id=g)
    r2 = store.create_run(SPEC, "adam", group_id=g)
    keep = store.create_run(SPEC, "sgd")
    for r in (r1, r2, keep):
        store.append_metrics(r, [step_record(k) for k in range(3)])

    assert store.delete_run(r1) is True and store.delete_run(r1) is False
    assert store.get_run(r1) is None and store.metrics(r1).empty
    with pytest.raises(KeyError):  # the worker of a deleted run learns on its next write
        store.append_metrics(r1, [step_record(3)])

    assert store.delete_group(g) is True
    assert store.get_group(g) is None and store.get_run(r2) is None
    assert len(store.metrics(keep)) == 3
    raw = sqlite3.connect(store.path)
    assert raw.execute("SELECT DISTINCT run_id FROM metrics").fetchall() == [(keep,)]
    raw.close()


def test_mark_interrupted(store):
    queued = store.create_run(SPEC, "agd")
    orphan = store.create_run(SPEC, "agd")
    alive = store.create_run(SPEC, "adam")
    done = store.create_run(SPEC, "sgd")
    store.start_run(orphan, "cpu", pid=111)
    store.start_run(alive, "cpu", pid=222)
    store.finish_run(done, "finished")

    assert store.mark_interrupted(exclude_pids=[222]) == [queued, orphan]
    statuses = {r["id"]: r["status"] for r in store.list_runs()}
    assert statuses == {
        queued: INTERRUPTED, orphan: INTERRUPTED, alive: "running", done: "finished"
    }  # fmt: skip
    assert "stopped" in store.get_run(orphan)["error"]
    assert INTERRUPTED in FINAL_STATUSES
    assert store.mark_interrupted(exclude_pids=[222]) == []


def test_export_csv_and_json(store):
    rid = store.create_run(SPEC, "agd:gain=10", name="deep agd")
    store.append_metrics(rid, [step_record(0, loss=float("nan")), step_record(1, layers=None),
                               step_record(2, n_layers=2)])  # fmt: skip

    text = store.export_run(rid, "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    header = text.splitlines()[0].split(",")
    assert header[: 2 + len(SCALAR_METRICS)] == ["step", "t", *SCALAR_METRICS]
    assert header[-3:] == [f"{LAYER_METRICS[-1]}[{k}]" for k in range(3)]
    assert [r["step"] for r in rows] == ["0", "1", "2"]
    assert rows[0]["loss"] == "" and float(rows[1]["loss"]) == 0.5
    assert rows[0]["w_fro[1]"] == "0.01" and rows[0]["w_spec[2]"] == "0.12"
    assert rows[1]["w_fro[0]"] == ""  # no layer data at step 1
    assert rows[2]["g_fro[2]"] == ""  # only two layers logged at step 2
    again = pd.read_csv(io.StringIO(text))
    assert again.shape == (3, 2 + len(SCALAR_METRICS) + 3 * len(LAYER_METRICS))

    def no_nan(token):
        raise AssertionError(f"non-standard JSON token {token}")

    doc = json.loads(store.export_run(rid, "json"), parse_constant=no_nan)
    assert doc["run"]["id"] == rid and doc["run"]["name"] == "deep agd"
    assert doc["run"]["spec"]["dataset"] == "digits" and doc["run"]["optimizer"] == "agd:gain=10"
    assert [m["step"] for m in doc["metrics"]] == [0, 1, 2]
    assert doc["metrics"][0]["loss"] is None and doc["metrics"][0]["test_loss"] is None
    assert doc["layers"]["step"] == [0, 2]
    assert doc["layers"]["w_fro"][0] == pytest.approx([0.0, 0.01, 0.02])
    assert doc["layers"]["w_fro"][1] == pytest.approx([2.0, 2.01])  # two layers logged

    with pytest.raises(ValueError):
        store.export_run(rid, "pickle")
    with pytest.raises(KeyError):
        store.export_run(9999, "csv")


def test_foreign_sqlite_database_is_refused_untouched(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('precious')")
    conn.commit()
    conn.close()
    before = sha(path)
    with pytest.raises(StoreError, match="another application") as err:
        Store(path)
    assert str(path) in str(err.value)
    assert sha(path) == before
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # WAL never switched on
    conn.close()

    stamped = tmp_path / "stamped.db"  # empty, but claimed by another app through application_id
    conn = sqlite3.connect(stamped)
    conn.execute("PRAGMA application_id = 1234")
    conn.close()
    before = sha(stamped)
    with pytest.raises(StoreError, match="another application"):
        Store(stamped)
    assert sha(stamped) == before


@pytest.mark.parametrize(
    "content",
    [b"step,loss\n0,1.0\n", os.urandom(8192), b"SQLite format 3\x00" + os.urandom(4000)],
    ids=["csv-text", "random-bytes", "sqlite-header-then-garbage"],
)
def test_garbage_file_is_refused_untouched(tmp_path, content):
    path = tmp_path / "runs.db"
    path.write_bytes(content)
    before = sha(path)
    with pytest.raises(StoreError) as err:
        Store(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert sha(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]


def test_corrupt_store_is_refused_untouched(tmp_path):
    path = tmp_path / "runs.db"
    with Store(path) as s:
        rid = s.create_run(SPEC, "agd")
        s.append_metrics(rid, [step_record(k, n_layers=32) for k in range(300)])
    raw = path.read_bytes()
    page = 4096
    path.write_bytes(raw[:page] + b"\0" * (len(raw) - page))  # every table page zeroed
    before = sha(path)
    with pytest.raises(StoreError, match="corrupt") as err:
        Store(path)
    assert "\n" not in str(err.value)
    assert sha(path) == before


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "runs.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = sha(path)
    with pytest.raises(StoreError, match="was written by a newer agd_viz"):
        Store(path)
    assert sha(path) == before


def test_migration_steps_apply_in_order(tmp_path):
    path = tmp_path / "runs.db"
    with Store(path) as s:
        rid = s.create_run(SPEC, "agd")
    v = SCHEMA_VERSION
    future = {**store_mod.MIGRATIONS, v: ("ALTER TABLE runs ADD COLUMN note TEXT",),
              v + 1: lambda conn: conn.execute("UPDATE runs SET note = 'migrated'")}  # fmt: skip
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    store_mod._migrate(conn, v, v + 2, future)
    conn.execute("COMMIT")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == v + 2
    assert conn.execute("SELECT note FROM runs WHERE id = ?", (rid,)).fetchone()[0] == "migrated"
    conn.close()
    with pytest.raises(StoreError, match="newer agd_viz"):
        Store(path)


def v1_file(path):
    """A run store as version 1 of agd_viz wrote it: its schema, one group, one run with metrics."""
    conn = sqlite3.connect(path, isolation_level=None)
    for sql in store_mod.MIGRATIONS[0]:
        conn.execute(sql)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO groups (kind, name, spec, created) VALUES ('compare', 'old', '{}', 1.0)")
    conn.execute("INSERT INTO runs (group_id, optimizer, label, spec, status, created)"
                 " VALUES (1, 'agd', 'agd', '{}', 'finished', 1.0)")
    conn.execute("INSERT INTO metrics (run_id, step, t, loss) VALUES (1, 0, 0.0, 2.5), (1, 1, 0.1, 2.0)")
    conn.close()


def test_a_version_1_file_opens_and_is_upgraded_in_place(tmp_path):
    path = tmp_path / "runs.db"
    v1_file(path)
    with Store(path) as s:
        assert s.get_run(1)["status"] == "finished"
        assert s.metrics(1)["loss"].tolist() == [2.5, 2.0]  # nothing lost
        assert s.frames(1, "boundary") == []
        s.put_frame(1, "boundary", 5, {"probs": np.zeros((2, 3, 2), np.uint8)})
        assert s.frame_steps(1, "boundary") == [5]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert "u_srank" in {r[1] for r in conn.execute("PRAGMA table_info(metrics)")}  # v4
    assert {"owner", "job"} <= {r[1] for r in conn.execute("PRAGMA table_info(runs)")}  # v3
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()
    with Store(path) as s:  # reopening the upgraded file changes nothing
        assert s.frame_steps(1, "boundary") == [5] and len(s.metrics(1)) == 2


def test_a_version_2_file_gains_owners_and_jobs_and_keeps_everything(tmp_path):
    """Schema v3 (issue 14): groups and runs record who started them, runs the worker job they
    trained in. A v2 file (the redesign's) is upgraded in place; its runs have no owner, so only an
    operator or the command line may stop or delete them."""
    path = tmp_path / "runs.db"
    v1_file(path)
    conn = sqlite3.connect(path, isolation_level=None)
    for sql in store_mod.MIGRATIONS[1]:
        conn.execute(sql)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO frames (run_id, kind, step, data) VALUES (1, 'x', 0, x'00')")
    conn.close()
    with Store(path) as s:
        run, group = s.get_run(1), s.get_group(1)
        assert run["status"] == "finished" and run["owner"] is None and run["job"] is None
        assert group["owner"] is None and group["run_ids"] == [1]
        assert s.metrics(1)["loss"].tolist() == [2.5, 2.0] and s.frame_steps(1, "x") == [0]
        gid = s.create_group("compare", spec={}, owner="alice")
        a = s.create_run(SPEC, "agd", group_id=gid, owner="alice", pid=os.getpid())
        b = s.create_run(SPEC, "adam", group_id=gid, owner="alice")
        s.set_job([a, b])
        assert s.get_run(a)["owner"] == "alice" and s.get_run(a)["pid"] == os.getpid()
        assert [s.get_run(r)["job"] for r in (a, b)] == [a, a] and s.job_in_use(a) and not s.job_in_use(999)
        assert [g["id"] for g in s.list_groups(owner="alice")] == [gid]
        assert [g["id"] for g in s.list_groups(kind="compare", owner="bob")] == []
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_ids_too_large_for_sqlite_are_no_run_not_an_overflow(store):
    """A link's ?group=9223372036854775808 or a CLI id of 20 digits: no such run, one sentence."""
    gid = store.create_group("compare")
    rid = store.create_run(SPEC, "agd", group_id=gid)
    for huge in (2**63, 2**64, -(2**63) - 1, 10**4000):
        assert store.get_run(huge) is None and store.get_group(huge) is None
        assert store.delete_run(huge) is False and store.delete_group(huge) is False
        assert store.request_cancel(huge) is False and store.cancel_requested(huge) is True
        assert store.list_runs(group_id=huge) == []
        with pytest.raises(KeyError, match="no run with id"):
            store.set_status(huge, "failed")
        with pytest.raises(KeyError):
            store.export_run(huge)
    assert store.get_run(rid)["status"] == "queued"


def test_liveness_ends_a_run_only_if_nobody_ended_it_meanwhile(store):
    rid = store.create_run(SPEC, "agd", pid=12345)
    assert not store.end_if_unchanged(rid, "queued", 999, "interrupted", "gone")  # another owner
    store.finish_run(rid, "finished")
    assert not store.end_if_unchanged(rid, "queued", 12345, "interrupted", "gone")  # ended meanwhile
    assert store.get_run(rid)["status"] == "finished"
    other = store.create_run(SPEC, "agd", pid=12345)
    assert store.end_if_unchanged(other, "queued", 12345, "interrupted", "its server is gone")
    assert store.get_run(other)["status"] == "interrupted" and store.get_run(other)["error"] == "its server is gone"
    store.request_cancel(rid)
    assert store.cancel_flags([rid, other, 10**6]) == {rid, 10**6}


def test_a_device_or_a_read_only_file_is_not_written_beside(tmp_path):
    """`--db /dev/null` left /dev/null-journal behind; a read-only store got -wal and -shm files
    beside it when only read. A read-only file is opened read-only and says so."""
    had_journal = Path("/dev/null-journal").exists()
    with pytest.raises(StoreError, match="is not a regular file"):
        Store("/dev/null")
    assert Path("/dev/null-journal").exists() == had_journal
    path = tmp_path / "runs.db"
    with Store(path) as s:
        s.create_run(SPEC, "agd")
        assert s.problem() is None
    undo = make_read_only(path)
    try:
        before = sorted(p.name for p in tmp_path.iterdir())
        with Store(path) as s:
            assert s.read_only and s.problem() == store_mod.STORE_READ_ONLY
            assert s.get_run(1)["optimizer"] == "agd"
            with pytest.raises(sqlite3.OperationalError):
                s.create_run(SPEC, "adam")
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    finally:
        undo()


def test_a_store_deleted_under_its_server_says_so_and_can_be_saved(tmp_path):
    path = tmp_path / "runs.db"
    with Store(path) as s:
        rid = s.create_run(SPEC, "agd")
        s.append_metrics(rid, [step_record(k) for k in range(3)])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        assert s.problem() == store_mod.STORE_GONE
        copy = s.save_copy(tmp_path / "saved.db")
    with Store(copy) as saved:
        assert saved.get_run(rid)["optimizer"] == "agd" and len(saved.metrics(rid)) == 3


def make_read_only(path):
    """Make `path` read-only for this process, even as root (chattr +i), or skip; returns the undo."""
    if os.geteuid() != 0:
        os.chmod(path, 0o444)
        return lambda: os.chmod(path, 0o644)
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if done.returncode != 0 or os.access(path, os.W_OK):
        pytest.skip("cannot make a file read-only here (root without chattr +i)")
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_frames_round_trip_by_run_kind_and_step(store):
    rid = store.create_run(SPEC, "agd")
    other = store.create_run(SPEC, "adam")
    rng = np.random.default_rng(0)
    probs = {k: rng.integers(0, 256, (70, 100, 2), dtype=np.uint8) for k in (0, 6, 12)}
    for k in (12, 0, 6):  # written out of order, read by step
        store.put_frame(rid, "boundary", k, {"probs": probs[k]})
    grid = {"x": np.linspace(-1, 1, 100), "y": np.linspace(-0.7, 0.7, 70),
            "classes": np.array(["upper", "lower"])}
    store.put_frame(rid, "boundary_grid", 0, grid)
    store.put_frame(other, "boundary", 3, {"probs": probs[0]})

    got = store.frames(rid, "boundary")
    assert [k for k, _ in got] == [0, 6, 12]
    for k, arrays in got:
        assert list(arrays) == ["probs"] and arrays["probs"].dtype == np.uint8
        np.testing.assert_array_equal(arrays["probs"], probs[k])
    assert [k for k, _ in store.frames(rid, "boundary", since_step=0)] == [6, 12]
    step, latest = store.latest_frame(rid, "boundary")
    assert step == 12 and np.array_equal(latest["probs"], probs[12])
    assert store.frame_at(rid, "boundary", 11)[0] == 6 and store.frame_at(rid, "boundary", -1) is None
    assert store.frame_steps(rid, "boundary") == [0, 6, 12] and store.frame_steps(other, "boundary") == [3]
    _, g = store.latest_frame(rid, "boundary_grid")
    assert g["classes"].tolist() == ["upper", "lower"] and np.array_equal(g["y"], grid["y"])
    assert store.latest_frame(rid, "nothing") is None and store.frames(9999, "boundary") == []

    store.put_frame(rid, "boundary", 12, {"probs": probs[0]})  # the same step again replaces it
    assert np.array_equal(store.latest_frame(rid, "boundary")[1]["probs"], probs[0])
    with pytest.raises(KeyError):
        store.put_frame(9999, "boundary", 0, {"probs": probs[0]})


def test_a_frame_is_data_never_code(store):
    """Frames are read with allow_pickle=False: an object array can neither be stored nor, if one
    were smuggled into the file, be read back."""
    rid = store.create_run(SPEC, "agd")
    with pytest.raises(TypeError):
        store.put_frame(rid, "boundary", 0, {"probs": np.array([{"a": 1}], dtype=object)})
    buf = io.BytesIO()
    np.savez_compressed(buf, probs=np.array([{"a": 1}], dtype=object))
    raw = sqlite3.connect(store.path)
    raw.execute("INSERT INTO frames (run_id, kind, step, data) VALUES (?, 'boundary', 0, ?)", (rid, buf.getvalue()))
    raw.commit()
    raw.close()
    with pytest.raises(ValueError, match="pickle"):
        store.latest_frame(rid, "boundary")


def test_frames_go_with_their_run_and_group(store):
    g = store.create_group("compare", "pair", {})
    r1 = store.create_run(SPEC, "agd", group_id=g)
    r2 = store.create_run(SPEC, "adam", group_id=g)
    keep = store.create_run(SPEC, "sgd")
    for r in (r1, r2, keep):
        store.put_frame(r, "boundary", 0, {"probs": np.ones((2, 2, 2), np.uint8)})
    store.delete_run(r1)
    assert store.frames(r1, "boundary") == []
    store.delete_group(g)
    raw = sqlite3.connect(store.path)
    assert raw.execute("SELECT DISTINCT run_id FROM frames").fetchall() == [(keep,)]
    raw.close()


def test_typed_step_records_are_stored_like_dicts(store):
    from agd_viz.train import End, Step, Sync

    rid = store.create_run(SPEC, "agd")
    layers = {m: [0.5, 1.5] for m in LAYER_METRICS}
    recs = [Step(0, 0, 0.0, train_loss=2.0, layers=layers), Sync(),
            Step(0, 1, 0.1, loss=1.5, acc=0.25, eta=0.3, G=2.0), End(0, "finished", 1, None, {})]
    assert store.append_metrics(rid, recs, progress={}) == 2
    df = store.metrics(rid)
    assert df["step"].tolist() == [0, 1] and df["train_loss"][0] == 2.0 and math.isnan(df["loss"][0])
    assert (df["loss"][1], df["acc"][1], df["eta"][1], df["G"][1]) == (1.5, 0.25, 0.3, 2.0)
    assert math.isnan(df["lr"][1])
    assert store.layer_metrics(rid)["w_spec"].tolist() == [0.5, 1.5]
    assert store.progress([rid])[rid]["last_loss"] == 1.5


WRITER = textwrap.dedent(
    """
    import sys
    from agd_viz.store import Store
    path, run_id, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    s = Store(path, timeout=10)
    for b in range(batches):
        recs = [{"step": b * 5 + i, "t": b * 0.01, "loss": 1.0 / (b + 1), "acc": 0.5,
                 "layers": {"w_fro": [float(b)] * 8, "rel_update": [0.1] * 8}} for i in range(5)]
        s.append_metrics(run_id, recs, progress={"steps_per_s": 100.0})
    s.finish_run(run_id, "finished", summary={"batches": batches})
    s.close()
    assert "torch" not in sys.modules, "the store must not pull in torch"
    """
)


def test_worker_processes_write_while_app_reads(tmp_path):
    path = tmp_path / "runs.db"
    app = Store(path)
    runs = [app.create_run(SPEC, "agd"), app.create_run(SPEC, "adam")]
    batches = 60
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(r), str(batches)],
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for r in runs
    ]
    seen = {r: [] for r in runs}
    last = {r: None for r in runs}
    polls = 0
    deadline = time.time() + 60
    while any(w.poll() is None for w in writers) and time.time() < deadline:
        for r in runs:  # the app's fragment: incremental reads plus a progress query
            new = app.metrics(r, since_step=last[r])
            app.layer_metrics(r, since_step=last[r])
            if len(new):
                seen[r] += new["step"].tolist()
                last[r] = int(new["step"].iloc[-1])
        app.progress(runs)
        app.create_group("compare", f"poll {polls}", {})  # the app writes too
        polls += 1
    outputs = [w.communicate(timeout=30) for w in writers]
    for w, (out, err) in zip(writers, outputs):
        assert w.returncode == 0, err
        assert "locked" not in err
    for r in runs:
        seen[r] += app.metrics(r, since_step=last[r])["step"].tolist()
        assert seen[r] == list(range(batches * 5))  # every row exactly once, in order
        assert app.get_run(r)["status"] == "finished"
        assert app.progress([r])[r]["step"] == batches * 5 - 1
        assert len(app.layer_metrics(r)) == batches * 5 * 8
    assert polls > 1
    app.close()


def test_a_second_store_in_the_app_does_not_let_a_worker_delete_the_wal(tmp_path):
    """Regression: opening a second Store once read the file header with open()/close(), which
    drops every POSIX lock this process holds on the file, SQLite's included. A worker closing its
    connection then took itself for the last one and deleted the WAL under the app's open
    connections: later writes were lost and reads failed with "disk I/O error"."""
    path = tmp_path / "runs.db"
    app = Store(path)  # e.g. the job manager's store
    app.create_run(SPEC, "agd")
    page = Store(path)  # e.g. a page's store, in the same server process
    code = "import sys; from agd_viz.store import Store; s = Store(sys.argv[1]); s.create_run({}, 'sgd'); s.close()"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code, str(path)], env=env, cwd=REPO, check=True, timeout=60)
    app.create_run(SPEC, "adam")
    with Store(path) as fresh:  # what a restarted app would read
        assert sorted(r["optimizer"] for r in fresh.list_runs()) == ["adam", "agd", "sgd"]
    assert len(page.list_runs()) == 3
    page.close()
    app.close()


def test_one_store_shared_by_threads(store):
    runs = [store.create_run(SPEC, "agd") for _ in range(2)]
    errors = []

    def write(rid):
        try:
            for k in range(0, 100, 5):
                store.append_metrics(rid, [step_record(k + i) for i in range(5)], progress={})
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def read():
        try:
            for _ in range(30):
                store.metrics_many(runs)
                store.layer_metrics(runs[0])
                store.list_runs()
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=write, args=(r,)) for r in runs]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [len(store.metrics(r)) for r in runs] == [100, 100]


def test_default_db_path(tmp_path, monkeypatch):
    monkeypatch.delenv("AGD_VIZ_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_db_path() == tmp_path / "agd_viz_runs.db"
    monkeypatch.setenv("AGD_VIZ_DB", str(tmp_path / "elsewhere.db"))
    assert default_db_path() == tmp_path / "elsewhere.db"
    with Store() as s:
        assert s.path == tmp_path / "elsewhere.db"
    assert (tmp_path / "elsewhere.db").exists()


def test_layer_metrics_read_time_10k_steps_32_layers(store, capsys):
    rid = store.create_run(SPEC, "agd")
    rng = np.random.default_rng(0)
    values = rng.random((10_000, len(LAYER_METRICS), 32), dtype=np.float32)
    for lo in range(0, 10_000, 2_000):
        store.append_metrics(
            rid,
            [{"step": k, "t": k * 0.01, "loss": 1.0,
              "layers": dict(zip(LAYER_METRICS, values[k]))} for k in range(lo, lo + 2_000)],
        )  # fmt: skip
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        lm = store.layer_metrics(rid)
        times.append(time.perf_counter() - t0)
    assert lm.shape == (10_000 * 32, 3 + len(LAYER_METRICS))
    np.testing.assert_array_equal(lm["g_fro"].to_numpy()[:32], values[0, 4])
    with capsys.disabled():
        print(f"\nlayer_metrics 10k steps x 32 layers: best {min(times) * 1e3:.0f} ms "
              f"of {len(times)} reads")  # fmt: skip


def test_a_version_3_file_gains_the_update_stable_rank_column(tmp_path):
    """v4 adds `u_srank`; rows written before it read as NaN, new rows keep it."""
    path = tmp_path / "runs.db"
    v1_file(path)
    conn = sqlite3.connect(path, isolation_level=None)
    for version in (1, 2):
        for sql in store_mod.MIGRATIONS[version]:
            conn.execute(sql)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("UPDATE metrics SET w_fro = ? WHERE step = 1", (np.float32([1.0, 2.0]).tobytes(),))
    conn.close()
    with Store(path) as s:
        old = s.layer_metrics(1)
        assert old["w_fro"].tolist() == [1.0, 2.0] and old["u_srank"].isna().all()
        s.append_metrics(1, [{"step": 2, "layers": {"w_fro": [1.0, 1.0], "u_srank": [3.0, 1.5]}}])
        assert s.layer_metrics(1, since_step=1)["u_srank"].tolist() == [3.0, 1.5]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    conn.close()
