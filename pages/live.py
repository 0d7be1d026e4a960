"""Live training: AGD beside baselines, with its step size, weight norms and stable ranks live.

Thin page (docs/architecture.md): widgets -> agd_viz.views.live_form (form, URL, checks) ->
JobManager (a worker process trains the comparison) -> agd_viz.views.live_panel (incremental reads)
-> agd_viz.charts (figures); views.live_view holds the chart options in the link, the status
chips and the presenter sizes, views.replay the step slider. The charts live in one fragment that
polls the run store while any run of the shown comparison is queued or running (or while a replay
plays); when it sees them all ended it reruns the whole page once, which re-creates the fragment
without a timer, so polling stops.
"""

from __future__ import annotations

import time

import streamlit as st

from agd_viz import charts, fmt
from agd_viz import spec as spec_mod
from agd_viz.jobs import Refused
from agd_viz.views import datasets as data_view
from agd_viz.views import live_form as form
from agd_viz.views import live_panel as panel
from agd_viz.views import live_view as view
from agd_viz.views import paper as paper_view
from agd_viz.views import replay
from app_live import BIND, FOLDED, form_sidebar, landing, live_charts, replay_bar, view_options
from app_resources import job_manager, operator_key, session_id
from app_widgets import (PAGE_CSS, PRESENTER_CSS, copy_link_button, limits_expander, paper_table, show_notes,
                         status_line, sticky, stop_runs, switch)

def _apply_url(store) -> None:
    """A pasted or edited link wins over the session's form and chart options; the page's own link
    changes nothing; a link opening a comparison puts its settings in the form."""
    ss, params = st.session_state, st.query_params.to_dict()
    first, written = "live_written" not in ss, ss.get("live_written", {})
    link = form.read_link(params, written, form.stored_form(store, form.parse_group(params.get(form.GROUP_PARAM))))
    if link.state is not None:
        BIND.set(link.state)
    if link.present is not None:
        ss["lv_present"] = ss["keep_lv_present"] = link.present
    if link.group is not None:
        ss["live_group"] = link.group
        if first and not form.form_params(params):
            ss[FOLDED] = True  # a link to a comparison, as it ran: its charts first (app_live.form_sidebar)
    options, notes = view.read_options(params, written.get("options"))
    for key, value in (options or {}).items():
        ss[key] = ss[f"keep_{key}"] = value
    ss["live_written"] = {**written, "fields": form.form_params(params), "options": view.option_params(ss)}
    ss["live_url_notes"] = [*ss.get("live_url_notes", []), *link.notes, *notes]


def _write_url(state: dict, group: int | None, present: bool, base: dict | None) -> None:
    wanted = {**form.link_params(state, group, present, base), **view.option_params(st.session_state)}
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
    st.session_state["live_written"] = {"fields": form.form_params(wanted), "group": group, "present": present,
                                        "options": view.option_params(st.session_state)}


def _on_start(manager) -> None:
    """Start button: submit the comparison shown in the form (runs before the page redraws, so the
    page that follows already shows the new runs, Start disabled and Stop enabled). The form is
    checked again here: what runs is what the boxes show, never an older valid value."""
    state = BIND.read()
    notes = form.check(state, devices=manager.devices(), device_kind=manager.device_kind("auto"),
                       data=data_view.data_status(state.get("dataset")), speed=manager.speed())
    try:
        if form.has_errors(notes):
            raise ValueError("fix the settings marked in red first.")
        spec = spec_mod.RunSpec(**form.spec_fields(state))
        group_id, _ = manager.submit(spec, session=session_id())
    except (ValueError, Refused) as exc:  # SpecError is a ValueError
        st.session_state["live_start_error"] = str(exc)
        return
    st.session_state["live_group"] = group_id
    st.session_state["live_wait_first"] = group_id  # this rerun's panel waits for the first step
    st.session_state.pop("live_start_error", None)
    st.session_state.update(lv_replay=False, keep_lv_replay=False, lv_replay_play=False)  # show it live


def _start_headline(manager) -> None:
    BIND.set(form.PRESETS[view.HEADLINE].state())
    _on_start(manager)


def _status_block(rows, progress, runs, present: bool) -> None:
    """Per run one line: its name, progress (steps/s, ETA, queue place) and latest numbers as
    chips over a thin progress bar; the error of a run that failed. Close together, in one
    container, so four runs still leave the charts on a 720 px screen."""
    block = st.container(gap="xxsmall")
    for row, run in zip(rows, runs):
        rid = row["id"]
        p = dict(progress.get(rid) or {"status": row["status"]})
        with block.container(key=f"lv_run_{rid}", gap="xxsmall"):
            status_line(run.label, charts.color_for(run.optimizer), panel.progress_text("", p),
                        panel.progress_fraction(p), view.status_chips(panel.latest_values(run.scalars)), present)
            status, text = p.get("status"), fmt.md_escape(row.get("error") or p.get("status")).replace("\n", "  \n")
            if status in ("failed", "diverged", "interrupted"):
                st.error(f"{status.capitalize()}: {text}", icon=":material/error:")
            elif status == "cancelled" and row.get("error"):
                st.caption(f"Stopped: {text}")


def _refresh_interval(group_id: int | None, rows: list[dict]) -> float:
    frames = st.session_state.get("live_frames")
    read = frames is not None and st.session_state.get("live_frames_group") == group_id and frames.any_step_read()
    return panel.next_interval(read, rows, st.session_state.get("live_tick_s"))


def _panel(manager, group_id: int, present: bool, interval: float | None, playing: bool = False) -> None:
    """Progress, key numbers and charts of one comparison (or of its replay at the slider's step);
    re-run every `interval` seconds while its runs train or a replay plays (see module docstring
    for how the timer stops)."""
    started, store, ss = time.perf_counter(), manager.store, st.session_state
    rows = panel.group_runs(store, group_id)
    if not rows:
        st.info(f"Comparison {group_id} has no runs (it may have been deleted).")
        return
    run_ids = [r["id"] for r in rows]
    if ss.pop("live_wait_first", None) == group_id:
        panel.wait_first_step(store, run_ids)
        started = time.perf_counter()  # the wait is not the refresh's cost
    progress = manager.progress(run_ids)
    if ss.get("live_frames") is None or ss.get("live_frames_group") != group_id:
        ss["live_frames"], ss["live_frames_group"] = panel.LiveFrames(), group_id
    frames = ss["live_frames"].refresh(store, run_ids)
    rows = panel.group_runs(store, group_id)  # a run that just ended shows its end status
    step = replay_bar(frames, playing)
    runs = [charts.RunData(run_id=r["id"], label=r.get("label") or r["optimizer"], optimizer=r["optimizer"],
                           scalars=replay.up_to(frames[r["id"]].scalars, step),
                           layers=replay.up_to(frames[r["id"]].layers, step), status=r["status"])
            for r in rows]
    _status_block(rows, progress, runs, present)
    figs = charts.all_live_figures(runs, smoothing=float(ss.get("lv_smooth", 0.6)), x=ss.get("lv_x", "step"),
                                   split=ss.get("lv_split", "batch"), log_loss=bool(ss.get("lv_logy", False)),
                                   names=view.figures_shown(ss.get("lv_focus") or "", bool(ss.get("lv_layers"))),
                                   lemma8_gaps=panel.lemma8_gaps(rows[0].get("spec") or {}))
    span = replay.x_span((frames[r].scalars for r in run_ids), ss.get("lv_x", "step")) if step is not None else None
    if span is not None:
        charts.hold_x(figs, *span)
    live_charts(figs, store, rows, present, step)
    if interval is None or playing:
        return
    if panel.all_final(manager.progress(run_ids), run_ids):
        st.rerun()  # a full run re-creates this fragment without a timer
    tick = time.perf_counter() - started
    ss["live_tick_s"] = tick if ss.get("live_tick_s") is None else 0.7 * ss["live_tick_s"] + 0.3 * tick
    if panel.interval_drifted(interval, _refresh_interval(group_id, rows)):
        st.rerun()  # re-create the timer at the new interval


# -------------------------------------------------------------------------------------------------
# Page

manager = job_manager()
store = manager.store
_apply_url(store)
state = BIND.read()
present, paused = bool(sticky("lv_present", False)), bool(sticky("lv_pause", False))
for key_, default in {**view.OPTION_DEFAULTS, "lv_replay": False}.items():
    # Set again on every run: the Chart options popover mounts its widgets only when opened, and a
    # widget mounting after a run that did not set its value would start at its default.
    st.session_state[key_] = sticky(key_, default)
data = data_view.data_status(state.get("dataset"))
available = form.optimizer_statuses()
notes = form.check(state, devices=manager.devices(), device_kind=manager.device_kind("auto"), data=data,
                   available=available, speed=manager.speed())

st.html(PRESENTER_CSS if present else PAGE_CSS)

# The page's top (title, buttons, notes) is a container filled after the comparison's charts: in a
# cold browser the first elements to arrive decide which code it fetches first, and the charts'
# library (the largest by far) then no longer queues behind the top's widgets
# (benchmarks/cold_draw.py).
head = st.container()

# The comparisons this browser started (recorded with them in the store, so a reload keeps them).
owned = [g["id"] for g in store.list_groups(kind="compare", owner=session_id())]
group_id, why = panel.shown_group(store, st.session_state.get("live_group"), owned)
if why:
    st.session_state.setdefault("live_url_notes", []).append(why)
st.session_state["live_group"] = group_id
rows = panel.group_runs(store, group_id)
# Only this session's own comparison holds its Start and Stop: another attendee's, opened by a
# link, is watched, never stopped from here.
training = [r["id"] for r in rows if r["status"] in ("queued", "running")]
active = training if group_id in owned or operator_key() else []
blocked = form.has_errors(notes)
shown_form = form.stored_form(store, group_id)
_write_url(state, group_id, present, shown_form)

if group_id is None:
    landing(_start_headline, (manager,), bool(active), form.PRESETS[view.HEADLINE].description)
else:
    shown_spec = (store.get_group(group_id) or {}).get("spec") or (rows[0]["spec"] if rows else {})
    with st.container(horizontal=True, vertical_alignment="center", key="lv_view"):
        st.subheader(f"Comparison {group_id}", width="content")
        st.caption(fmt.md_escape(spec_mod.describe(shown_spec)), width="content")
        if not present and shown_spec and shown_form is not None and shown_form != state:
            st.button("Load these settings", key="lv_load_group", type="tertiary", on_click=BIND.set,
                      args=(shown_form,), help="Put this comparison's settings in the form.")
    playing = bool(st.session_state.get("lv_replay_play") and st.session_state.get("lv_replay"))
    if playing:
        interval = replay.TICK_S
    else:
        interval = _refresh_interval(group_id, rows) if training and not paused else None
    st.fragment(run_every=interval)(_panel)(manager, group_id, present, interval, playing)
    paper_table(paper_view.comparison_table(shown_spec, rows), "lv_paper_table", "Final test accuracy reported "
                "by Bernstein et al. (2023) for this setting, beside this comparison's once its runs finish.")

with head:
    if not present:
        st.title("Live training")
        st.caption("AGD trains with no learning rate. Pick a preset or set up a comparison on the left, press "
                   "Start, and watch the step size AGD chooses, how far each layer's weight norm moves and the stable ranks of "
                   "weights and gradients, layer by layer.")
    for text in st.session_state.pop("live_url_notes", []):
        st.warning(fmt.md_escape(text), icon=":material/link_off:")

    with st.container(horizontal=True, vertical_alignment="center", key="lv_top"):
        st.button("Start training", type="primary", key="lv_start", disabled=blocked or bool(active),
                  icon=":material/play_arrow:", on_click=_on_start, args=(manager,))
        st.button("Stop", key="lv_stop", disabled=not active, icon=":material/stop:", on_click=stop_runs,
                  args=(manager, active, "live_stop_error"))
        switch("Presenter view", "lv_present",
               "Hide the controls; large numbers and charts for a projector. Link: ?present=1")
        copy_link_button()
        if group_id is not None:
            view_options(bool(training))
    if blocked and data is not None and not data.downloaded and not present:
        st.caption(f"{fmt.md_escape(data.title)} is not downloaded yet: see the note under Dataset.")
    elif blocked:
        st.caption("Fix the settings marked in red to start." if not present
                   else "The configuration has errors: turn off the presenter view to fix them.")
    elif active:
        st.caption("This comparison is still training: Stop it to start another.")
    show_notes(notes.get("start", []))
    for verb in ("start", "stop"):
        if error := st.session_state.pop(f"live_{verb}_error", None):
            st.error(f"Could not {verb}: {fmt.md_escape(error)}", icon=":material/error:")


# The form last: its forty-odd widgets reach the browser after the charts, so a link to a finished
# comparison starts loading the chart library and drawing first (benchmarks/cold_draw.py).
if not present:
    form_sidebar(notes, state, data, available)
    limits_expander(manager, "lv_limits", st.sidebar, device=state.get("device", "auto"), page_steps=form.UI_LIMITS["steps"][1])
