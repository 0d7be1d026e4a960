"""SQLite run store: groups of runs, runs, the metric stream of each run, and its frames (arrays
a worker computed for a picture, e.g. a 2-D model's decision boundary).

One database file in WAL mode. A worker process appends metrics while the app process reads them:
WAL lets readers proceed during a write, and every write takes the write lock up front
(`BEGIN IMMEDIATE`) so that two writers queue on `busy_timeout` instead of failing with
"database is locked" when a read transaction tries to upgrade. WAL needs a local filesystem
(shared memory); on a network share SQLite's locking is not reliable.

A `Store` holds one connection guarded by a lock, so the Streamlit server can share one `Store`
across its threads. Each process opens its own `Store`.

Per-layer metrics (one value per weight matrix) are stored as little-endian float32 BLOBs, one per
metric name and step, so that reading 10k steps x 32 layers is a handful of `np.frombuffer` calls
instead of 2 million rows.

Frames are numpy arrays by (run, kind, step), each stored as one `np.savez_compressed` blob and read
back with `allow_pickle=False`: a frame is data, never code.

Ownership (schema v3): a group and its runs record the `owner` that started them (a browser
session's owner id, hashed from a token the browser keeps; None for the command line), so the job
manager can refuse to stop or delete someone else's work; `job` names the first run of the worker
job a run was trained in (its log file is named after it).

A store can stop being usable while a server holds it: the file turned read-only, or deleted or
replaced under it. `problem()` says so in one sentence (no path: pages show it to everyone); a file
that is read-only when opened is opened read-only, so reading it creates nothing beside it.

This module must stay light (sqlite3, json, numpy, pandas, and `agd_viz.optspec` for run labels):
the app imports it on every page. It imports nothing of agd_viz above it (docs/architecture.md).
"""

from __future__ import annotations

import io
import json
import math
import os
import sqlite3
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agd_viz import optspec

__all__ = [
    "Store",
    "StoreError",
    "default_db_path",
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "QUEUED",
    "RUNNING",
    "FINISHED",
    "FAILED",
    "CANCELLED",
    "DIVERGED",
    "INTERRUPTED",
    "STATUSES",
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "SCALAR_METRICS",
    "LAYER_METRICS",
    "FRAME_BOUNDARY",
    "FRAME_BOUNDARY_GRID",
]

# "AGDV" in ASCII: tells our files from any other SQLite database without guessing from tables.
APPLICATION_ID = 0x41474456
SCHEMA_VERSION = 4

QUEUED = "queued"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CANCELLED = "cancelled"
DIVERGED = "diverged"
INTERRUPTED = "interrupted"
STATUSES = (QUEUED, RUNNING, FINISHED, FAILED, CANCELLED, DIVERGED, INTERRUPTED)
ACTIVE_STATUSES = (QUEUED, RUNNING)
FINAL_STATUSES = (FINISHED, FAILED, CANCELLED, DIVERGED, INTERRUPTED)

SCALAR_METRICS = (
    "loss", "acc", "train_loss", "train_acc", "test_loss", "test_acc", "eta", "G", "lr"
)  # fmt: skip
LAYER_METRICS = ("w_fro", "w_spec", "w_srank", "w_spec_scaled", "g_fro", "g_srank", "rel_update",
                 "u_srank")

# Kinds of frames the worker writes. A decision boundary: one "boundary" frame per picture,
# {"probs": uint8 (ny, nx, classes), softmax × 255}, and once per run a "boundary_grid" frame at
# step 0, {"x": (nx,), "y": (ny,), "points": (n, 2), "labels": (n,), "classes": (classes,) str}.
FRAME_BOUNDARY = "boundary"
FRAME_BOUNDARY_GRID = "boundary_grid"

ENV_DB = "AGD_VIZ_DB"
DEFAULT_DB_NAME = "agd_viz_runs.db"
INTERRUPTED_MESSAGE = "The app stopped before this run finished."

_SQLITE_MAGIC = b"SQLite format 3\x00"
_F32 = np.dtype("<f4")  # fixed byte order so a file moved between machines reads the same

_RUN_COLUMNS = (
    "id", "group_id", "name", "optimizer", "label", "spec", "status", "created", "started", "ended",
    "error", "device", "pid", "summary", "step", "steps", "last_loss", "steps_per_s", "updated",
    "cancel_requested", "owner", "job",
)  # fmt: skip
_SETTABLE_RUN_FIELDS = frozenset(
    {"name", "label", "device", "pid", "started", "ended", "summary", "step", "steps", "last_loss",
     "steps_per_s", "cancel_requested", "job"}
)  # fmt: skip
_PROGRESS_FIELDS = frozenset({"step", "steps", "last_loss", "steps_per_s"})
_GROUP_COLUMNS = ("id", "kind", "name", "spec", "created", "owner")

# Migration k upgrades a file from schema version k to k + 1; version 0 is an empty file.
# Each entry is a sequence of SQL statements or a callable(conn); all steps of one open run in a
# single transaction, so a crash mid-migration leaves the file at its old version.
_SCHEMA_V1 = (
    """CREATE TABLE groups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        name TEXT,
        spec TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL
    )""",
    # AUTOINCREMENT: ids are never reused, so a page or worker holding the id of a deleted run can
    # never write into or show a different run.
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id INTEGER REFERENCES groups(id) ON DELETE CASCADE,
        name TEXT,
        optimizer TEXT NOT NULL,
        label TEXT,
        spec TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,
        created REAL NOT NULL,
        started REAL,
        ended REAL,
        error TEXT,
        device TEXT,
        pid INTEGER,
        summary TEXT,
        step INTEGER,
        steps INTEGER,
        last_loss REAL,
        steps_per_s REAL,
        updated REAL,
        cancel_requested INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX runs_status ON runs(status)",
    "CREATE INDEX runs_group ON runs(group_id)",
    """CREATE TABLE metrics (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        t REAL,
        loss REAL, acc REAL, train_loss REAL, train_acc REAL, test_loss REAL, test_acc REAL,
        eta REAL, G REAL, lr REAL,
        w_fro BLOB, w_spec BLOB, w_srank BLOB, w_spec_scaled BLOB, g_fro BLOB, g_srank BLOB,
        rel_update BLOB,
        PRIMARY KEY (run_id, step)
    ) WITHOUT ROWID""",
)
_FRAMES_V2 = (
    # A rowid table, not WITHOUT ROWID: its rows are blobs of kilobytes.
    """CREATE TABLE frames (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        step INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (run_id, kind, step)
    )""",
)
# Who started a group and its runs (module docstring), and the worker job a run was trained in.
# Runs stored before v3 have no owner: only an operator (or the command line) may stop or delete them.
_OWNER_V3 = (
    "ALTER TABLE groups ADD COLUMN owner TEXT",
    "ALTER TABLE runs ADD COLUMN owner TEXT",
    "ALTER TABLE runs ADD COLUMN job INTEGER",
    "CREATE INDEX groups_owner ON groups(owner)",
)
# The stable rank of each layer's update ΔW, ‖ΔW‖_F²/‖ΔW‖_*² (NULL in rows written before v4).
_UPDATE_SRANK_V4 = ("ALTER TABLE metrics ADD COLUMN u_srank BLOB",)
MIGRATIONS: dict[int, Sequence[str] | Callable[[sqlite3.Connection], None]] = {
    0: _SCHEMA_V1,
    1: _FRAMES_V2,
    2: _OWNER_V3,
    3: _UPDATE_SRANK_V4,
}

# What `Store.problem()` says; no path in them: every attendee's page shows them.
STORE_GONE = ("The run store file was deleted or replaced while the app was running, so no new run "
              "can be recorded until the server is restarted.")
STORE_READ_ONLY = ("The run store has become read-only, so new runs cannot start and running ones "
                   "cannot record their progress until it is writable again.")
# SQLite keeps integers in 64 bits: a larger id (a link's, the command line's) is no run at all.
_MAX_ID = 2**63 - 1


# Files this process holds open through a Store, by (device, inode) -> count. Closing *any*
# descriptor of a file drops every POSIX lock the process holds on it, SQLite's included; a worker
# closing its connection then believes it is the last one, checkpoints and deletes the WAL under
# this process's live connections (lost writes, "disk I/O error"). So the header is peeked at with
# Python's open() only while no Store of this process has the file open; otherwise it is known to
# be ours already.
_OPEN_FILES: dict[tuple[int, int], int] = {}
_OPEN_FILES_LOCK = threading.Lock()


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _forget_open_file(key: tuple[int, int] | None) -> None:
    if key is None:
        return
    with _OPEN_FILES_LOCK:
        left = _OPEN_FILES.get(key, 0) - 1
        if left > 0:
            _OPEN_FILES[key] = left
        else:
            _OPEN_FILES.pop(key, None)


class StoreError(Exception):
    """The database file cannot be used as a run store (foreign, corrupt, too new, unreadable)."""


def default_db_path() -> Path:
    """The store used when none is named: `$AGD_VIZ_DB` if set, else ./agd_viz_runs.db."""
    env = os.environ.get(ENV_DB)
    return Path(env) if env else Path.cwd() / DEFAULT_DB_NAME


# ----------------------------------------------------------------------------------------------
# value conversion


def _finite_or_none(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _jsonable(x: Any) -> Any:
    """Plain JSON: NaN/inf -> None (strict JSON has no NaN), numpy -> Python, tuples -> lists."""
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return _finite_or_none(x)
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    raise TypeError(f"cannot store a {type(x).__name__} in a run spec or summary: {x!r}")


def _dumps(x: Any) -> str:
    return json.dumps(_jsonable(x), allow_nan=False, separators=(",", ":"))


def _layer_blob(values: Any) -> bytes | None:
    arr = np.asarray(values, dtype=_F32).reshape(-1)  # None inside a list becomes NaN
    if arr.size == 0:
        return None
    if not np.isfinite(arr).all():
        arr = np.where(np.isfinite(arr), arr, np.float32("nan")).astype(_F32)
    return arr.tobytes()


def _attributes(rec: Any) -> Callable[[str], Any]:
    """`get(name)` for a record read by attribute (`train.Step`): None where it has none."""
    return lambda name: getattr(rec, name, None)


def _frame_blob(arrays: Mapping[str, Any]) -> bytes:
    named = {str(k): np.asarray(v) for k, v in arrays.items()}
    for k, v in named.items():
        if v.dtype.hasobject:  # would be pickled, and could not be read back without unpickling
            raise TypeError(f"frame array {k!r} holds Python objects; store numbers or strings")
    buf = io.BytesIO()
    np.savez_compressed(buf, **named)
    return buf.getvalue()


def _frame_arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:  # data only, never code
        return {k: npz[k] for k in npz.files}


def _as_spec_dict(spec: Any) -> dict:
    if hasattr(spec, "to_dict"):
        spec = spec.to_dict()
    if not isinstance(spec, Mapping):
        raise TypeError(f"spec must be a dict (RunSpec.to_dict()), got {type(spec).__name__}")
    return dict(spec)


def _id_list(ids: Iterable[int]) -> str:
    # A JSON array bound as one parameter and expanded with json_each(): one query for any number
    # of ids, no SQL built from values, no limit on bound variables.
    return json.dumps([int(i) for i in ids])


def _key(value: Any) -> int | None:
    """`value` as an id SQLite can hold, or None (no run or group can have it)."""
    try:
        i = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return i if -_MAX_ID <= i <= _MAX_ID else None


def _check_final(status: str) -> None:
    if status not in FINAL_STATUSES:
        raise ValueError(f"{status!r} is not a final status; valid: {', '.join(FINAL_STATUSES)}")


def _run_key(run_id: Any) -> int:
    key = _key(run_id)
    if key is None:
        raise KeyError(f"no run with id {run_id}")
    return key


def _eta_s(status: str, step: int | None, steps: int | None, steps_per_s: float | None):
    if status != RUNNING or step is None or steps is None or not steps_per_s or steps_per_s <= 0:
        return None
    return max(steps - step, 0) / steps_per_s


# ----------------------------------------------------------------------------------------------
# opening and migrating


def _identify(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(application_id, user_version, number of schema objects); reads only."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    n_objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    return app_id, version, n_objects


def _check_identity(path: Any, app_id: int, version: int, n_objects: int) -> None:
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path} was written by a newer agd_viz (schema version {version}; this version "
                f"reads up to {SCHEMA_VERSION}), so upgrade agd_viz or choose another file."
            )
        return
    if app_id == 0 and version == 0 and n_objects == 0:
        return  # an empty database: ours to initialise
    raise StoreError(
        f"{path} is an SQLite database of another application (application_id {app_id}, "
        f"{n_objects} schema objects), not an agd_viz run store, so it was left untouched."
    )


def _migrate(
    conn: sqlite3.Connection,
    from_version: int,
    to_version: int = SCHEMA_VERSION,
    migrations: Mapping[int, Sequence[str] | Callable[[sqlite3.Connection], None]] = MIGRATIONS,
) -> None:
    """Apply migrations[from_version .. to_version-1], stamp the file; caller holds the tx."""
    for v in range(from_version, to_version):
        step = migrations[v]
        if callable(step):
            step(conn)
        else:
            for sql in step:
                conn.execute(sql)
    conn.execute(f"PRAGMA application_id = {int(APPLICATION_ID)}")
    conn.execute(f"PRAGMA user_version = {int(to_version)}")


# ----------------------------------------------------------------------------------------------


class Store:
    """A run store in one SQLite file: `Store(path=None)`; path defaults to `default_db_path()`.

    Opening never modifies a file that is not ours: it is identified first (SQLite header, then
    PRAGMA application_id / user_version, then `PRAGMA quick_check` unless `verify=False`) and
    `StoreError` is raised for anything foreign, corrupt or newer. An empty or new file gets the
    schema; an older one of ours is migrated in place. `timeout` is SQLite's busy timeout: how long
    a write waits for another process's write to finish.
    """

    def __init__(
        self, path: str | os.PathLike | None = None, timeout: float = 10.0, verify: bool = True
    ):
        self.path = Path(path) if path is not None else default_db_path()
        self.timeout = float(timeout)
        self._lock = threading.RLock()
        self.read_only = False  # set by _open for a file this process may not write
        self._conn = self._open(verify)
        key = None if str(self.path) == ":memory:" else _file_key(self.path)
        self._opened_key = key  # to tell the file we opened from one put in its place later
        if key is not None:
            with _OPEN_FILES_LOCK:
                _OPEN_FILES[key] = _OPEN_FILES.get(key, 0) + 1
        # Runs on close() or, for a Store never closed, when it is garbage collected.
        self._forget = weakref.finalize(self, _forget_open_file, key)

    # -- lifecycle -----------------------------------------------------------------------------

    def _open(self, verify: bool) -> sqlite3.Connection:
        path = self.path
        memory = str(path) == ":memory:"
        if not memory:
            if path.is_dir():
                raise StoreError(f"{path} is a directory, not a run store file.")
            if path.exists() and not path.is_file():
                # /dev/null, a pipe: SQLite would write a -journal file beside it in /dev.
                raise StoreError(f"{path} is not a regular file, so it cannot be a run store.")
            key = _file_key(path)
            with _OPEN_FILES_LOCK:
                open_here = key is not None and _OPEN_FILES.get(key, 0) > 0
            if path.exists() and path.stat().st_size > 0 and not open_here:
                try:
                    with open(path, "rb") as f:
                        head = f.read(len(_SQLITE_MAGIC))
                except OSError as e:
                    raise StoreError(f"{path} cannot be read ({e.strerror or e}).") from e
                if head != _SQLITE_MAGIC:
                    raise StoreError(f"{path} is not an SQLite database, so it was left untouched.")
            elif not open_here:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.read_only = path.exists() and not os.access(path, os.W_OK)
        target, uri = (":memory:" if memory else str(path)), False
        if self.read_only:
            # A read-write open would fall back to read-only anyway, but first create -wal and -shm
            # files beside a file we may not change. Immutable (nothing created, no locks) when no
            # -wal holds commits that only a shared-memory reader would see.
            wal = path.with_name(path.name + "-wal")
            target = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
            target += "" if wal.exists() else "&immutable=1"
            uri = True
        try:
            conn = sqlite3.connect(
                target,
                timeout=self.timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # shared across Streamlit threads behind self._lock
                uri=uri,
            )
        except sqlite3.Error as e:
            raise StoreError(f"{path} cannot be opened ({e}).") from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            try:
                app_id, version, n_objects = _identify(conn)
            except sqlite3.OperationalError as e:
                if "locked" in str(e) or "busy" in str(e):
                    raise StoreError(
                        f"{path} stayed locked by another process for {self.timeout:g} s."
                    ) from e
                raise StoreError(f"{path} is corrupt or not an SQLite database ({e}).") from e
            except sqlite3.DatabaseError as e:
                raise StoreError(f"{path} is corrupt or not an SQLite database ({e}).") from e
            _check_identity(path, app_id, version, n_objects)
            if self.read_only and (n_objects == 0 or version < SCHEMA_VERSION):
                what = "empty" if n_objects == 0 else f"of an older agd_viz (schema version {version})"
                raise StoreError(f"{path} is read-only and {what}, so it cannot be used as a run store "
                                 "until it is writable.")
            if verify and n_objects:
                # Reads every page once (about 30 ms per 50 MB): a damaged metrics page is then
                # reported here, in one clear sentence, not as a failure in the middle of a run.
                try:
                    found = str(conn.execute("PRAGMA quick_check(1)").fetchone()[0])
                except sqlite3.DatabaseError as e:
                    found = str(e)
                if found != "ok":
                    found = " ".join(
                        ln.strip() for ln in found.splitlines() if not ln.startswith("***")
                    )
                    raise StoreError(f"{path} is corrupt ({found}), so it was left untouched.")

            if self.read_only:
                return conn
            # Only now, with the file known to be ours or empty, change anything about it.
            conn.execute("PRAGMA journal_mode = WAL")  # stays 'delete' where WAL is unsupported
            conn.execute("PRAGMA synchronous = NORMAL")  # in WAL: loses commits only on power loss
            conn.execute("PRAGMA foreign_keys = ON")
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Another process may have initialised or migrated it while we waited.
                    app_id, version, n_objects = _identify(conn)
                    _check_identity(path, app_id, version, n_objects)
                    if version < SCHEMA_VERSION:
                        _migrate(conn, version)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as e:
            conn.close()
            raise StoreError(f"{path} could not be opened as a run store ({e}).") from e
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        self._forget()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- health --------------------------------------------------------------------------------

    def problem(self) -> str | None:
        """Why no run can be recorded in this store now, as a sentence without its path
        (STORE_GONE, STORE_READ_ONLY), or None. A few system calls: cheap enough for every poll
        and page."""
        if str(self.path) == ":memory:":
            return None
        if self._opened_key is None or _file_key(self.path) != self._opened_key:
            return STORE_GONE  # our connection still reads the old file; nobody else would
        wal = self.path.with_name(self.path.name + "-wal")
        if (self.read_only or not os.access(self.path, os.W_OK)
                or (wal.exists() and not os.access(wal, os.W_OK))
                or not os.access(self.path.parent, os.W_OK | os.X_OK)):
            return STORE_READ_ONLY
        return None

    def save_copy(self, dest: str | os.PathLike) -> Path:
        """Write everything committed, as this connection sees it, to a new file `dest` (SQLite's
        VACUUM INTO): what a server still holds of a store file deleted under it."""
        dest = Path(dest)
        with self._lock:
            self._conn.execute("VACUUM INTO ?", (str(dest),))
        return dest

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _write(self):
        """One write transaction; takes the write lock at BEGIN so busy_timeout applies to it."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _snapshot(self):
        """A read transaction: several SELECTs see the same state of the file."""
        with self._lock:
            conn = self._conn
            nested = conn.in_transaction
            if not nested:
                conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if not nested and conn.in_transaction:
                    conn.execute("COMMIT")

    def _all(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    @staticmethod
    def _require_run(conn: sqlite3.Connection, run_id: int) -> None:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (int(run_id),)).fetchone() is None:
            raise KeyError(f"no run with id {run_id}")

    # -- groups ----------------------------------------------------------------------------------

    def create_group(self, kind: str, name: str | None = None, spec: Mapping | None = None,
                     owner: str | None = None) -> int:
        """A new group of runs ('compare', 'sweep', ...) started by `owner`; returns its id."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO groups (kind, name, spec, created, owner) VALUES (?, ?, ?, ?, ?)",
                (str(kind), name, _dumps(_as_spec_dict(spec or {})), time.time(), owner),
            )
            return int(cur.lastrowid)

    def _group_dicts(self, where: str, params: Sequence) -> list[dict]:
        rows = self._all(
            f"SELECT g.id, g.kind, g.name, g.spec, g.created, g.owner,"
            f" (SELECT json_group_array(id) FROM runs WHERE group_id = g.id)"
            f" FROM groups AS g {where} ORDER BY g.id DESC",
            params,
        )
        n = len(_GROUP_COLUMNS)
        out = []
        for row in rows:
            d = dict(zip(_GROUP_COLUMNS, row[:n]))
            d["spec"] = json.loads(d["spec"]) if d["spec"] else {}
            d["run_ids"] = sorted(json.loads(row[n]))
            d["n_runs"] = len(d["run_ids"])
            out.append(d)
        return out

    def get_group(self, group_id: int) -> dict | None:
        """The group row (spec decoded) plus `run_ids` and `n_runs`, or None."""
        key = _key(group_id)
        if key is None:
            return None
        found = self._group_dicts("WHERE g.id = ?", (key,))
        return found[0] if found else None

    def list_groups(self, kind: str | None = None, owner: str | None = None) -> list[dict]:
        """Groups, newest first, optionally of one kind and one owner; each as `get_group`
        returns it."""
        where, params = [], []
        if kind is not None:
            where.append("g.kind = ?")
            params.append(str(kind))
        if owner is not None:
            where.append("g.owner = ?")
            params.append(str(owner))
        return self._group_dicts(("WHERE " + " AND ".join(where)) if where else "", params)

    def delete_group(self, group_id: int) -> bool:
        """Delete a group with all its runs, their metrics and frames; False if there was no such
        group."""
        if _key(group_id) is None:
            return False
        with self._write() as conn:
            for table in ("metrics", "frames"):
                conn.execute(
                    f"DELETE FROM {table} WHERE run_id IN (SELECT id FROM runs WHERE group_id = ?)",
                    (int(group_id),),
                )
            conn.execute("DELETE FROM runs WHERE group_id = ?", (int(group_id),))
            return conn.execute("DELETE FROM groups WHERE id = ?", (int(group_id),)).rowcount > 0

    # -- runs ----------------------------------------------------------------------------------

    def create_run(
        self,
        spec: Mapping | Any,
        optimizer: str,
        group_id: int | None = None,
        name: str | None = None,
        status: str = QUEUED,
        label: str | None = None,
        owner: str | None = None,
        pid: int | None = None,
    ) -> int:
        """A new run row for one optimiser; `spec` is `RunSpec.to_dict()` (or a RunSpec); its id.
        `owner`: who started it (module docstring); `pid`: the process answering for it from the
        start (a server's for a queued run), so that no other server ever takes it for orphaned."""
        spec = _as_spec_dict(spec)
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; valid: {', '.join(STATUSES)}")
        optimizer = str(optimizer)
        label = label if label is not None else optspec.label(optimizer)
        if name is None:
            shape = (
                f" {spec['depth']}x{spec['width']}" if "depth" in spec and "width" in spec else ""
            )
            name = f"{label} · {spec.get('dataset', '?')}{shape}"
        steps = spec.get("steps")
        now = time.time()
        with self._write() as conn:
            if group_id is not None and conn.execute(
                "SELECT 1 FROM groups WHERE id = ?", (int(group_id),)
            ).fetchone() is None:
                raise KeyError(f"no group with id {group_id}")
            cur = conn.execute(
                "INSERT INTO runs (group_id, name, optimizer, label, spec, status, created, steps,"
                " updated, owner, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    None if group_id is None else int(group_id),
                    name,
                    optimizer,
                    label,
                    _dumps(spec),
                    status,
                    now,
                    None if steps is None else int(steps),
                    now,
                    owner,
                    None if pid is None else int(pid),
                ),
            )
            return int(cur.lastrowid)

    @staticmethod
    def _run_dict(row: Sequence) -> dict:
        d = dict(zip(_RUN_COLUMNS, row))
        d["spec"] = json.loads(d["spec"]) if d["spec"] else {}
        d["summary"] = json.loads(d["summary"]) if d["summary"] else None
        d["cancel_requested"] = bool(d["cancel_requested"])
        d["last_loss"] = math.nan if d["last_loss"] is None else d["last_loss"]
        spec = d["spec"]
        for key in ("dataset", "depth", "width", "arch", "seed", "batch_size"):
            d[key] = spec.get(key)
        d["eta_s"] = _eta_s(d["status"], d["step"], d["steps"], d["steps_per_s"])
        return d

    def get_run(self, run_id: int) -> dict | None:
        """The run row as a dict (spec and summary decoded, plus dataset/depth/width/arch/seed/
        batch_size from the spec and eta_s), or None."""
        key = _key(run_id)
        if key is None:
            return None
        rows = self._all(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE id = ?", (key,))
        return self._run_dict(rows[0]) if rows else None

    def list_runs(
        self,
        status: str | Iterable[str] | None = None,
        dataset: str | None = None,
        optimizer: str | None = None,
        group_id: int | None = None,
        limit: int | None = None,
    ) -> list[dict]:
        """Runs, newest first, as `get_run` returns them.

        `status`: one status or several; `optimizer`: a full spec string ('adam:lr=1e-3') or a bare
        name ('adam') that matches every run of that optimiser.
        """
        where, params = [], []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append("status IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(statuses))
        if dataset is not None:
            where.append("json_extract(spec, '$.dataset') = ?")
            params.append(str(dataset))
        if optimizer is not None:
            where.append("(optimizer = ? OR substr(optimizer, 1, ?) = ?)")
            params += [str(optimizer), len(optimizer) + 1, f"{optimizer}:"]
        if group_id is not None:
            where.append("group_id = ?")
            params.append(_key(group_id))  # None for an impossible id: matches nothing
        sql = f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [self._run_dict(r) for r in self._all(sql, params)]

    def set_status(self, run_id: int, status: str, error: str | None = None, **fields) -> None:
        """Set a run's status (and `error` if given, and any of `name, label, device, pid, started,
        ended, summary, step, steps, last_loss, steps_per_s, cancel_requested`).

        A final status stamps `ended` unless given; `running` stamps `started` if unset.
        """
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; valid: {', '.join(STATUSES)}")
        unknown = set(fields) - _SETTABLE_RUN_FIELDS
        if unknown:
            raise ValueError(
                f"cannot set run field(s) {', '.join(sorted(unknown))}; "
                f"settable: {', '.join(sorted(_SETTABLE_RUN_FIELDS))}"
            )
        now = time.time()
        values: dict[str, Any] = {"status": status, "updated": now}
        if error is not None:
            values["error"] = str(error)
        if status in FINAL_STATUSES and "ended" not in fields:
            values["ended"] = now
        for key, v in fields.items():
            if key == "summary":
                v = None if v is None else _dumps(v)
            elif key == "cancel_requested":
                v = int(bool(v))
            elif key == "last_loss":
                v = _finite_or_none(v)
            values[key] = v
        assignments = [f"{k} = ?" for k in values]
        if status == RUNNING and "started" not in fields:
            assignments.append("started = COALESCE(started, ?)")
            params = [*values.values(), now]
        else:
            params = list(values.values())
        with self._write() as conn:
            cur = conn.execute(
                f"UPDATE runs SET {', '.join(assignments)} WHERE id = ?", (*params, _run_key(run_id))
            )
            if cur.rowcount == 0:
                raise KeyError(f"no run with id {run_id}")

    def start_run(self, run_id: int, device: str | None = None, pid: int | None = None) -> None:
        """Mark a run running on `device` in process `pid` (now = started)."""
        now = time.time()
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, started = ?, updated = ?, device = ?, pid = ?,"
                " ended = NULL WHERE id = ?",
                (RUNNING, now, now, device, None if pid is None else int(pid), int(run_id)),
            )
            if cur.rowcount == 0:
                raise KeyError(f"no run with id {run_id}")

    def finish_run(
        self, run_id: int, status: str, summary: Mapping | None = None, error: str | None = None
    ) -> None:
        """End a run with a final status, its summary and error (now = ended)."""
        _check_final(status)
        now = time.time()
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, ended = ?, updated = ?, summary = ?, error = ?"
                " WHERE id = ?",
                (
                    status,
                    now,
                    now,
                    None if summary is None else _dumps(summary),
                    None if error is None else str(error),
                    int(run_id),
                ),
            )
            if cur.rowcount == 0:
                raise KeyError(f"no run with id {run_id}")

    def delete_run(self, run_id: int) -> bool:
        """Delete a run, its metrics and frames (a live worker's next write then raises KeyError)."""
        if _key(run_id) is None:
            return False
        with self._write() as conn:
            conn.execute("DELETE FROM metrics WHERE run_id = ?", (int(run_id),))
            conn.execute("DELETE FROM frames WHERE run_id = ?", (int(run_id),))
            return conn.execute("DELETE FROM runs WHERE id = ?", (int(run_id),)).rowcount > 0

    def clear_metrics(self, run_id: int) -> None:
        """Delete a run's metrics and frames and reset its progress, keeping the run: a run trained
        again from step 0 (a cluster job whose node died) must not mix two attempts' values."""
        with self._write() as conn:
            self._require_run(conn, run_id)
            conn.execute("DELETE FROM metrics WHERE run_id = ?", (int(run_id),))
            conn.execute("DELETE FROM frames WHERE run_id = ?", (int(run_id),))
            conn.execute(
                "UPDATE runs SET step = NULL, last_loss = NULL, steps_per_s = NULL, updated = ?"
                " WHERE id = ?", (time.time(), int(run_id)),
            )

    def request_cancel(self, run_id: int) -> bool:
        """Ask the run's worker to stop; False if there is no such run."""
        if _key(run_id) is None:
            return False
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET cancel_requested = 1 WHERE id = ?", (int(run_id),)
            )
            return cur.rowcount > 0

    def cancel_requested(self, run_id: int) -> bool:
        """True if cancel was requested, and also if the run was deleted: its worker should stop."""
        key = _key(run_id)
        rows = [] if key is None else self._all("SELECT cancel_requested FROM runs WHERE id = ?", (key,))
        return not rows or bool(rows[0][0])

    def cancel_flags(self, run_ids: Iterable[int]) -> set[int]:
        """Of `run_ids`, those flagged for cancelling or no longer in the store (one query)."""
        ids = [int(i) for i in run_ids]
        rows = self._all(
            "SELECT id, cancel_requested FROM runs WHERE id IN (SELECT value FROM json_each(?))",
            (_id_list(ids),),
        )
        present = {rid: bool(flag) for rid, flag in rows}
        return {i for i in ids if present.get(i, True)}

    def end_if_unchanged(self, run_id: int, status: str, pid: int | None, new_status: str,
                         error: str) -> bool:
        """End a run with `new_status` and `error` only if it is still `status` and owned by `pid`
        (None: no pid), in one statement: a liveness check that judged the run ownerless never
        overwrites an end its owner wrote meanwhile. Whether it was ended."""
        _check_final(new_status)
        now = time.time()
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, ended = ?, updated = ?, error = ?"
                " WHERE id = ? AND status = ? AND pid IS ?",
                (new_status, now, now, str(error), _run_key(run_id), status,
                 None if pid is None else int(pid)),
            )
            return cur.rowcount > 0

    def set_job(self, run_ids: Iterable[int]) -> None:
        """Record that `run_ids` train in one worker job, named after the first of them."""
        ids = [int(i) for i in run_ids]
        if not ids:
            return
        with self._write() as conn:
            conn.execute("UPDATE runs SET job = ? WHERE id IN (SELECT value FROM json_each(?))",
                         (ids[0], _id_list(ids)))

    def job_in_use(self, job: int) -> bool:
        """Whether any run in the store was trained in worker job `job` (or is run `job`)."""
        rows = self._all("SELECT 1 FROM runs WHERE job = ? OR id = ? LIMIT 1", (int(job), int(job)))
        return bool(rows)

    def mark_interrupted(
        self,
        statuses: Iterable[str] = (RUNNING, QUEUED),
        exclude_pids: Iterable[int] = (),
        stale_after: float | None = None,
    ) -> list[int]:
        """Mark runs that no live process will finish as `interrupted`; returns their ids.

        Used on app start: runs in `statuses` whose pid is not in `exclude_pids` (workers known
        alive) and, if `stale_after` is given, whose heartbeat (`updated`) is older than that many
        seconds.
        """
        excluded = {int(p) for p in exclude_pids}
        now = time.time()
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id, pid, updated FROM runs"
                " WHERE status IN (SELECT value FROM json_each(?)) ORDER BY id",
                (json.dumps(list(statuses)),),
            ).fetchall()
            ids = [
                rid
                for rid, pid, updated in rows
                if (pid is None or pid not in excluded)
                and (stale_after is None or updated is None or now - updated > stale_after)
            ]
            if ids:
                conn.execute(
                    "UPDATE runs SET status = ?, ended = ?, updated = ?,"
                    " error = COALESCE(error, ?) WHERE id IN (SELECT value FROM json_each(?))",
                    (INTERRUPTED, now, now, INTERRUPTED_MESSAGE, _id_list(ids)),
                )
        return ids

    def progress(self, run_ids: Iterable[int]) -> dict[int, dict]:
        """{run_id: {status, step, steps, last_loss, steps_per_s, eta_s, updated}} in one query;
        ids with no run are left out."""
        rows = self._all(
            "SELECT id, status, step, steps, last_loss, steps_per_s, updated FROM runs"
            " WHERE id IN (SELECT value FROM json_each(?))",
            (_id_list(run_ids),),
        )
        out = {}
        for rid, status, step, steps, last_loss, sps, updated in rows:
            out[rid] = {
                "status": status,
                "step": step,
                "steps": steps,
                "last_loss": math.nan if last_loss is None else last_loss,
                "steps_per_s": sps,
                "eta_s": _eta_s(status, step, steps, sps),
                "updated": updated,
            }
        return out

    # -- metrics -------------------------------------------------------------------------------

    def append_metrics(
        self, run_id: int, records: Iterable[Mapping | Any], progress: Mapping | None = None
    ) -> int:
        """Store step records in one transaction; returns how many were stored.

        A record is `train.Step` (read by attribute) or a dict `{"step", "t", <scalar names>,
        "layers": {name: [per layer]}}`. Replaces an existing (run, step). Unknown keys, dicts whose
        "type" is not "step" and objects without a `loss` (the other records of `train.run`) are
        ignored; NaN/inf become NULL (read back as NaN). With `progress` ({step, steps, last_loss,
        steps_per_s}, any subset; step and last_loss default to the last record's) the run's
        progress columns and heartbeat `updated` are set in the same transaction:
        `append_metrics(id, [], {})` is a heartbeat. Raises KeyError if the run no longer exists.
        """
        rows = []
        for rec in records:
            if isinstance(rec, Mapping):
                if rec.get("type", "step") != "step":
                    continue
                if "step" not in rec:
                    raise ValueError(f"metric record without 'step': {sorted(rec)}")
                get = rec.get
            elif hasattr(rec, "loss") and hasattr(rec, "step"):
                get = _attributes(rec)
            else:
                continue
            layers = get("layers") or {}
            rows.append(
                (
                    int(run_id),
                    int(get("step")),
                    _finite_or_none(get("t")),
                    *[_finite_or_none(get(k)) for k in SCALAR_METRICS],
                    *[
                        _layer_blob(layers[k]) if layers.get(k) is not None else None
                        for k in LAYER_METRICS
                    ],
                )
            )
        update = None
        if progress is not None:
            unknown = set(progress) - _PROGRESS_FIELDS
            if unknown:
                raise ValueError(
                    f"unknown progress field(s) {', '.join(sorted(unknown))}; "
                    f"valid: {', '.join(sorted(_PROGRESS_FIELDS))}"
                )
            p = dict(progress)
            if rows:
                p.setdefault("step", max(r[1] for r in rows))
                losses = [r[3] for r in rows if r[3] is not None]
                if losses:  # an eval-only row has no minibatch loss; keep the one before
                    p.setdefault("last_loss", losses[-1])
            if "last_loss" in p:
                p["last_loss"] = _finite_or_none(p["last_loss"])
            if "steps_per_s" in p:
                p["steps_per_s"] = _finite_or_none(p["steps_per_s"])
            p["updated"] = time.time()
            update = p
        placeholders = ", ".join("?" * (3 + len(SCALAR_METRICS) + len(LAYER_METRICS)))
        with self._write() as conn:
            self._require_run(conn, run_id)
            if rows:
                conn.executemany(
                    f"INSERT OR REPLACE INTO metrics (run_id, step, t, {', '.join(SCALAR_METRICS)},"
                    f" {', '.join(LAYER_METRICS)}) VALUES ({placeholders})",
                    rows,
                )
            if update:
                conn.execute(
                    f"UPDATE runs SET {', '.join(f'{k} = ?' for k in update)} WHERE id = ?",
                    (*update.values(), int(run_id)),
                )
        return len(rows)

    @staticmethod
    def _since(since_step: int | None) -> int:
        return -(2**62) if since_step is None else int(since_step)

    def _metrics(self, conn: sqlite3.Connection, run_id: int, since_step: int | None):
        cols = ("step", "t", *SCALAR_METRICS)
        rows = conn.execute(
            f"SELECT {', '.join(cols)} FROM metrics WHERE run_id = ? AND step > ? ORDER BY step",
            (int(run_id), self._since(since_step)),
        ).fetchall()
        # dtype=float turns SQL NULL (None) into NaN in C, without a Python loop over values.
        arr = np.array(rows, dtype=np.float64).reshape(len(rows), len(cols))
        df = pd.DataFrame(arr, columns=list(cols))
        df["step"] = df["step"].astype(np.int64)
        return df

    def metrics(self, run_id: int, since_step: int | None = None) -> pd.DataFrame:
        """Scalar metrics of steps > since_step, by step: columns step (int64), t, loss, acc,
        train_loss, train_acc, test_loss, test_acc, eta, G, lr (float64, NaN where not logged)."""
        with self._lock:
            return self._metrics(self._conn, run_id, since_step)

    def metrics_many(
        self, run_ids: Iterable[int], since: Mapping[int, int | None] | None = None
    ) -> dict[int, pd.DataFrame]:
        """`metrics` for several runs from one consistent snapshot; `since` maps run id -> step."""
        since = since or {}
        with self._snapshot() as conn:
            return {int(r): self._metrics(conn, r, since.get(r)) for r in run_ids}

    def layer_metrics(self, run_id: int, since_step: int | None = None) -> pd.DataFrame:
        """Per-layer metrics of steps > since_step that logged any, long format: step, t, layer
        (0-based index of the weight matrix), w_fro, w_spec, w_srank, w_spec_scaled, g_fro,
        g_srank, rel_update, u_srank (float64; NaN where a metric was not logged)."""
        blob_cols = ", ".join(LAYER_METRICS)
        any_layer = " OR ".join(f"{k} IS NOT NULL" for k in LAYER_METRICS)
        rows = self._all(
            f"SELECT step, t, {blob_cols} FROM metrics"
            f" WHERE run_id = ? AND step > ? AND ({any_layer}) ORDER BY step",
            (int(run_id), self._since(since_step)),
        )
        return _layer_frame(rows)

    # -- frames --------------------------------------------------------------------------------

    def put_frame(self, run_id: int, kind: str, step: int, arrays: Mapping[str, Any]) -> None:
        """Store named arrays as run `run_id`'s frame of `kind` at `step` (replacing one there);
        KeyError if the run no longer exists."""
        blob = _frame_blob(arrays)  # compressed outside the write lock
        with self._write() as conn:
            self._require_run(conn, run_id)
            conn.execute(
                "INSERT OR REPLACE INTO frames (run_id, kind, step, data) VALUES (?, ?, ?, ?)",
                (int(run_id), str(kind), int(step), blob),
            )

    def frames(
        self, run_id: int, kind: str, since_step: int | None = None
    ) -> list[tuple[int, dict[str, np.ndarray]]]:
        """Run `run_id`'s frames of `kind` at steps > since_step, by step: [(step, {name: array})]."""
        rows = self._all(
            "SELECT step, data FROM frames WHERE run_id = ? AND kind = ? AND step > ? ORDER BY step",
            (int(run_id), str(kind), self._since(since_step)),
        )
        return [(int(step), _frame_arrays(blob)) for step, blob in rows]

    def latest_frame(self, run_id: int, kind: str) -> tuple[int, dict[str, np.ndarray]] | None:
        """The frame of `kind` with the highest step, as (step, {name: array}), or None."""
        rows = self._all(
            "SELECT step, data FROM frames WHERE run_id = ? AND kind = ? ORDER BY step DESC LIMIT 1",
            (int(run_id), str(kind)),
        )
        return (int(rows[0][0]), _frame_arrays(rows[0][1])) if rows else None

    def frame_at(self, run_id: int, kind: str, step: int) -> tuple[int, dict[str, np.ndarray]] | None:
        """The last frame of `kind` at or before `step` (a replay's picture at that step), or None."""
        rows = self._all(
            "SELECT step, data FROM frames WHERE run_id = ? AND kind = ? AND step <= ?"
            " ORDER BY step DESC LIMIT 1",
            (int(run_id), str(kind), int(step)),
        )
        return (int(rows[0][0]), _frame_arrays(rows[0][1])) if rows else None

    def frame_steps(self, run_id: int, kind: str) -> list[int]:
        """The steps at which run `run_id` has a frame of `kind`, ascending (no blob is read)."""
        rows = self._all(
            "SELECT step FROM frames WHERE run_id = ? AND kind = ? ORDER BY step",
            (int(run_id), str(kind)),
        )
        return [int(r[0]) for r in rows]

    # -- export --------------------------------------------------------------------------------

    def export_run(self, run_id: int, fmt: str = "csv") -> str:
        """The run as text. csv: one row per step, scalar metrics then per-layer columns
        `w_fro[0]`, `w_fro[1]`, ...; json: {"run": row with spec, "metrics": [per step],
        "layers": {"step": [...], "t": [...], name: [[per layer] per step]}}, NaN as null."""
        if fmt not in ("csv", "json"):
            raise ValueError(f"unknown export format {fmt!r}; valid: csv, json")
        with self._snapshot():
            run = self.get_run(run_id)
            if run is None:
                raise KeyError(f"no run with id {run_id}")
            scalars = self.metrics(run_id)
            layers = self.layer_metrics(run_id)
        if fmt == "csv":
            wide = _wide_layers(layers)
            if not wide.empty:
                scalars = scalars.merge(wide, on="step", how="left")
            return scalars.to_csv(index=False, lineterminator="\n")
        layer_json: dict[str, Any] = {"step": [], "t": [], **{k: [] for k in LAYER_METRICS}}
        if not layers.empty:
            # rows arrive sorted by step; a new step starts wherever the step column changes
            bounds = np.flatnonzero(np.diff(layers["step"].to_numpy())) + 1
            starts = np.concatenate([[0], bounds])
            layer_json["step"] = layers["step"].to_numpy()[starts].tolist()
            layer_json["t"] = layers["t"].to_numpy()[starts].tolist()
            for k in LAYER_METRICS:
                layer_json[k] = [a.tolist() for a in np.split(layers[k].to_numpy(), bounds)]
        doc = {
            "format": "agd_viz.run",
            "version": 1,
            "run": run,
            "metrics": scalars.to_dict(orient="records"),
            "layers": layer_json,
        }
        return json.dumps(_jsonable(doc), allow_nan=False)


# ----------------------------------------------------------------------------------------------


def _layer_frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows of (step, t, one blob per LAYER_METRICS) -> the long per-layer frame, with numpy over whole columns."""
    n = len(rows)
    if n == 0:
        frame = pd.DataFrame(
            {"step": np.empty(0, np.int64), "t": np.empty(0), "layer": np.empty(0, np.int64)}
        )
        for k in LAYER_METRICS:
            frame[k] = np.empty(0)
        return frame
    columns = list(zip(*rows))
    steps = np.array(columns[0], dtype=np.int64)
    t = np.array(columns[1], dtype=np.float64)
    blobs = columns[2:]
    lengths = np.stack([_blob_lengths(col, n) for col in blobs]) // _F32.itemsize
    n_layers = lengths.max(axis=0)  # a step may lack some metrics (e.g. rel_update at step 0)
    total = int(n_layers.sum())
    starts = np.cumsum(n_layers) - n_layers  # offset of each step's first layer row
    data = {
        "step": np.repeat(steps, n_layers),
        "t": np.repeat(t, n_layers),
        "layer": np.arange(total, dtype=np.int64) - np.repeat(starts, n_layers),
    }
    nan_pad = np.full(int(n_layers.max()), np.nan, dtype=_F32).tobytes()
    for k, col, lens in zip(LAYER_METRICS, blobs, lengths):
        if np.array_equal(lens, n_layers):
            buf = b"".join(col)
        else:
            buf = b"".join(
                (b or b"") + nan_pad[: (int(m) - int(have)) * _F32.itemsize]
                for b, m, have in zip(col, n_layers, lens)
            )
        data[k] = np.frombuffer(buf, dtype=_F32).astype(np.float64)
    return pd.DataFrame(data)


def _blob_lengths(col: Sequence[bytes | None], n: int) -> np.ndarray:
    try:
        return np.fromiter(map(len, col), dtype=np.int64, count=n)  # fast path: no NULLs
    except TypeError:
        return np.fromiter((0 if b is None else len(b) for b in col), dtype=np.int64, count=n)


def _wide_layers(layers: pd.DataFrame) -> pd.DataFrame:
    """Long per-layer frame -> one row per step with columns `w_fro[0]`, ..., `u_srank[L-1]`."""
    if layers.empty:
        return pd.DataFrame({"step": np.empty(0, np.int64)})
    wide = layers.pivot(index="step", columns="layer", values=list(LAYER_METRICS))
    # float32 is the stored precision; writing it as such keeps "0.1" from becoming 0.10000000149.
    wide = wide.astype(np.float32)
    wide.columns = [f"{name}[{layer}]" for name, layer in wide.columns]
    return wide.reset_index()
