"""agd_viz.explain: the numbers behind the "How AGD works" page."""

import math

import numpy as np
import pytest

from agd_viz import explain as ex

# ---------------------------------------------------------------------------------------------
# matrices


@pytest.mark.parametrize("m,n", [(32, 16), (8, 20), (1, 1)])
def test_orthogonal_matrix_has_unit_singular_values_and_full_stable_rank(m, n):
    s = ex.matrix_summary(ex.build_matrix("orthogonal", m, n, seed=3))
    assert s["shape"] == (m, n)
    np.testing.assert_allclose(s["singular_values"], 1.0, atol=1e-10)
    assert s["rank"] == min(m, n)
    assert s["stable_rank"] == pytest.approx(min(m, n))
    assert s["spectral"] == pytest.approx(1.0)


@pytest.mark.parametrize("m,n", [(32, 16), (5, 40)])
def test_rank_one_matrix_has_stable_rank_one(m, n):
    s = ex.matrix_summary(ex.build_matrix("rank-one", m, n, seed=1))
    assert s["rank"] == 1
    assert s["stable_rank"] == pytest.approx(1.0)


def test_low_rank_plus_noise_is_full_rank_but_low_stable_rank():
    m, n, r = 40, 30, 3
    clean = ex.matrix_summary(ex.build_matrix("low-rank+noise", m, n, rank=r, noise=0.0))
    assert clean["rank"] == r
    assert clean["stable_rank"] == pytest.approx(r)
    noisy = ex.matrix_summary(ex.build_matrix("low-rank+noise", m, n, rank=r, noise=0.3))
    # Any noise makes the rank jump to full; the stable rank moves only a little.
    assert noisy["rank"] == min(m, n)
    assert 1.0 < noisy["stable_rank"] < min(m, n)
    assert noisy["stable_rank"] < 2 * r
    louder = ex.matrix_summary(ex.build_matrix("low-rank+noise", m, n, rank=r, noise=1.0))
    assert louder["stable_rank"] > noisy["stable_rank"]


@pytest.mark.parametrize("m,n", [(7, 3), (3, 7), (64, 64)])
def test_gaussian_matrix_has_requested_size_and_depends_on_seed(m, n):
    a = ex.build_matrix("gaussian", m, n, seed=0)
    assert a.shape == (m, n)
    np.testing.assert_array_equal(a, ex.build_matrix("gaussian", m, n, seed=0))
    assert not np.allclose(a, ex.build_matrix("gaussian", m, n, seed=1))
    s = ex.matrix_summary(a)
    assert 1.0 <= s["stable_rank"] <= s["rank"] == min(m, n)


def test_unknown_kind_lists_the_valid_kinds():
    with pytest.raises(ValueError) as err:
        ex.build_matrix("diagonal", 4, 4)
    for kind in ex.MATRIX_KINDS:
        assert kind in str(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [dict(m=0, n=3), dict(m=3, n=2000), dict(m=4, n=4, rank=5), dict(m=4, n=4, rank=0),
     dict(m=4, n=4, noise=-0.1), dict(m=4, n=4, noise=float("nan")), dict(m=2.5, n=3)],
)
def test_bad_sizes_rank_or_noise_are_rejected(kwargs):
    with pytest.raises(ValueError):
        ex.build_matrix("low-rank+noise", **kwargs)


def test_matrix_summary_agrees_with_numpy_norms():
    a = ex.build_matrix("gaussian", 12, 9, seed=4)
    s = ex.matrix_summary(a)
    assert s["frobenius"] == pytest.approx(np.linalg.norm(a, "fro"))
    assert s["spectral"] == pytest.approx(np.linalg.norm(a, 2))
    assert s["stable_rank"] == pytest.approx(s["frobenius"] ** 2 / s["spectral"] ** 2)
    zero = ex.matrix_summary(np.zeros((3, 4)))
    assert (zero["rank"], zero["stable_rank"], zero["spectral"]) == (0, 0.0, 0.0)
    with pytest.raises(ValueError):
        ex.matrix_summary(np.ones(3))


# ---------------------------------------------------------------------------------------------
# vectors


def test_vector_norms():
    assert ex.vector_norms([3.0, -4.0]) == {"l1": 7.0, "l2": 5.0, "linf": 4.0}
    with pytest.raises(ValueError):
        ex.vector_norms([])


@pytest.mark.parametrize("p", [1, 2, math.inf])
def test_norm_ball_points_have_the_radius_as_norm(p):
    x, y = ex.norm_ball(p, radius=1.7)
    np.testing.assert_allclose(np.linalg.norm(np.stack([x, y]), ord=p, axis=0), 1.7)


# ---------------------------------------------------------------------------------------------
# the step size


def test_eta_of_G_values():
    assert ex.eta_of_G(0.0) == 0.0
    assert ex.eta_of_G(2.0) == pytest.approx(math.log((1 + math.sqrt(9.0)) / 2))  # = log 2
    grid = np.linspace(0.0, 100.0, 1001)
    assert np.all(np.diff(ex.eta_of_G(grid)) > 0)
    # Small G: eta ~ G (plain normalised gradient descent). Large G: eta ~ log(G)/2.
    assert ex.eta_of_G(1e-9) == pytest.approx(1e-9, rel=1e-6)
    assert ex.eta_of_G(1e8) == pytest.approx(0.5 * math.log(1e8), abs=1e-3)
    with pytest.raises(ValueError):
        ex.eta_of_G(-0.1)


@pytest.mark.parametrize("G", [0.05, 1.0, 7.0])
def test_eta_of_G_minimises_the_majorisation(G):
    grid = np.linspace(0.0, 3.0, 30001)
    assert grid[np.argmin(ex.mm_bound(grid, G))] == pytest.approx(ex.eta_of_G(G), abs=2e-4)


def test_layer_split_shares_eta_across_layers():
    G = 1.3
    eta = ex.eta_of_G(G)
    split = ex.layer_split(depth=5, width=128, d_in=64, d_out=10, G=G)
    assert list(split["layer"]) == [1, 2, 3, 4, 5]
    assert list(split["shape"]) == ["128 × 64", "128 × 128", "128 × 128", "128 × 128", "10 × 128"]
    assert split["rel_bound"].sum() == pytest.approx(eta)
    assert (split["update_fro"] / split["scale"]).sum() == pytest.approx(eta)
    np.testing.assert_allclose(split["update_fro"], eta / 5 * np.sqrt([2, 1, 1, 1, 10 / 128]))
    np.testing.assert_allclose(split["rel_update"], eta / 5 / np.sqrt([64, 128, 128, 128, 10]))
    one = ex.layer_split(depth=1, width=128, d_in=64, d_out=10, G=G)
    assert list(one["shape"]) == ["10 × 64"]
    assert one["update_fro"].iloc[0] == pytest.approx(eta * math.sqrt(10 / 64))


# ---------------------------------------------------------------------------------------------
# depth demo (real nets and optimisers, tiny sizes)


def test_depth_demo_shape_and_agd_step():
    df = ex.depth_demo(depth=6, width=32, seed=0, data="random")
    assert len(df) == 6
    assert list(df["layer"]) == list(range(1, 7))
    for col in ("adam_rel", "agd_rel", "adam_rel_op", "agd_rel_op", "adam_bound", "agd_bound"):
        assert np.all(np.isfinite(df[col])) and np.all(df[col] > 0)
    eta, G = df["eta"].iloc[0], df["G"].iloc[0]
    assert eta == pytest.approx(ex.eta_of_G(G), rel=1e-5)
    # AGD moves each layer by at most eta/L relative to its operator norm (Algorithm 1 + init).
    assert np.all(df["agd_rel_op"] <= eta / 6 * (1 + 1e-4))
    assert df["agd_bound_op"].iloc[-1] <= math.expm1(eta) * (1 + 1e-4)
    # The running product bound only grows through the layers.
    assert np.all(np.diff(df["adam_bound_op"]) > 0)


def test_adam_bound_grows_with_depth_while_agd_stays_bounded():
    totals = ex.depth_totals([2, 16], width=32, seed=0, data="random")
    shallow, deep = totals.iloc[0], totals.iloc[1]
    assert deep["adam_total_op"] > 4 * shallow["adam_total_op"]
    assert deep["adam_total"] > 4 * shallow["adam_total"]
    for row in (shallow, deep):
        assert row["agd_total_op"] <= math.expm1(row["eta"]) * (1 + 1e-4)
    assert deep["agd_total_op"] < 2 * shallow["agd_total_op"] + 0.05
    assert deep["adam_total_op"] > deep["agd_total_op"]


def test_depth_demo_on_digits_uses_the_app_dataset():
    df = ex.depth_demo(depth=3, width=16, seed=0, data="digits")
    assert list(df["shape"]) == ["16 × 64", "16 × 16", "10 × 16"]
    assert df["G"].iloc[0] > 0
    assert df["loss"].iloc[0] == pytest.approx(math.log(10), rel=0.5)  # near chance at init


def test_depth_demo_rejects_unknown_data():
    with pytest.raises(ValueError, match="digits"):
        ex.depth_demo(depth=2, width=8, data="imagenet")


# ---------------------------------------------------------------------------------------------
# the run store


def test_latest_agd_point_without_a_store_file(tmp_path):
    path = tmp_path / "absent.db"
    assert ex.latest_agd_point(path) is None
    assert not path.exists()


def test_latest_agd_point_reads_the_newest_agd_run(tmp_path):
    from agd_viz.store import Store

    path = tmp_path / "runs.db"
    with Store(path) as store:
        old = store.create_run({"dataset": "digits"}, "agd")
        store.append_metrics(old, [{"step": 0, "G": 5.0, "eta": ex.eta_of_G(5.0)}])
        new = store.create_run({"dataset": "digits"}, "agd:gain=2", name="deep one")
        records = [{"step": k, "G": 1.0 / (k + 1), "eta": ex.eta_of_G(1.0 / (k + 1))} for k in range(5)]
        store.append_metrics(new, records)
        store.create_run({"dataset": "digits"}, "adam:lr=0.001")  # newest, but not AGD
    point = ex.latest_agd_point(path)
    assert point["run_id"] == new and point["name"] == "deep one"
    assert point["step"] == 4
    assert point["G"] == pytest.approx(0.2)
    assert point["eta"] == pytest.approx(ex.eta_of_G(0.2))


def test_latest_agd_point_ignores_a_file_that_is_not_a_store(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not a database")
    assert ex.latest_agd_point(path) is None
    assert path.read_text() == "not a database"


# ---------------------------------------------------------------------------------------------
# figures


def test_figures_build():
    summary = ex.matrix_summary(ex.build_matrix("gaussian", 6, 4))
    figs = [
        ex.fig_norm_balls([1.0, -0.5]),
        ex.fig_singular_values(summary),
        ex.fig_matrix(ex.build_matrix("rank-one", 6, 4)),
        ex.fig_eta_curve(2.0, {"run_id": 3, "name": "r", "step": 9, "G": 12.0, "eta": 1.5}),
        ex.fig_mm_bound(0.0),
        ex.fig_layer_split(ex.layer_split(3, 16, 64, 10, 1.0)),
    ]
    for fig in figs:
        assert fig.layout.title.text
    eta_fig = figs[3]
    assert eta_fig.layout.xaxis.range is None or eta_fig.layout.xaxis.range[1] >= 12.0
    assert any(t.marker.symbol == "star" for t in eta_fig.data)


def test_explain_imports_neither_streamlit_nor_torch():
    import subprocess
    import sys

    code = "import sys, agd_viz.explain; print(sorted({'streamlit', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
