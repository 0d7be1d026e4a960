"""The paper, figure by figure: every experimental figure of Bernstein et al. (2023) that the app can
rerun, one click each on digits (minutes on a laptop) and one command each at the paper's scale on
CIFAR-10; the paper's numbers beside ours; and the one table of every item of the paper the app
cites.

Thin page (docs/architecture.md): widgets -> agd_viz.views.figures (start a reproduction, read it
back, reduce it per epoch, paper beside ours; its figures from agd_viz.charts.figures). A
reproduction is a stored group of kind "figure"; while its runs train, one fragment polls the store
and reruns the page once when they have all ended.
"""

from __future__ import annotations

import streamlit as st

from agd_viz import fmt, paper
from agd_viz.jobs import QueueFull
from agd_viz.views import figures as vf
from app_resources import job_manager, session_id
from app_widgets import chart

REFRESH_S = 1.5
FIGURE_PARAM = "figure"
KEYS = tuple(paper.REPRODUCTIONS)


def _on_run(manager, key: str) -> None:
    try:
        gid, _ = vf.submit(manager, key, "digits", session=session_id())
    except (ValueError, QueueFull) as exc:  # SpecError (limits), a full queue
        st.session_state["pp_error"] = str(exc)
        return
    st.session_state.setdefault("pp_owned", []).append(gid)
    st.session_state.pop("pp_error", None)


def _panel(manager, group_id: int, interval: float | None) -> None:
    store = manager.store
    group = store.get_group(group_id)
    if group is None:
        st.info(f"Group {group_id} is no longer in the run store.")
        return
    data = vf.load(store, group)
    counts = data.counts
    done = sum(v for k, v in counts.items() if k not in ("queued", "running"))
    st.progress(done / max(len(data.rows), 1), text=fmt.md_escape(vf.progress_text(data)))
    for name, fig in vf.figures(data):
        chart(fig, key=f"pp_fig_{name}", width="stretch")
    rows = vf.comparison(data)
    if rows:
        st.markdown("**Paper vs measured here**",
                    help="The paper's numbers are for its CIFAR-10 runs; a digits reproduction shows the same "
                         "comparison on a dataset a laptop trains in seconds, so expect the pattern, not the numbers.")
        st.table(rows, hide_index=True)
    failed = [r for r in data.rows if r["status"] in ("failed", "interrupted") and r.get("error")]
    for r in failed[:3]:
        line = f"#{r['id']} {r.get('label') or r['optimizer']}: {r['status']}: {r['error']}"
        st.caption(fmt.md_escape(line))
    if interval is not None and not data.active:
        st.rerun()  # a full run re-creates this fragment without a timer


manager = job_manager()
store = manager.store

raw = st.query_params.get(FIGURE_PARAM)
if raw in KEYS and raw != st.session_state.get("pp_url_written"):
    st.session_state["pp_pick"] = raw
st.session_state.setdefault("pp_pick", KEYS[0])

st.title("The paper, figure by figure")
st.caption(f"{paper.PAPER} ([arXiv]({paper.PAPER_URL})). Each experimental figure, rerun: one click on the bundled "
           "digits (a few minutes at most on a 2-core laptop), or one command at the paper's scale on CIFAR-10. "
           "The paper's numbers sit beside ours once the runs finish.")

key = st.radio("Figure", KEYS, key="pp_pick", horizontal=True, format_func=paper.ref)
if st.query_params.get(FIGURE_PARAM) != key:
    st.query_params[FIGURE_PARAM] = key
st.session_state["pp_url_written"] = key
rep = paper.reproduction(key)

text = vf.section_text(key)  # our own sentences, escaped all the same: they hold ‖W_k‖_* and the like
st.subheader(fmt.md_escape(text["title"]))
st.markdown("**The paper** " + fmt.md_escape(text["says"]))
st.caption(fmt.md_escape(text["differs"]))

owned = st.session_state.get("pp_owned", [])
latest = vf.latest_group(store, key, "digits")
active = []
if latest is not None:
    active = [r["id"] for r in store.list_runs(group_id=latest["id"]) if r["status"] in ("queued", "running")]
mine = [i for i in active if latest is not None and latest["id"] in owned]
c1, c2, c3 = st.columns([1.4, 0.8, 3], vertical_alignment="center")
c1.button(fmt.md_escape(text["run"]), type="primary", key="pp_run", icon=":material/play_arrow:",
          disabled=bool(active), on_click=_on_run, args=(manager, key))
c2.button("Stop", key="pp_stop", icon=":material/stop:", disabled=not mine, on_click=manager.stop, args=(mine,))
try:
    seconds = vf.estimate_seconds(key, "digits", manager.speed(), manager.max_workers)
    size = vf.size_text(key, seconds) + (" · running now" if active else "")
    c3.caption(fmt.md_escape(size))
except ValueError as exc:
    c3.caption(str(exc))
error = st.session_state.pop("pp_error", None)
if error:
    st.error(f"Could not start: {fmt.md_escape(error)}", icon=":material/error:")

with st.expander("At the paper's scale: CIFAR-10 on a GPU (command line)", icon=":material/terminal:"):
    st.markdown("Download CIFAR-10 once (`python -m agd_viz download cifar10`), then run the whole figure into the "
                "run store; this page shows it under *Shown* below. Square loss, the paper's augmentation, batch 128 "
                "unless the figure varies it.")
    st.code(rep.command("cifar10"), language="bash")
    st.caption("The same runs as plain `train` commands:")
    st.code("\n".join(rep.train_commands("cifar10")), language="bash")

shown_scale = st.radio("Shown", paper.SCALES, key="pp_scale", horizontal=True, format_func=vf.SCALE_TITLES.get)
group = latest if shown_scale == "digits" else vf.latest_group(store, key, shown_scale)
if group is None:
    st.info(fmt.md_escape(vf.missing_text(key, shown_scale)), icon=":material/science:")
else:
    st.caption(fmt.md_escape(vf.group_text(group)))
    running = bool(active) and shown_scale == "digits"
    st.fragment(run_every=REFRESH_S if running else None)(_panel)(manager, group["id"], REFRESH_S if running else None)

with st.expander("Every item of the paper this app cites", icon=":material/menu_book:"):
    st.caption("One table (agd_viz.paper.ITEMS), checked against the paper's LaTeX; every page cites from it.")
    st.dataframe(vf.items_table(), hide_index=True, width="stretch", key="pp_items")
