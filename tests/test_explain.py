"""agd_viz.views.explain and agd_viz.charts.explain: the numbers and figures of the "How AGD works" page."""

import math
import subprocess
import sys

import numpy as np
import pytest

from agd_viz import theory
from agd_viz.charts import explain as figs
from agd_viz.views import explain as ex

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
    assert ex.eta_of_G is theory.eta_of_G  # the page shows the optimiser's own formula
    assert ex.eta_of_G(0.0) == 0.0
    assert ex.eta_of_G(2.0) == pytest.approx(math.log((1 + math.sqrt(9.0)) / 2))  # = log 2
    grid = np.linspace(0.0, 100.0, 1001)
    assert np.all(np.diff(ex.eta_of_G(grid)) > 0)
    # Small G: eta ~ G (plain normalised gradient descent). Large G: eta ~ log(G)/2.
    assert ex.eta_of_G(1e-9) == pytest.approx(1e-9, rel=1e-6)
    assert ex.eta_of_G(1e8) == pytest.approx(0.5 * math.log(1e8), abs=1e-3)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="G must be finite and >= 0"):
            ex.check_G(bad)
        with pytest.raises(ValueError, match="G must be finite and >= 0"):
            ex.layer_split(depth=2, width=8, d_in=4, d_out=2, G=bad)


@pytest.mark.parametrize("G", [0.05, 1.0, 7.0])
def test_eta_of_G_minimises_the_majorisation(G):
    grid = np.linspace(0.0, 3.0, 30001)
    assert grid[np.argmin(ex.mm_bound(grid, G))] == pytest.approx(ex.eta_of_G(G), abs=2e-4)


def test_mm_curve_marks_the_minimum_of_its_bound():
    curve = ex.mm_curve(2.0)
    assert curve["best_eta"] == pytest.approx(math.log(2.0))
    assert curve["best_bound"] == pytest.approx(ex.mm_bound(math.log(2.0), 2.0))
    assert curve["best_bound"] <= curve["bound"].min() + 1e-12
    np.testing.assert_allclose(curve["bound"], curve["gain"] + curve["penalty"])
    assert curve["eta"][-1] >= 2 * curve["best_eta"]


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
# depth demo (numpy network, gradient and first steps; tiny sizes)


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


def test_depth_totals_agree_with_the_demo_at_each_depth():
    totals = ex.depth_totals([3, 5], width=16, seed=2, data="digits", batch_size=32).set_index("depth")
    for depth in (3, 5):
        last = ex.depth_demo(depth, width=16, seed=2, data="digits", batch_size=32).iloc[-1]
        assert totals.loc[depth, "adam_total_op"] == pytest.approx(last["adam_bound_op"])
        assert totals.loc[depth, "agd_total"] == pytest.approx(last["agd_bound"])
        assert totals.loc[depth, "G"] == pytest.approx(last["G"])


def test_depth_demo_on_digits_uses_the_app_dataset():
    df = ex.depth_demo(depth=3, width=16, seed=0, data="digits")
    assert list(df["shape"]) == ["16 × 64", "16 × 16", "10 × 16"]
    assert df["G"].iloc[0] > 0
    assert df["loss"].iloc[0] == pytest.approx(math.log(10), rel=0.5)  # near chance at init
    again = ex.depth_demo(depth=3, width=16, seed=0, data="digits")
    assert again.equals(df)  # one seed, one picture
    assert not ex.depth_demo(depth=3, width=16, seed=1, data="digits").equals(df)


def test_depth_demo_rejects_unknown_data():
    with pytest.raises(ValueError, match="digits"):
        ex.depth_demo(depth=2, width=8, data="imagenet")


def test_agd_init_is_semi_orthogonal_at_the_agd_scale():
    weights = ex.agd_init([64, 32, 32, 100, 10], np.random.default_rng(0))
    assert [w.shape for w in weights] == [(32, 64), (32, 32), (100, 32), (10, 100)]
    for w in weights:
        s = np.linalg.svd(w, compute_uv=False)
        np.testing.assert_allclose(s, theory.agd_scale(*w.shape), rtol=1e-10)


def test_numpy_demo_matches_torch_nets_and_optimisers():
    """The page's numpy network, backprop and first steps against the training code's own MLP,
    autograd and optimisers (torch here in the test only; the page never imports it)."""
    torch = pytest.importorskip("torch")
    from agd_viz.nets import MLP
    from agd_viz.optim import make_optimizer

    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 12))
    y = rng.integers(0, 3, 40)
    weights = ex.agd_init([12, 16, 16, 16, 3], np.random.default_rng(6))
    df = ex._demo_one(x, y, weights, 1e-3)

    model = MLP(12, 3, depth=4, width=16).double()
    with torch.no_grad():
        for p, w in zip(model.weights(), weights):
            p.copy_(torch.from_numpy(w))
    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
    grads = torch.autograd.grad(loss, model.weights())
    assert df["loss"].iloc[0] == pytest.approx(loss.item(), rel=1e-10)

    def first_step(spec):
        params = [torch.from_numpy(w).clone().requires_grad_(True) for w in weights]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt = make_optimizer(spec, params)
        opt.step()
        return opt, [(p.detach() - torch.from_numpy(w)).numpy() for p, w in zip(params, weights)]

    _, adam = first_step("adam:lr=1e-3")
    agd, agd_d = first_step("agd")
    assert df["G"].iloc[0] == pytest.approx(float(agd.last_G), rel=1e-6)
    assert df["eta"].iloc[0] == pytest.approx(float(agd.last_eta), rel=1e-6)
    for k, w in enumerate(weights):
        row = df.iloc[k]
        assert row["adam_rel"] == pytest.approx(np.linalg.norm(adam[k]) / np.linalg.norm(w), rel=1e-5)
        assert row["agd_rel"] == pytest.approx(np.linalg.norm(agd_d[k]) / np.linalg.norm(w), rel=1e-5)
        assert row["adam_rel_op"] == pytest.approx(np.linalg.norm(adam[k], 2) / np.linalg.norm(w, 2), rel=1e-5)
        assert row["agd_rel_op"] == pytest.approx(np.linalg.norm(agd_d[k], 2) / np.linalg.norm(w, 2), rel=1e-5)
    # Muon: torch orthogonalises in bfloat16, the page in float64; the first steps agree to a few %.
    params = [torch.from_numpy(w).float().clone().requires_grad_(True) for w in weights]
    for p, g in zip(params, grads):
        p.grad = g.float().clone()
    make_optimizer("muon", params).step()
    for k, (p, w) in enumerate(zip(params, weights)):
        step = p.detach().double().numpy() - w
        row = df.iloc[k]
        assert row["muon_rel"] == pytest.approx(np.linalg.norm(step) / np.linalg.norm(w), rel=0.06)
        assert row["muon_srank"] == pytest.approx(np.linalg.norm(step) ** 2 / np.linalg.norm(step, 2) ** 2, rel=0.1)
        assert row["agd_srank"] == pytest.approx(np.linalg.norm(agd_d[k]) ** 2 / np.linalg.norm(agd_d[k], 2) ** 2, rel=1e-5)


def test_update_stable_ranks_tell_agd_from_muon_and_relative_bound_fails():
    df = ex.depth_demo(depth=6, width=64, data="digits")
    hidden = df.iloc[1:-1]
    assert (hidden["muon_srank"] > 5 * hidden["agd_srank"]).all()  # orthogonalised vs normalised gradient
    assert (hidden["muon_srank"] <= hidden["full_rank"]).all() and (hidden["agd_srank"] >= 1).all()
    s = ex.newton_schulz(np.random.default_rng(0).standard_normal((32, 12)))
    sv = np.linalg.svd(s, compute_uv=False)
    assert 0.6 < sv.min() and sv.max() < 1.3  # near-orthogonal, not exactly
    c = ex.relative_counterexample()
    assert c["relative_change"] == pytest.approx(10.0) and c["factor"] == pytest.approx(0.01)
    assert c["change"] <= c["lemma4_bound"] + 1e-12  # Lemma 4's absolute bound holds; a relative one would not


def test_in_norm_picks_one_measure_under_plain_names():
    df = ex.depth_demo(depth=3, width=8, data="random")
    op = ex.in_norm(df, "operator")
    fro = ex.in_norm(df, "frobenius")
    assert list(op["adam_bound"]) == list(df["adam_bound_op"])
    assert list(fro["agd_rel"]) == list(df["agd_rel"])
    assert not any(c.endswith("_op") for c in [*op.columns, *fro.columns])
    totals = ex.in_norm(ex.depth_totals([2], width=8, data="random"), "operator")
    assert list(totals.columns) == ["depth", "adam_total", "agd_total", "muon_total", "eta", "G"]
    with pytest.raises(ValueError, match="operator, frobenius"):
        ex.in_norm(df, "nuclear")


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
    demo = ex.in_norm(ex.depth_demo(depth=3, width=8, data="random"), "operator")
    totals = ex.in_norm(ex.depth_totals([2, 4], width=8, data="random"), "frobenius")
    built = [
        figs.fig_norm_balls(ex.norm_balls([1.0, -0.5])),
        figs.fig_singular_values(summary),
        figs.fig_matrix(ex.build_matrix("rank-one", 6, 4)),
        figs.fig_eta_curve(2.0, {"run_id": 3, "name": "r", "step": 9, "G": 12.0, "eta": 1.5}),
        figs.fig_mm_bound(ex.mm_curve(0.0)),
        figs.fig_layer_split(ex.layer_split(3, 16, 64, 10, 1.0)),
        figs.fig_depth_layers(demo, ex.NORM_SYMBOLS["operator"]),
        figs.fig_depth_bound(demo),
        figs.fig_depth_totals(totals, depth=4),
    ]
    for fig in built:
        assert fig.layout.title.text
    eta_fig = built[3]
    assert eta_fig.layout.xaxis.range is None or eta_fig.layout.xaxis.range[1] >= 12.0
    assert any(t.marker.symbol == "star" for t in eta_fig.data)
    assert built[6].layout.title.text == "Relative update per layer ‖ΔW_k‖* / ‖W_k‖*"
    # Each norm ball passes through the tip of v.
    balls = ex.norm_balls([1.0, -0.5])
    assert [t.name for t in built[0].data[:3]] == ["Manhattan ℓ1 = 1.5", "Euclidean ℓ2 = 1.12", "infinity ℓ∞ = 1"]
    with pytest.raises(ValueError, match="2-D"):
        ex.norm_balls([1.0, 2.0, 3.0])
    assert set(balls["balls"]) == {1, 2, math.inf}


def test_the_page_modules_import_neither_streamlit_nor_torch():
    code = ("import sys, agd_viz.datasets, agd_viz.downloads, agd_viz.views.explain, agd_viz.views.datasets, "
            "agd_viz.charts.explain as figs, agd_viz.views.explain as ex; "
            "ex.depth_demo(4, 16, data='digits'); ex.depth_totals([2, 4], 16, data='random'); "
            "figs.fig_depth_totals(ex.in_norm(ex.depth_totals([2], 8), 'operator')); "
            "print(sorted({'streamlit', 'torch'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
