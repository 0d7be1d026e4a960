"""AppTest of the Paper page: every figure's section, its CIFAR-10 command, a stored reproduction
drawn with the paper's numbers beside ours, the items table; and one real reproduction started
with one click and trained by real workers (slow)."""

import re
import signal

import pytest

from agd_viz import fmt, paper
from agd_viz.store import Store
from apptest_util import app_store, clean, figures, open_page, wait_final
from test_paper import _fake_group

# The app's job manager starts worker processes: left out of the quick loop (README, "Tests").
pytestmark = pytest.mark.slow

PAGE = "pages/paper.py"


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "runs.db"
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with app_store(path, monkeypatch):
        yield path
    for s, h in saved.items():
        signal.signal(s, h)


def test_every_figure_has_a_one_click_button_and_its_cifar10_command(db):
    at = clean(open_page(PAGE))
    assert at.title[0].value == "The paper, figure by figure"
    assert list(at.radio(key="pp_pick").options) == [paper.ref(k) for k in paper.REPRODUCTIONS]
    for key in paper.REPRODUCTIONS:
        at = clean(open_page(PAGE, {"figure": key}))
        assert at.radio(key="pp_pick").value == key
        button = at.button(key="pp_run")  # its label is Markdown, escaped: it renders as written
        assert button.label == fmt.md_escape(f"Run {paper.ref(key)} on digits") and not button.disabled
        codes = [c.value for c in at.code]
        assert paper.reproduction(key).command("cifar10") in codes
        assert any("--dataset cifar10" in c and "--loss square --augment" in c for c in codes)
        assert any(fmt.md_escape(f"No {paper.ref(key)} reproduction at digits scale") in i.value for i in at.info)
    (items,) = [d.value for d in at.dataframe]
    assert len(items) == len(paper.ITEMS) and "Lemma 4" in set(items["Item"])


def test_a_stored_reproduction_is_drawn_with_the_papers_numbers_beside_ours(db):
    with Store(db) as store:
        _fake_group(store, "fig6")
        _fake_group(store, "fig6", "cifar10")
    at = clean(open_page(PAGE, {"figure": "fig6"}))
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert titles == ["Figure 6, redrawn: η per epoch (mean, min–max) in every cell",
                      "Figure 6, redrawn: objective per epoch in every cell"]
    (table,) = at.table
    shown = table.value
    assert "63.7 %" in " ".join(shown["Paper"]) and "best test cell: depth" in " ".join(shown["Measured here"])
    at.radio(key="pp_scale").set_value("cifar10").run()
    clean(at)
    assert any("CIFAR-10" in c.value or "cifar10" in c.value for c in at.caption)
    assert len(figures(at)) == 2


def test_one_click_reruns_figure_7_on_digits_with_real_workers(db):
    at = clean(open_page(PAGE, {"figure": "fig7"}))
    at.button(key="pp_run").click().run()
    clean(at)
    runs = wait_final(db, deadline_s=240)
    assert [r["status"] for r in runs] == ["finished"] * 4
    assert sorted(r["spec"]["batch_size"] for r in runs) == [32, 128, 512, 1438]
    assert all(r["spec"]["loss"] == "square" for r in runs)
    at.run()
    clean(at)
    (fig,) = figures(at)
    assert fig["layout"]["title"]["text"].startswith("Figure 7, redrawn")
    assert len([t for t in fig["data"] if t.get("xaxis") in (None, "x")]) == 4  # a line per batch size
    rows = at.table[0].value
    assert list(rows["Paper"])[:4] == [paper.PAPER_RESULTS[f"fcn4_batch{b}"].display for b in (32, 128, 1024, 4096)]
    assert re.search(r"batch 1438: \d+\.\d % test", " ".join(rows["Measured here"]))
