"""AGD Explorer: `streamlit run app.py`.

The entry script: page config, then navigation over the page files that exist in pages/ (pages
added later appear without touching this file). Each page is thin: widgets -> agd_viz.
"""

from pathlib import Path

import streamlit as st

import app_resources
from app_widgets import STATIC

# The tab's icon is a file of ours: a Material icon there is fetched by the browser from Google's
# font servers, which a room without internet (or a privacy-minded one) does not reach.
st.set_page_config(page_title="AGD Explorer", page_icon=str(STATIC / "favicon.svg"), layout="wide")

PAGES_DIR = Path(__file__).resolve().parent / "pages"

# Known pages in menu order: file, title, icon. Any other page file is listed after them, titled
# from its name, so a new page shows up by merely existing.
KNOWN = (
    ("live.py", "Live training", ":material/monitoring:"),
    ("sweep.py", "Depth × width sweep", ":material/grid_on:"),
    ("runs.py", "Runs", ":material/table_rows:"),
    ("how_agd_works.py", "How AGD works", ":material/school:"),
    ("paper.py", "The paper, figure by figure", ":material/menu_book:"),
)


def _pages() -> list:
    known = {name for name, _, _ in KNOWN}
    found = [(name, title, icon) for name, title, icon in KNOWN if (PAGES_DIR / name).is_file()]
    for path in sorted(PAGES_DIR.glob("*.py")):
        if path.name not in known and not path.name.startswith("_"):
            found.append((path.name, path.stem.replace("_", " ").capitalize(), None))
    return [
        st.Page(f"pages/{name}", title=title, icon=icon, default=(i == 0))
        for i, (name, title, icon) in enumerate(found)
    ]


# The job manager, and with it the pre-started worker, before the page itself: its imports then
# run while the first page a person opens draws and is read.
app_resources.prestart()
page = st.navigation(_pages())
# On every page: whether the run store can record runs, and the operator's key box (only on a
# server with AGD_VIZ_ADMIN_KEY).
app_resources.store_notice()
app_resources.operator_box()
page.run()
# Who this browser is (its owner cookie), after the page: the frame that writes it then reaches
# the browser after the page's charts (benchmarks/cold_draw.py). A run the page ends early
# (st.rerun) writes it on the next.
app_resources.keep_owner_cookie()
