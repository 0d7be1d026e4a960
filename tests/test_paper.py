"""The paper in one table (agd_viz.paper), checked against the paper itself; every text of the app
cites it; and the reproductions of its figures: their specs, the per-epoch views, the paper beside
ours, the Paper page."""

import ast
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agd_viz import paper
from agd_viz.spec import RunSpec
from agd_viz.store import Store
from agd_viz.views import figures as vf

ROOT = Path(__file__).resolve().parents[1]

# The paper's numbering, read off its LaTeX (jxbz/agd, latex/: main.tex's input order, each
# environment's counter): what each label must name.
NUMBERING = {
    "Figure 1": "AGD trains neural networks reliably without hyperparameters",
    "Table 1": "Comparing practical optimisers",
    "Figure 2": "The majorise-minimise meta-algorithm",
    "Table 2": "Comparing theoretical frameworks",
    "Figure 3": "The perturbation hierarchy of a deep network",
    "Algorithm 1": "Automatic gradient descent",
    "Figure 4": "Benchmarking AGD on a range of architectures and datasets",
    "Figure 5": "Comparing AGD to tuned Adam and SGD",
    "Figure 6": "Benchmarking AGD on networks of varying width and depth",
    "Figure 7": "Benchmarking AGD at varying mini-batch size",
    "Proposition 1": "Decomposition of linearisation error",
    "Lemma 1": "Bregman divergence of square loss",
    "Lemma 2": "Bregman divergence of xent loss",
    "Assumption 1": "Orthogonality of model linearisation error",
    "Theorem 1": "Functional expansion",
    "Corollary 1": "Functional expansion of mean squared error",
    "Corollary 2": "Functional majorisation for xent loss",
    "Prescription 1": "Dimensional scaling",
    "Lemma 3": "Output bound",
    "Lemma 4": "Deep relative trust",
    "Lemma 5": "Exponential majorisation",
    "Assumption 2": "Gradient conditioning",
    "Theorem 2": "Automatic gradient descent",
    "Lemma 6": "Bounded objective",
    "Lemma 7": "Bounded gradient",
    "Lemma 8": "Convergence rate to critical point",
    "Assumption 3": "Deep Polyak-Łojasiewicz inequality",
    "Theorem 3": "Convergence rate to global minima",
}


def test_every_item_is_labelled_and_named_as_in_the_paper():
    by_label = {it.label: it for it in paper.ITEMS.values()}
    for label, name in NUMBERING.items():
        assert by_label[label].name == name, label
    for key, it in paper.ITEMS.items():
        base = re.sub(r" \((left|middle|right)\)$", "", it.label)
        assert base in NUMBERING or it.label.startswith(("Sec.", "Example")), (key, it.label)
    assert paper.ALGORITHM_STEPS == ("get gradient summary", "set automatic learning rate", "update weights")
    assert "not numbered" in paper.ITEMS["alg1"].says
    # Lemma 4 is an absolute bound; the relative reading is what the issue found wrong.
    assert "not one on ‖Δf‖/‖f‖" in paper.ITEMS["lemma4"].says and "√d_L·(e^η − 1)" in paper.ITEMS["lemma4"].says
    assert "11/T" in paper.ITEMS["lemma8"].says and "Assumptions 1–2" in paper.ITEMS["lemma8"].says


def test_the_papers_numbers():
    r = paper.PAPER_RESULTS
    assert (r["fcn16_cifar10_agd"].value, r["fcn16_cifar10_adam"].value) == (0.527, 0.535)
    assert r["fcn16_cifar10_adam"].best_of and "1e-4" not in r["fcn16_cifar10_adam"].display
    assert (r["fcn_grid_best"].value, r["fcn_grid_worst"].value) == (0.637, 0.4255)
    assert [r[f"fcn4_batch{b}"].value for b in (32, 128, 1024, 4096)] == [0.550, 0.580, 0.600, 0.598]
    assert r["resnet50_imagenet"].value == 0.655 and r["resnet18_cifar10"].value == 0.912
    assert r["fcn_grid_shape"].metric == "train"  # a claim about training, compared with train numbers
    assert r["fcn32_defaults"].figure == "Figure 1 (left)" and r["fcn_grid_best"].figure == "Figure 6"
    assert "Adam 1e-4, SGD 1e-1" in r["fcn8_w256_best_lrs"].display and r["fcn8_w256_best_lrs"].figure == "Figure 5"


# Texts a user reads: string literals (not docstrings) of the pages and of the modules that write
# what pages, charts and the command line show.
USER_TEXT = ["app.py", "app_widgets.py", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py")),
             *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "agd_viz" / "views").glob("*.py")),
             *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "agd_viz" / "charts").glob("*.py")), "agd_viz/cli.py"]
REFERENCE = re.compile(r"\b(Figure|Fig\.|Table|Lemma|Theorem|Corollary|Assumption|Prescription|Proposition|"
                       r"Algorithm|Example)\s+\d")


def _strings(path: Path):
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_no_page_writes_a_citation_by_hand():
    """Every figure, table, lemma … number a user reads comes from paper.ITEMS (ref / cite)."""
    offenders = []
    for rel in USER_TEXT:
        for line, text in _strings(ROOT / rel):
            if REFERENCE.search(text):
                offenders.append(f"{rel}:{line}: {text[:70]!r}")
    assert not offenders, "\n".join(offenders)


def test_every_citation_in_code_comments_and_docs_names_an_existing_item():
    labels = {re.sub(r" \(.*\)$", "", it.label) for it in paper.ITEMS.values()}
    labels |= {lab.replace("Figure", "Fig.") for lab in labels}
    files = [*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("agd_viz/**/*.py"), *ROOT.glob("pages/*.py")]
    bad = []
    for path in files:
        for m in re.finditer(r"\b(Figure|Fig\.|Table|Lemma|Theorem|Corollary|Assumption|Prescription|Proposition|"
                             r"Algorithm)\s+(\d+)", path.read_text()):
            if f"{m.group(1)} {m.group(2)}" not in labels:
                bad.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not bad, bad


@pytest.mark.parametrize("phrase", ["falls on its own", "holds it near 1", "hold it near 1", "keeps near 1",
                                    "weight norms it keeps", "line 3", "line 4", "line 5", "Figure 3)",
                                    "Figure-3", "Figure 3:", "norms it holds"])
def test_the_overclaims_are_gone_from_every_page_and_doc(phrase):
    files = [*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("agd_viz/**/*.py"), *ROOT.glob("pages/*.py"),
             ROOT / "app.py", ROOT / "app_widgets.py"]
    hits = [str(p.relative_to(ROOT)) for p in files if phrase in p.read_text()]
    assert not hits, hits


# -------------------------------------------------------------------------------------------------
# Reproductions


def test_every_reproduction_is_valid_at_both_scales_and_follows_the_paper():
    assert set(paper.REPRODUCTIONS) == {"fig1_left", "fig1_middle", "fig4", "fig5", "fig6", "fig7"}
    for key, rep in paper.REPRODUCTIONS.items():
        for scale in paper.SCALES:
            specs = rep.run_specs(scale)
            assert specs and all(isinstance(s, RunSpec) for s in specs)
            assert all(s.loss == "square" for s in specs)  # the paper's loss
            assert all(s.augment == (scale == "cifar10") for s in specs)  # its augmentation, CIFAR-10 only
            assert all(s.eval_every == vf.steps_per_epoch(s.to_dict()) for s in specs)  # once per epoch
        for r in rep.results:
            assert r in paper.PAPER_RESULTS
        assert rep.command("cifar10") == f"python -m agd_viz paper {key} --scale cifar10 --device cuda"
    grid = paper.reproduction("fig1_middle").run_specs("cifar10")[0].optimizers
    assert grid == ("agd", *(f"adam:lr={r}" for r in ("1e-5", "1e-4", "1e-3", "1e-2", "1e-1")),
                    *(f"sgd:lr={r}" for r in ("1e-5", "1e-4", "1e-3", "1e-2", "1e-1")))
    assert [s.batch_size for s in paper.reproduction("fig7").run_specs("cifar10")] == [32, 128, 1024, 4096]
    cells = {(s.depth, s.width) for s in paper.reproduction("fig6").run_specs("cifar10")}
    assert cells == {(d, w) for d in (2, 4, 8, 16, 32) for w in (64, 128, 256, 512, 1024, 2048)}
    fig5 = paper.reproduction("fig5").run_specs("cifar10")[0]
    assert (fig5.depth, fig5.width, fig5.optimizers) == (8, 256, ("agd", "adam:lr=1e-4", "sgd:lr=0.1"))
    assert (s := paper.reproduction("fig1_left").run_specs("cifar10")[0]).depth == 32 and s.optimizers == ("agd", "adam", "sgd")
    cmd = paper.reproduction("fig7").train_commands("cifar10")[0]
    assert "--loss square --augment" in cmd and "--batch-size 32" in cmd


def test_per_epoch_reduces_steps_like_the_paper():
    k = 4
    steps = np.arange(0, 13)
    df = pd.DataFrame({"step": steps, "t": steps * 0.1, "loss": np.r_[np.nan, np.arange(1, 13)],
                       "acc": np.r_[np.nan, np.full(12, 0.5)], "eta": np.r_[np.nan, np.arange(1, 13) / 10],
                       "G": np.nan, "lr": np.nan,
                       **{c: np.where(steps % k == 0, steps / 100, np.nan) for c in ("train_loss", "train_acc", "test_loss", "test_acc")}})
    e = vf.per_epoch(df, k)
    assert list(e["epoch"]) == [0, 1, 2, 3]
    assert e.loc[1, "eta_mean"] == pytest.approx(0.25) and (e.loc[1, "eta_min"], e.loc[1, "eta_max"]) == (0.1, 0.4)
    assert e.loc[2, "objective"] == pytest.approx(6.5) and e.loc[3, "test_acc"] == pytest.approx(0.12)
    assert e.loc[0, "test_acc"] == 0 and math.isnan(e.loc[0, "eta_mean"])
    phases = vf.eta_phases(e)
    assert phases["peak_epoch"] == 3 and phases["rise"] == pytest.approx(1.05 / 0.25)
    layers = pd.DataFrame({"step": np.repeat(np.arange(1, 9), 2), "layer": np.tile([0, 1], 8),
                           "rel_update": np.tile([0.1, 0.3], 8) * np.repeat(np.arange(1, 9), 2)})
    rel = vf.rel_update_per_epoch(layers, k)
    assert list(rel["rel_mean"]) == pytest.approx([0.5, 1.3]) and list(rel["rel_max"]) == pytest.approx([0.8, 1.6])


def _fake_group(store, key, scale="digits"):
    """A finished reproduction with synthetic metrics, as the worker would have stored it."""
    rep = paper.reproduction(key)
    gid = store.create_group(vf.KIND, f"{rep.label} · {scale}", vf.group_spec(key, scale))
    rng = np.random.default_rng(0)
    for spec in rep.run_specs(scale):
        for i, o in enumerate(spec.optimizers):
            rid = store.create_run(spec.with_optimizer(o).to_dict(), o, group_id=gid)
            k = vf.steps_per_epoch(spec.to_dict())
            n = min(spec.steps, 12 * k)
            recs = []
            for step in range(n + 1):
                rec = {"step": step, "t": step * 0.01, "loss": 1.0 / (1 + step), "acc": 0.5,
                       "eta": 0.1 + 0.05 * math.sin(step / 5) if o.startswith("agd") else None,
                       "lr": None if o.startswith("agd") else 0.01}
                if step % k == 0:
                    rec.update(train_loss=1 / (1 + step), train_acc=min(1, step / n), test_loss=1.0,
                               test_acc=0.5 + 0.4 * step / n * (1 - i / 20))
                if key == "fig5" and step:
                    rec["layers"] = {"rel_update": list(rng.uniform(0.01, 0.02, spec.depth))}
                recs.append(rec)
            store.append_metrics(rid, recs)
            store.start_run(rid, "cpu", 1)
            store.finish_run(rid, "finished", summary={"steps": n, "elapsed_s": 1.0, "final_train_loss": 1 / (1 + n),
                                                       "final_train_acc": 1.0, "final_test_acc": 0.9 - i / 20,
                                                       "final_test_loss": 1.0, "mean_eta": 0.1})
    return store.get_group(gid)


@pytest.mark.parametrize("key", list(paper.REPRODUCTIONS))
def test_each_reproduction_draws_its_figure_and_sets_the_paper_beside_ours(tmp_path, key):
    with Store(tmp_path / "runs.db") as store:
        group = _fake_group(store, key)
        assert vf.latest_group(store, key, "digits")["id"] == group["id"]
        assert vf.latest_group(store, key, "cifar10") is None
        data = vf.load(store, group)
    assert not data.active and len(data.finished) == len(data.rows)
    figs = vf.figures(data)
    assert figs
    for name, fig in figs:
        spec = json.loads(fig.to_json())
        assert paper.ref(key) in spec["layout"]["title"]["text"], name
        assert spec["data"], name
    rows = vf.comparison(data)
    assert rows and all(set(r) == {"Paper", "Measured here"} for r in rows)
    assert all(r["Measured here"] not in ("", "–") for r in rows)


def test_figure_1_middle_counts_the_cost_of_tuning(tmp_path):
    with Store(tmp_path / "runs.db") as store:
        data = vf.load(store, _fake_group(store, "fig1_middle"))
    (paper_row, cost_row) = vf.comparison(data)
    assert "tuning Adam took 5 runs" in cost_row["Measured here"] and "AGD took 1" in cost_row["Measured here"]
    assert "11 runs × 132 steps = 1,452 steps in all" in cost_row["Measured here"]
    fig = vf.figures(data)[0][1]
    assert fig.layout.xaxis.type == "log" and any("AGD" in (a.text or "") for a in fig.layout.annotations)


def test_items_table_says_where_each_item_lives():
    table = vf.items_table()
    assert len(table) == len(paper.ITEMS)
    row = table.set_index("Item").loc["Figure 6"]
    assert "Paper page" in row["In this app"] and "--scale cifar10" in row["In this app"]
    assert "not rerun here" in table.set_index("Item").loc["Figure 1 (right)", "In this app"]


def test_docs_paper_md_gives_the_exact_command_of_every_reproduction():
    text = (ROOT / "docs" / "paper.md").read_text()
    for key, rep in paper.REPRODUCTIONS.items():
        assert rep.command("cifar10") in re.sub(r" +", " ", text), key
        assert f"python -m agd_viz paper {key}" in text
    for cmd in paper.reproduction("fig5").train_commands("cifar10") + paper.reproduction("fig7").train_commands("cifar10"):
        assert cmd in text
    for key in ("fig1_left", "fig1_middle", "fig4", "fig5", "fig6", "fig7"):
        assert f"| {paper.ref(key)} |" in text  # its row in the table of figures, and its time
