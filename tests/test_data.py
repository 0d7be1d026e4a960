"""The dataset catalogue and its numpy loaders (agd_viz.datasets), and the tensors of agd_viz.data."""

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from agd_viz import data, datasets

TOY = ["spirals", "moons", "circles", "xor"]


def row_norms(x):
    return torch.linalg.vector_norm(x, dim=1)


def test_registry_lists_every_dataset_with_its_defaults():
    assert set(datasets.DATASETS) >= {"digits", "spirals", "moons", "circles", "xor", "teacher"}
    assert data.DATASETS is datasets.DATASETS  # one catalogue, torch side and page side
    assert data.DEFAULT_DATASET == datasets.DEFAULT_DATASET == "digits"
    assert set(datasets.LOADERS) == set(datasets.DATASETS)  # every entry loads
    for name, info in datasets.DATASETS.items():
        assert info.name == name and info.title and info.description
        assert info.task in ("classification", "regression")
        assert info.input_kind in ("vector", "2d", "image")
        assert datasets.validate_options(name) == dict(info.options)
        for key, default in info.options.items():
            lo, hi = info.limits[key]
            assert lo <= default <= hi
    assert datasets.DATASETS["teacher"].task == "regression"
    assert {n for n, i in datasets.DATASETS.items() if i.input_kind == "2d"} == set(TOY) == set(datasets.TOY_2D)


@pytest.mark.parametrize("name, options", [
    ("digits", {}), ("digits", {"test_fraction": 0.5}), ("spirals", {"classes": 3}), ("moons", {}),
    ("circles", {"n_samples": 333, "test_fraction": 0.3}), ("xor", {}), ("teacher", {}),
    ("teacher", {"d_in": 5, "d_out": 3, "n_samples": 500})])
def test_catalogue_sizes_are_the_loaded_sizes(name, options):
    arrays = datasets.load_arrays(name, **options)
    info = datasets.DATASETS[name]
    shape = datasets.shape(name, options)
    assert (shape.d_in, shape.d_out, shape.n_train, shape.n_test, shape.input_shape) == \
        (arrays.d_in, arrays.d_out, arrays.n_train, arrays.n_test, arrays.input_shape)
    assert (arrays.task, arrays.input_kind) == (info.task, info.input_kind)
    if name != "spirals" and info.classes is not None:
        assert arrays.classes == list(info.classes)


def test_load_arrays_gives_numpy_and_data_load_the_same_values_as_tensors():
    arrays = datasets.load_arrays("moons", seed=4, n_samples=200)
    assert isinstance(arrays.x_train, np.ndarray) and arrays.x_train.dtype == np.float32
    assert arrays.y_train.dtype == np.int64
    ds = data.load("moons", seed=4, n_samples=200)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(ds, name).numpy(), getattr(arrays, name))
    np.testing.assert_array_equal(ds.raw_train, arrays.raw_train)
    assert (ds.classes, ds.input_kind, ds.d_in) == (arrays.classes, "2d", 3)
    # raw_test is kept in float32, so the map of it matches to float32 precision.
    np.testing.assert_allclose(arrays.transform(arrays.raw_test), arrays.x_test, rtol=1e-5, atol=1e-6)


def test_the_catalogue_and_loaders_import_no_torch():
    code = ("import sys, agd_viz.datasets as d; d.load_arrays('digits'); d.load_arrays('teacher'); "
            "d.load_arrays('spirals'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_registered_dataset_loads_validates_and_trains_like_a_built_in(monkeypatch):
    monkeypatch.setattr(datasets, "DATASETS", dict(datasets.DATASETS))
    monkeypatch.setattr(datasets, "LOADERS", dict(datasets.LOADERS))
    monkeypatch.setattr(datasets, "TOY_2D", datasets.TOY_2D)
    monkeypatch.setattr(datasets, "DOWNLOADABLE", datasets.DOWNLOADABLE)

    def lines(seed, n_samples, test_fraction):
        x = np.random.default_rng(seed).normal(size=(n_samples, 2))
        return datasets.from_arrays("lines", x, (x[:, 0] > 0).astype(int), "classification", seed,
                                    test_fraction, classes=["left", "right"], append_constant=True,
                                    input_kind="2d")

    info = datasets.DatasetInfo("lines", "Two half-planes", "classification", "Split by the y axis.",
                                3, 2, 80, 20, {"n_samples": 100, "test_fraction": 0.2},
                                {"n_samples": (10, 1000), "test_fraction": (0.01, 0.9)}, input_kind="2d")
    datasets.register(info, lines)
    assert "lines" in datasets.TOY_2D and datasets.title("lines") == "Two half-planes"
    ds = data.load("lines", seed=1)
    assert (ds.n_train, ds.n_test, ds.d_in, ds.classes) == (80, 20, 3, ["left", "right"])
    with pytest.raises(ValueError, match="n_samples must be between 10"):
        data.load("lines", n_samples=5)
    with pytest.raises(ValueError, match="already registered"):
        datasets.register(info, lines)
    with pytest.raises(ValueError, match="no limits for options"):
        datasets.register(dataclasses.replace(info, name="other", limits={}), lines)


def test_digits_default_split_and_prepared_inputs():
    ds = data.load("digits")
    assert (ds.n_train, ds.n_test) == (1797 - 359, 359)
    assert (ds.d_in, ds.d_out, ds.task) == (64, 10, "classification")
    assert ds.classes == [str(i) for i in range(10)]
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.x_train.shape == (ds.n_train, 64) and ds.y_test.shape == (ds.n_test,)
    torch.testing.assert_close(row_norms(ds.x_train), torch.full((ds.n_train,), 8.0))
    torch.testing.assert_close(row_norms(ds.x_test), torch.full((ds.n_test,), 8.0))
    assert set(ds.y_train.tolist()) == set(range(10))


def test_centring_uses_the_train_split_only_and_transform_reproduces_inputs():
    ds = data.load("digits", seed=3)
    np.testing.assert_allclose(ds.input_transform.mean, ds.raw_train.mean(axis=0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ds.transform(ds.raw_train), ds.x_train)
    torch.testing.assert_close(ds.transform(ds.raw_test), ds.x_test)


@pytest.mark.parametrize("name", ["digits", "moons", "teacher"])
def test_same_seed_same_data_other_seed_other_split(name):
    a, b, c = data.load(name, seed=7), data.load(name, seed=7), data.load(name, seed=8)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.x_test, c.x_test)


def test_test_fraction_option_sets_the_split():
    ds = data.load("digits", test_fraction=0.5)
    assert ds.n_test == round(1797 * 0.5) and ds.n_train + ds.n_test == 1797
    ds = data.load("moons", n_samples=100, test_fraction=0.1)
    assert (ds.n_train, ds.n_test) == (90, 10)


@pytest.mark.parametrize("name", TOY)
def test_toy_sets_are_3d_on_the_sphere_and_learnable(name):
    ds = data.load(name)
    assert (ds.d_in, ds.d_out, ds.input_kind) == (3, 2, "2d")
    assert ds.raw_train.shape == (ds.n_train, 2) and ds.n_train + ds.n_test == 1000
    torch.testing.assert_close(row_norms(ds.x_train), torch.full((ds.n_train,), math.sqrt(3)))
    # The prepared 3-D inputs still separate the classes: a nearest-neighbour rule generalises.
    knn = KNeighborsClassifier(5).fit(ds.x_train.numpy(), ds.y_train.numpy())
    assert knn.score(ds.x_test.numpy(), ds.y_test.numpy()) > 0.85


def test_circles_keep_the_radius():
    # Scaling (x, y) alone to a fixed norm would put both circles on one circle (chance accuracy);
    # with the constant feature the radius becomes the height on the sphere, linearly separable.
    ds = data.load("circles", noise=0.05)
    clf = LogisticRegression().fit(ds.x_train.numpy(), ds.y_train.numpy())
    assert clf.score(ds.x_test.numpy(), ds.y_test.numpy()) > 0.95


def test_transform_maps_a_plane_grid_like_the_training_points():
    ds = data.load("spirals")
    g = np.stack(np.meshgrid(np.linspace(-2, 2, 30), np.linspace(-2, 2, 30)), axis=-1).reshape(-1, 2)
    x = ds.transform(g)
    assert x.shape == (900, 3) and x.dtype == torch.float32
    torch.testing.assert_close(row_norms(x), torch.full((900,), math.sqrt(3)))
    # Different plane points stay different (nothing collapses onto a circle).
    assert torch.unique(x, dim=0).shape[0] == 900
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        ds.transform(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        ds.transform(np.array([[np.nan, 0.0]]))


def test_spirals_class_option():
    ds = data.load("spirals", classes=3, n_samples=300)
    assert ds.d_out == 3 and len(ds.classes) == 3
    counts = torch.bincount(torch.cat([ds.y_train, ds.y_test]))
    assert counts.tolist() == [100, 100, 100]


def test_option_errors_are_clear():
    with pytest.raises(ValueError, match="available: digits, spirals"):
        data.load("mnistt")
    with pytest.raises(ValueError, match="unknown option.*noize.*valid options: n_samples, noise"):
        data.load("moons", noize=0.1)
    with pytest.raises(ValueError, match="n_samples must be between 10"):
        data.load("moons", n_samples=5)
    with pytest.raises(ValueError, match="noise must be between 0"):
        data.load("circles", noise=-0.1)
    with pytest.raises(ValueError, match="noise must be a number"):
        data.load("xor", noise=float("nan"))
    with pytest.raises(ValueError, match="classes must be between 2"):
        data.load("spirals", classes=1)
    with pytest.raises(ValueError, match="n_samples must be an integer"):
        data.load("moons", n_samples=100.5)
    with pytest.raises(ValueError, match="must be an integer"):
        data.load("moons", n_samples=True)
    with pytest.raises(ValueError, match="seed"):
        data.load("moons", seed=-1)
    # Values arriving as text (query parameters, the CLI) are accepted when they parse.
    assert data.load("moons", n_samples="200", noise="0.2").n_train == 160


def test_from_arrays_rejects_non_finite_values_and_says_how_many():
    x = np.random.default_rng(0).normal(size=(50, 4))
    x[3, 1] = np.nan
    x[7, 0] = np.inf
    x[9, 2] = -np.inf
    with pytest.raises(ValueError, match="'bad': inputs contain 3 non-finite"):
        datasets.from_arrays("bad", x, np.zeros(50, dtype=int), "classification")
    y = np.ones((50, 2))
    y[0, 0] = np.nan
    with pytest.raises(ValueError, match="'bad': targets contain 1 non-finite"):
        datasets.from_arrays("bad", np.ones((50, 4)), y, "regression")
    with pytest.raises(ValueError, match="50 inputs but 49 targets"):
        datasets.from_arrays("bad", np.ones((50, 4)), np.zeros(49, dtype=int), "classification")
    with pytest.raises(ValueError, match="integers"):
        datasets.from_arrays("bad", np.ones((50, 4)), np.full(50, 0.5), "classification")


def test_a_row_equal_to_the_train_mean_becomes_zero_not_nan():
    x = np.array([[1.0, 2.0], [3.0, 4.0], [2.0, 3.0], [5.0, 1.0]])
    arrays = datasets.from_arrays("tiny", x, np.array([0, 1, 0, 1]), "classification", test_fraction=0.25)
    ds = data.tensors(arrays)
    mean = ds.input_transform.mean
    out = ds.transform(mean[None, :])
    assert torch.equal(out, torch.zeros(1, 2))
    assert torch.isfinite(ds.x_train).all()
    np.testing.assert_array_equal(arrays.transform(mean[None, :]), np.zeros((1, 2)))


def test_teacher_targets_are_the_teachers_outputs():
    ds = data.load("teacher", n_samples=500)
    assert (ds.d_in, ds.d_out, ds.task) == (16, 4, "regression")
    assert ds.y_train.dtype == torch.float32 and ds.y_train.shape == (400, 4)
    weights = [torch.from_numpy(w) for w in ds.meta["teacher_weights"]]
    assert [tuple(w.shape) for w in weights] == [(32, 16), (32, 32), (4, 32)]
    h = ds.x_test
    for w in weights[:-1]:
        h = torch.relu(h @ w.T) * math.sqrt(2)
    torch.testing.assert_close(h @ weights[-1].T, ds.y_test)  # what a student of its shape computes
    # Targets of order one: predicting zero costs a loss of order one, not 1e-4 or 1e4.
    zero_loss = data.loss_fn("regression")(torch.zeros_like(ds.y_train), ds.y_train)
    assert 0.05 < zero_loss.item() < 5


def test_teacher_noise_perturbs_targets_only():
    clean = data.load("teacher", n_samples=300)
    noisy = data.load("teacher", n_samples=300, noise=0.5)
    assert torch.equal(clean.x_train, noisy.x_train)
    diff = (noisy.y_train - clean.y_train).std().item()
    assert 0.4 < diff < 0.6


def test_teacher_size_is_capped():
    with pytest.raises(ValueError, match="exceeds the limit"):
        data.load("teacher", d_in=1024, n_samples=100_000)


def test_loss_and_accuracy():
    out = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0]])
    y = torch.tensor([0, 0, 0])
    acc = data.accuracy(out, y, "classification")
    assert acc.dim() == 0 and acc.item() == pytest.approx(2 / 3)
    torch.testing.assert_close(
        data.loss_fn("classification")(out, y), torch.nn.functional.cross_entropy(out, y)
    )
    f = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    t = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    # (1/B) Σ_b (1/(2 d_out)) ||f − y||² = ((4 + 9) / 6 + 3 / 6) / 2
    assert data.loss_fn("regression")(f, t).item() == pytest.approx((13 / 6 + 3 / 6) / 2)
    r = data.accuracy(f, t, "regression")
    assert r.dim() == 0 and math.isnan(r.item())
    with pytest.raises(ValueError, match="task"):
        data.loss_fn("ranking")


def test_to_device_keeps_values_and_counts():
    ds = data.load("moons", n_samples=100)
    moved = ds.to("cpu")
    assert moved.n_train == 80 and moved.n_test == 20
    assert torch.equal(moved.x_train, ds.x_train) and torch.equal(moved.y_test, ds.y_test)
    meta = ds.to("meta")
    assert meta.x_train.device.type == "meta" and meta.y_test.device.type == "meta"
    assert "train 80×3" in repr(ds)
