"""MNIST / Fashion-MNIST / CIFAR-10 downloads and loaders, on small files in the real formats.

The files are generated here (gzipped IDX, a CIFAR binary tarball) and served from a local HTTP
server on 127.0.0.1; nothing reaches the network.
"""

import gzip
import hashlib
import http.server
import io
import math
import socket
import struct
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest
import torch

from agd_viz import cli, data, datasets, downloads, train
from agd_viz.downloads import DownloadError, NotDownloadedError, RemoteFile, Source


# -- files in the published formats ------------------------------------------------------------


def idx_gz(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def mnist_files(n_train=30, n_test=10, seed=0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        out[f"{prefix}-images-idx3-ubyte.gz"] = idx_gz(images)
        out[f"{prefix}-labels-idx1-ubyte.gz"] = idx_gz(labels)
    return out


def cifar_tarball(per_batch=3, seed=0) -> tuple[bytes, dict[str, np.ndarray]]:
    """A cifar-10-binary.tar.gz with five tiny train batches and a test batch; returns the records too."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    records = {}
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
        for k, name in enumerate(names):
            rec = rng.integers(0, 256, (per_batch, 3073), dtype=np.uint8)
            rec[:, 0] = (np.arange(per_batch) + k) % 10
            records[name] = rec
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = rec.nbytes
            tar.addfile(info, io.BytesIO(rec.tobytes()))
    return buf.getvalue(), records


def source_for(name: str, files: dict[str, bytes], base: str) -> Source:
    real = downloads.SOURCES[name]
    remote = tuple(RemoteFile(n, hashlib.md5(files[n]).hexdigest(), len(files[n])) for n in (f.name for f in real.files))
    return Source(real.name, real.title, remote, (base,))


# -- a local server --------------------------------------------------------------------------------


class Server:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()  # announce the full length, send half, close
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append(name)
                body = outer.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in outer.cut else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(downloads.ENV_DIR, str(root))
    return root


def files_under(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) if path.exists() else []


# -- loading ---------------------------------------------------------------------------------------


def test_image_datasets_are_registered_but_load_only_after_a_download(cache):
    for name, shape in (("mnist", (1, 28, 28)), ("fashion-mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))):
        info = datasets.DATASETS[name]
        assert (info.input_kind, info.input_shape, info.task) == ("image", shape, "classification")
        assert info.downloadable and name in downloads.SOURCES
        assert not downloads.is_downloaded(name)
    assert set(datasets.DOWNLOADABLE) == set(downloads.SOURCES)
    with pytest.raises(NotDownloadedError, match=r"not downloaded yet: run `python -m agd_viz download mnist`"):
        data.load("mnist")
    with pytest.raises(NotDownloadedError, match=r"about 12 MB"):
        datasets.load_arrays("mnist")
    spec = train.RunSpec(dataset="cifar10")  # a spec may name it; training says what to do
    with pytest.raises(train.SpecError, match="python -m agd_viz download cifar10"):
        train.load_dataset(spec)
    assert files_under(cache) == []  # asking never downloads


def test_mnist_loader_reads_idx_files_and_prepares_inputs(cache):
    folder = cache / "mnist"
    folder.mkdir(parents=True)
    files = mnist_files(n_train=30, n_test=10)
    for name, body in files.items():
        (folder / name).write_bytes(body)
    ds = data.load("mnist")
    assert (ds.n_train, ds.n_test, ds.d_in, ds.d_out) == (30, 10, 784, 10)
    assert ds.input_shape == (1, 28, 28) and ds.input_kind == "image"
    assert ds.y_train.tolist() == [i % 10 for i in range(30)]
    torch.testing.assert_close(torch.linalg.vector_norm(ds.x_train, dim=1), torch.full((30,), 28.0))
    raw = np.frombuffer(gzip.decompress(files["t10k-images-idx3-ubyte.gz"])[16:], dtype=np.uint8).reshape(10, -1)
    torch.testing.assert_close(ds.transform(raw / 255.0), ds.x_test)  # same map, train mean

    small = data.load("mnist", seed=1, train_samples=12)
    again = data.load("mnist", seed=1, train_samples=12)
    assert small.n_train == 12 and torch.equal(small.x_train, again.x_train)
    assert not torch.equal(data.load("mnist", seed=2, train_samples=12).y_train, small.y_train)


def test_read_returns_the_official_split_as_bytes(cache):
    folder = cache / "mnist"
    folder.mkdir(parents=True)
    files = mnist_files(n_train=30, n_test=10)
    for name, body in files.items():
        (folder / name).write_bytes(body)
    x_train, y_train, x_test, y_test = downloads.read("mnist")
    assert x_train.dtype == np.uint8 and x_train.shape == (30, 784) and x_test.shape == (10, 784)
    raw = np.frombuffer(gzip.decompress(files["train-images-idx3-ubyte.gz"])[16:], dtype=np.uint8)
    np.testing.assert_array_equal(x_train, raw.reshape(30, 784))
    assert y_train.tolist() == [i % 10 for i in range(30)] and y_test.tolist() == list(range(10))


def test_downloads_imports_neither_torch_nor_the_loaders():
    code = ("import sys, agd_viz.downloads; "
            "print(sorted({'torch', 'agd_viz.data', 'agd_viz.datasets'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_cifar10_loader_reads_the_binary_tarball(cache):
    (cache / "cifar10").mkdir(parents=True)
    blob, records = cifar_tarball(per_batch=3)
    (cache / "cifar10" / "cifar-10-binary.tar.gz").write_bytes(blob)
    ds = data.load("cifar10")
    assert (ds.n_train, ds.n_test, ds.d_in, ds.input_shape) == (15, 3, 3072, (3, 32, 32))
    train_rec = np.concatenate([records[f"data_batch_{i}.bin"] for i in range(1, 6)])
    assert ds.y_train.tolist() == train_rec[:, 0].tolist()  # the label is the first byte of a record
    assert ds.classes[0] == "airplane"
    test_rec = records["test_batch.bin"]
    torch.testing.assert_close(ds.transform(test_rec[:, 1:] / 255.0), ds.x_test)


def test_truncated_cached_file_is_a_clear_error(cache):
    folder = cache / "mnist"
    folder.mkdir(parents=True)
    for name, body in mnist_files().items():
        (folder / name).write_bytes(body[: len(body) // 2] if "train-images" in name else body)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz is truncated or corrupt .*python -m agd_viz download mnist"):
        data.load("mnist")
    (cache / "cifar10").mkdir()
    blob, _ = cifar_tarball()
    (cache / "cifar10" / "cifar-10-binary.tar.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="cifar-10-binary.tar.gz is truncated or corrupt"):
        data.load("cifar10")


# -- downloading -----------------------------------------------------------------------------------


def test_download_verifies_caches_and_reports_progress(cache, server, monkeypatch):
    files = mnist_files()
    server.files.update(files)
    monkeypatch.setitem(downloads.SOURCES, "mnist", source_for("mnist", files, server.url))
    calls = []
    folder = downloads.download("mnist", progress=lambda done, total, msg: calls.append((done, total, msg)))
    assert folder == cache / "mnist"
    assert files_under(folder) == sorted(files)
    assert all((folder / n).read_bytes() == b for n, b in files.items())
    total = sum(len(b) for b in files.values())
    assert calls[-1] == (total, total, "MNIST: done")
    assert all(0 <= d <= t == total for d, t, _ in calls)
    assert downloads.is_downloaded("mnist") and data.load("mnist").n_train == 30

    server.requests.clear()
    downloads.download("mnist")  # verified files are not fetched again
    assert server.requests == []


def test_checksum_mismatch_is_refused_and_leaves_nothing(cache, server, monkeypatch):
    files = mnist_files()
    server.files.update(files)
    src = source_for("mnist", files, server.url)
    bad = RemoteFile(src.files[0].name, "0" * 32, src.files[0].size)
    monkeypatch.setitem(downloads.SOURCES, "mnist", Source(src.name, src.title, (bad,) + src.files[1:], src.mirrors))
    with pytest.raises(DownloadError, match=r"train-images-idx3-ubyte.gz for MNIST .*checksum mismatch"):
        downloads.download("mnist")
    assert files_under(cache) == []


def test_checksum_of_the_real_files_rejects_other_content(cache, server):
    server.files.update(mnist_files())
    with pytest.raises(DownloadError, match="train-images-idx3-ubyte.gz") as err:
        downloads.download("mnist", base_url=server.url)  # the published MD5s, our tiny files
    assert "f68b3c2dcbeaaa9fbdd348bbdeb94873" in str(err.value)
    assert files_under(cache) == []


def test_truncated_transfer_is_a_clear_error(cache, server, monkeypatch):
    blob, _ = cifar_tarball()
    server.files["cifar-10-binary.tar.gz"] = blob
    server.cut.add("cifar-10-binary.tar.gz")
    monkeypatch.setitem(downloads.SOURCES, "cifar10", source_for("cifar10", {"cifar-10-binary.tar.gz": blob}, server.url))
    with pytest.raises(DownloadError, match=rf"cifar-10-binary.tar.gz for CIFAR-10 .*truncated: received {len(blob) // 2:,}"):
        downloads.download("cifar10")
    assert files_under(cache) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on exit: nothing listens there


def test_offline_names_the_file_and_the_url(cache):
    url = f"http://127.0.0.1:{free_port()}/mirror"
    with pytest.raises(DownloadError) as err:
        downloads.download("mnist", base_url=url, timeout=5)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and f"{url}/train-images-idx3-ubyte.gz" in msg
    assert "connection refused" in msg and "Check the network connection" in msg
    assert files_under(cache) == [] and not (cache / "mnist").exists()


def test_cli_download_shows_progress_and_explains_failures(cache, server, monkeypatch, capsys):
    files = mnist_files()
    server.files.update(files)
    monkeypatch.setitem(downloads.SOURCES, "mnist", source_for("mnist", files, server.url))
    assert cli.main(["download", "mnist"]) == 0
    out, err = capsys.readouterr()
    assert f"mnist: ready in {cache / 'mnist'}" in out and "B/s" in err  # a byte progress bar, on stderr
    assert cli.main(["download", "--list"]) == 0
    assert "mnist" in capsys.readouterr().out
    assert cli.main(["download", "cifar10", "--quiet", "--base-url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "could not download cifar-10-binary.tar.gz" in capsys.readouterr().err
    assert cli.main(["download", "imagenet"]) == 2
    assert "available: mnist, fashion-mnist, cifar10" in capsys.readouterr().err
    assert math.isclose(downloads.SOURCES["cifar10"].size, 170052171)


# -- the page's view of downloads (agd_viz.views.datasets) ----------------------------------------


def test_data_status_says_what_to_do_before_a_download(cache, monkeypatch):
    from agd_viz.views import datasets as data_view

    monkeypatch.delenv(data_view.ENV_ALLOW_DOWNLOADS, raising=False)
    assert data_view.data_status("digits") is None  # nothing to download
    status = data_view.data_status("cifar10")
    assert (status.downloaded, status.allowed, status.path) == (False, True, str(cache / "cifar10"))
    assert status.button_label == "Download CIFAR-10 (170 MB)"
    assert "Press “Download CIFAR-10 (170 MB)” below" in status.note()
    monkeypatch.setenv(data_view.ENV_ALLOW_DOWNLOADS, "off")
    off = data_view.data_status("cifar10")
    assert not off.allowed and "`python -m agd_viz download cifar10`" in off.note()
    assert data_view.download_dataset("digits") == (False, "'digits' is not a downloadable data set.")
    assert data_view.download_progress(0, 0, "MNIST") == (0.0, "MNIST · 0 kB of 0 kB")
    assert data_view.download_progress(6_000_000, 12_000_000, "MNIST")[0] == 0.5


def test_two_sessions_downloading_at_once_fetch_each_file_once(cache, server, monkeypatch):
    from agd_viz.views import datasets as data_view

    monkeypatch.delenv(data_view.ENV_ALLOW_DOWNLOADS, raising=False)
    files = mnist_files()
    server.files.update(files)
    monkeypatch.setitem(downloads.SOURCES, "mnist", source_for("mnist", files, server.url))
    results = []
    threads = [threading.Thread(target=lambda: results.append(data_view.download_dataset("mnist")))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [ok for ok, _ in results] == [True, True]
    assert sorted(server.requests) == sorted(files)  # the second session found the files there


def test_a_cifar10_run_augments_by_default_on_the_papers_square_loss(cache, server, monkeypatch):
    """CIFAR-10 fetched from a local server (generated files), then trained as the paper's
    reproductions train it: augmentation on by default, recorded in the spec, square loss."""
    blob, _ = cifar_tarball(per_batch=40)
    server.files["cifar-10-binary.tar.gz"] = blob
    monkeypatch.setitem(downloads.SOURCES, "cifar10", source_for("cifar10", {"cifar-10-binary.tar.gz": blob}, server.url))
    downloads.download("cifar10")
    spec = train.RunSpec(dataset="cifar10", depth=3, width=16, steps=6, batch_size=32, device="cpu", loss="square",
                         optimizers=("agd", "muon"))
    assert spec.augment is True and spec.to_dict()["augment"] is True
    seen = []
    real = data.augment
    monkeypatch.setattr(data, "augment", lambda x, *a, **k: seen.append(tuple(x.shape)) or real(x, *a, **k))
    ends = [r for r in train.run(spec) if isinstance(r, train.End)]
    assert [e.status for e in ends] == ["finished", "finished"]
    assert seen == [(32, 3072)] * 6
    assert all(e.summary["final_test_acc"] is not None for e in ends)  # the whole (tiny) test split
