"""Downloadable image datasets: MNIST, Fashion-MNIST and CIFAR-10, fetched only when asked.

`download(name, cache_dir=None, progress=None, base_url=None)` fetches a dataset's published files into
the cache (env AGD_VIZ_DATA, else ~/.cache/agd_viz) and checks each against the MD5 its publisher
lists. A file that fails the check is deleted, never cached. Nothing here touches the network unless
`download` is called: `read(name)` before a download raises `NotDownloadedError`, which says how to
download.

`read(name)` returns the official train/test split as numpy arrays: flat rows of pixel bytes and
their labels. The formats need no pickle: MNIST and Fashion-MNIST are gzipped IDX files (a big-endian
header of dimensions, then unsigned bytes); CIFAR-10 is read from its binary distribution, records of
one label byte and 3072 pixel bytes (R, G and B planes of 32x32), straight out of the tarball.

No torch, and nothing of agd_viz above it (docs/architecture.md): `agd_viz.datasets` reads the files
through this module and prepares them like every other dataset.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import math
import os
import socket
import struct
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "ENV_DIR",
    "SOURCES",
    "DownloadError",
    "NotDownloadedError",
    "RemoteFile",
    "Source",
    "cache_root",
    "damaged_files",
    "dataset_dir",
    "download",
    "download_command",
    "download_source",
    "is_downloaded",
    "missing_files",
    "read",
    "status",
]

ENV_DIR = "AGD_VIZ_DATA"
_CHUNK = 1 << 18
_PROGRESS_EVERY_S = 0.1  # a UI progress bar redrawn per 256 KB chunk would cost more than the download

Progress = Callable[[int, int, str], None]


class DownloadError(Exception):
    """A file could not be fetched intact; the message names the file and every URL tried."""


class NotDownloadedError(ValueError):
    """A downloadable dataset was loaded before it was downloaded."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    md5: str  # as published with the dataset
    size: int  # bytes; tells a truncated transfer from a corrupt one


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]  # base URLs tried in order; the file name is appended

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def _idx_files(sizes: tuple[int, int, int, int], md5s: tuple[str, str, str, str]) -> tuple[RemoteFile, ...]:
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return tuple(RemoteFile(n, m, s) for n, m, s in zip(names, md5s, sizes))


# Checksums are the ones the datasets' publishers list (the same ones torchvision checks).
SOURCES: dict[str, Source] = {
    "mnist": Source(
        "mnist", "MNIST",
        _idx_files((9912422, 28881, 1648877, 4542),
                   ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
        ("https://ossci-datasets.s3.amazonaws.com/mnist/",
         "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    ),
    "fashion-mnist": Source(
        "fashion-mnist", "Fashion-MNIST",
        _idx_files((26421880, 29515, 4422102, 5148),
                   ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
         "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    ),
    "cifar10": Source(
        "cifar10", "CIFAR-10",
        (RemoteFile("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", 170052171),),
        ("https://www.cs.toronto.edu/~kriz/",),
    ),
}


# --------------------------------------------------------------------------------------------------
# Where files live
# --------------------------------------------------------------------------------------------------


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir` if given, else $AGD_VIZ_DATA, else ~/.cache/agd_viz (read at call time)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "agd_viz"


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise ValueError(f"no downloadable dataset {name!r}; available: {', '.join(SOURCES)}")
    return SOURCES[name]


def dataset_dir(name: str, cache_dir=None) -> Path:
    return cache_root(cache_dir) / _source(name).name


def missing_files(name: str, cache_dir=None) -> list[str]:
    """Files of `name` not in the cache yet (a cached file passed its checksum when it was stored)."""
    folder = dataset_dir(name, cache_dir)
    return [f.name for f in _source(name).files if not (folder / f.name).is_file()]


def is_downloaded(name: str, cache_dir=None) -> bool:
    return not missing_files(name, cache_dir)


# (path, size, mtime_ns) -> whether the file matched its published MD5: a page asks on every rerun,
# and hashing CIFAR-10's 170 MB takes a third of a second; a file changed since is hashed again.
_CHECKED: dict[tuple[str, int, int], bool] = {}


def damaged_files(name: str, cache_dir=None) -> list[str]:
    """Files of `name` in the cache that no longer match their published checksum (truncated or
    altered on disk since the download): the app offers to fetch them again."""
    folder = dataset_dir(name, cache_dir)
    bad = []
    for remote in _source(name).files:
        path = folder / remote.name
        try:
            st = path.stat()
        except OSError:
            continue  # missing, not damaged
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in _CHECKED:
            try:
                _CHECKED[key] = st.st_size == remote.size and _md5_file(path) == remote.md5
            except OSError:
                _CHECKED[key] = False
        if not _CHECKED[key]:
            bad.append(remote.name)
    return bad


def download_command(name: str) -> str:
    return f"python -m agd_viz download {name}"


def status(cache_dir=None) -> list[dict]:
    """One row per downloadable dataset: name, title, size_bytes, downloaded, path (for the UI and CLI)."""
    return [
        {"name": s.name, "title": s.title, "size_bytes": s.size,
         "downloaded": is_downloaded(s.name, cache_dir), "path": str(dataset_dir(s.name, cache_dir))}
        for s in SOURCES.values()
    ]


# --------------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------------


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # integrity against the published MD5, not security
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Integrity(Exception):
    """The bytes arrived but are not the published file (truncated or altered)."""


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host name could not be resolved"
    return str(getattr(exc, "strerror", None) or exc) or type(exc).__name__


def _fetch(url: str, dest: Path, remote: RemoteFile, on_bytes: Callable[[int], None], timeout: float) -> None:
    """Stream `url` into a temporary file beside `dest`, check it, then move it into place atomically.

    Any failure removes the temporary file, so the cache only ever holds verified files.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{remote.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        got = 0
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                declared = resp.headers.get("Content-Length")
                while True:
                    try:
                        chunk = resp.read(_CHUNK)
                    except http.client.IncompleteRead as exc:
                        chunk = exc.partial
                        out.write(chunk)
                        got += len(chunk)
                        raise _Integrity(f"truncated: the connection closed after {got:,} bytes") from None
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    got += len(chunk)
                    on_bytes(len(chunk))
        # http.client returns short reads silently when a server closes early: compare with the header.
        if declared is not None and declared.isdigit() and got < int(declared):
            raise _Integrity(f"truncated: received {got:,} of the {int(declared):,} bytes announced")
        if digest.hexdigest() != remote.md5:
            if got < remote.size:
                raise _Integrity(f"truncated: received {got:,} bytes, the published file has {remote.size:,}")
            raise _Integrity(f"checksum mismatch: MD5 {digest.hexdigest()}, expected {remote.md5}")
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def download_source(source: Source, cache_dir=None, progress: Progress | None = None,
                    base_url: str | None = None, timeout: float = 30.0) -> Path:
    """Fetch every file of `source` not yet cached (or cached but failing its checksum).

    Mirrors are tried in order; `base_url` replaces them (a local mirror, a file:// folder).
    `progress(done_bytes, total_bytes, message)` is called a few times a second and once at the end.
    Returns the dataset's folder. Raises DownloadError naming the file and each URL tried.
    """
    folder = cache_root(cache_dir) / source.name
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    todo = []
    for remote in source.files:
        path = folder / remote.name
        if path.is_file() and _md5_file(path) == remote.md5:
            continue
        todo.append(remote)
    total = sum(r.size for r in todo)
    done = 0
    last_report = 0.0
    message = f"{source.title}: up to date"

    def report(force: bool = False) -> None:
        nonlocal last_report
        now = time.monotonic()
        if progress is not None and (force or now - last_report >= _PROGRESS_EVERY_S):
            last_report = now
            progress(done, max(total, done), message)

    mirrors = (base_url,) if base_url else source.mirrors
    try:
        for i, remote in enumerate(todo, 1):
            message = f"{source.title}: {remote.name} ({i}/{len(todo)})"
            report(force=True)
            start = done
            failures = []
            for mirror in mirrors:
                url = mirror.rstrip("/") + "/" + remote.name
                done = start

                def on_bytes(n: int) -> None:
                    nonlocal done
                    done += n
                    report()

                try:
                    _fetch(url, folder / remote.name, remote, on_bytes, timeout)
                    break
                except _Integrity as exc:
                    failures.append(f"{url}: {exc}")
                except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
                    failures.append(f"{url}: {_reason(exc, timeout)}")
            else:
                tried = "; ".join(failures)
                raise DownloadError(
                    f"could not download {remote.name} for {source.title} ({tried}). Check the network "
                    f"connection, or place the file by hand in {folder} (it is checked against MD5 "
                    f"{remote.md5})."
                )
            done = start + remote.size
        message = f"{source.title}: done"
        report(force=True)
    finally:
        if created and not any(folder.iterdir()):
            folder.rmdir()  # a failed first download leaves nothing behind
    return folder


def download(name: str, cache_dir=None, progress: Progress | None = None,
             base_url: str | None = None, timeout: float = 30.0) -> Path:
    """Download dataset `name` ("mnist", "fashion-mnist", "cifar10") into the cache; see download_source."""
    return download_source(_source(name), cache_dir, progress, base_url, timeout)


# --------------------------------------------------------------------------------------------------
# Reading the files
# --------------------------------------------------------------------------------------------------


def _corrupt(path: Path, name: str, detail: str) -> ValueError:
    return ValueError(
        f"{path} is truncated or corrupt ({detail}); delete it and download again: {download_command(name)}"
    )


def _require(name: str, cache_dir=None) -> Path:
    folder = dataset_dir(name, cache_dir)
    missing = missing_files(name, cache_dir)
    if missing:
        size_mb = _source(name).size / 1e6
        raise NotDownloadedError(
            f"dataset {name!r} is not downloaded yet: run `{download_command(name)}` "
            f"(about {size_mb:.0f} MB) or press Download in the app; looked in {folder} for {', '.join(missing)}."
        )
    return folder


def _read_idx(path: Path, name: str, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes: magic 0x00 0x00 0x08 ndim, ndim big-endian uint32 sizes, data."""
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (EOFError, OSError, zlib.error) as exc:
        raise _corrupt(path, name, str(exc) or type(exc).__name__) from None
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise _corrupt(path, name, f"not an IDX file of {ndim}-D unsigned bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = math.prod(dims)
    if len(raw) - header != count:
        raise _corrupt(path, name, f"{len(raw) - header:,} data bytes where the header promises {count:,}")
    return np.frombuffer(raw, dtype=np.uint8, count=count, offset=header).reshape(dims)


def _read_idx_pair(folder: Path, name: str, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz", name, 3)
    labels = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", name, 1)
    if images.shape[0] != labels.shape[0]:
        raise _corrupt(folder / f"{prefix}-labels-idx1-ubyte.gz", name,
                       f"{labels.shape[0]:,} labels for {images.shape[0]:,} images")
    return images.reshape(images.shape[0], -1), labels


def _read_idx_dataset(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (*_read_idx_pair(folder, name, "train"), *_read_idx_pair(folder, name, "t10k"))


_CIFAR_RECORD = 1 + 3 * 32 * 32
_CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST = "test_batch.bin"


def _read_cifar(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The six batch files of the binary tarball, read in one streaming pass (nothing is extracted)."""
    path = folder / _source(name).files[0].name
    wanted = set(_CIFAR_TRAIN) | {_CIFAR_TEST}
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted:
                    blobs[base] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise _corrupt(path, name, str(exc) or type(exc).__name__) from None
    missing = sorted(wanted - set(blobs))
    if missing:
        raise _corrupt(path, name, f"the archive lacks {', '.join(missing)}")

    def records(base: str) -> tuple[np.ndarray, np.ndarray]:
        raw = blobs[base]
        if not raw or len(raw) % _CIFAR_RECORD:
            raise _corrupt(path, name, f"{base} holds {len(raw):,} bytes, not whole {_CIFAR_RECORD}-byte records")
        rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
        return rec[:, 1:], rec[:, 0]

    train = [records(b) for b in _CIFAR_TRAIN]
    x_test, y_test = records(_CIFAR_TEST)
    return np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test


# How each source's files are laid out; keyed by name so a test may swap a source's mirrors and
# checksums without saying how to read it.
_READERS = {"mnist": _read_idx_dataset, "fashion-mnist": _read_idx_dataset, "cifar10": _read_cifar}


def read(name: str, cache_dir=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The official split of a downloaded dataset: (x_train, y_train, x_test, y_test), uint8.

    Each x row is one image's pixel bytes, flattened channel, height, width (MNIST 784, CIFAR-10
    3072); y holds the class indices. Raises NotDownloadedError (saying how to download) when a
    file is missing, ValueError naming the file when one is truncated or corrupt.
    """
    folder = _require(name, cache_dir)
    return _READERS[name](folder, name)
