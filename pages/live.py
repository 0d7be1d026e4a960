"""Live training: AGD beside baselines, with its step size, weight norms and stable ranks live.

Thin page (docs/architecture.md): widgets -> agd_viz.views.live_form (form, URL, checks) ->
JobManager (a worker process trains the comparison) -> agd_viz.views.live_panel (incremental reads)
-> agd_viz.charts (figures). The charts live in one fragment that polls the run store while any run
of the shown comparison is queued or running; when it sees them all ended it reruns the whole page
once, which re-creates the fragment without a timer, so polling stops.
"""

from __future__ import annotations

import time

import streamlit as st

from agd_viz import charts, fmt
from agd_viz import spec as spec_mod
from agd_viz.jobs import QueueFull
from agd_viz.views import boundary
from agd_viz.views import datasets as data_view
from agd_viz.views import live_form as form
from agd_viz.views import live_panel as panel
from agd_viz.views import paper as paper_view
from app_resources import job_manager, session_id
from app_widgets import (PRESENTER_CSS, FormBinding, download_box, limits_expander, optimizer_picker, paper_presets,
                         paper_table, plot, show_notes, sticky)

BIND = FormBinding("live_form", "lv_", form.FIELDS, form.OPTIMIZER_NAMES)


def _load_preset(name: str) -> None:
    BIND.set(form.PRESETS[name].state())
    st.session_state["live_preset_note"] = name


def _load_paper_preset(key: str) -> None:
    BIND.set(form.paper_preset_state(key))
    st.session_state["live_paper_note"] = key


def _apply_url() -> None:
    """A pasted or edited link wins over the session's form; the page's own link changes nothing."""
    ss = st.session_state
    link = form.read_link(st.query_params.to_dict(), ss.get("live_written", {}))
    if link.state is not None:
        BIND.set(link.state)
        ss["live_written"] = {**ss.get("live_written", {}), "fields": form.form_params(form.query_from_state(link.state))}
    if link.present is not None:
        ss["lv_present"] = ss["keep_lv_present"] = link.present
    if link.group is not None:
        ss["live_group"] = link.group
    ss["live_url_notes"] = [*ss.get("live_url_notes", []), *link.notes]


def _write_url(state: dict, group: int | None, present: bool) -> None:
    wanted = form.link_params(state, group, present)
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
    st.session_state["live_written"] = {"fields": form.form_params(wanted), "group": group, "present": present}


def _controls(notes: dict, state: dict, data, available: dict) -> None:
    """The form in the sidebar, each control's notes right below it."""
    sb, key = st.sidebar, BIND.key
    sb.subheader("Presets")
    for name, preset in form.PRESETS.items():
        sb.button(name, key=f"lv_preset_{name}", help=preset.description, on_click=_load_preset, args=(name,),
                  width="stretch")
    loaded = st.session_state.pop("live_preset_note", None)
    if loaded:
        sb.caption(f"Loaded “{loaded}”: {form.PRESETS[loaded].description}")
    paper_presets(form.PAPER_PRESETS, form.paper_preset_note,
                  ("The paper's comparisons, and beyond", "Rerun Bernstein et al. (2023) on its datasets; once "
                   "the runs finish, the paper's numbers are shown beside the measured ones."),
                  key_prefix="lv_paper_", loaded_key="live_paper_note", on_click=_load_paper_preset)

    sb.subheader("Data and network")
    sb.selectbox("Dataset", form.DATASET_CHOICES, key=key("dataset"), format_func=data_view.title)
    show_notes(notes.get("dataset", []), sb)
    download_box(data, "lv_download", sb)
    if form.image_shape(state.get("dataset")) is not None:
        sb.radio("Architecture", form.ARCHS, key=key("arch"), horizontal=True, format_func=form.ARCH_TITLES.get,
                 help="MLP: fully connected. CNN: bias-free 3×3 convolutions with average pooling, then one "
                      "linear layer; depth counts the convolutions and that layer, width the channels.")
        show_notes(notes.get("arch", []), sb)
    if state.get("dataset") in data_view.DOWNLOADABLE:
        f = form.FIELD["train_samples"]
        sb.number_input("Training images (0 = all)", min_value=int(f.lo), max_value=int(f.hi), step=1000,
                        key=key("train_samples"), help="Train on a seeded subset of the training images.")
        show_notes(notes.get("train_samples", []), sb)
    for pair in (("depth", "width"), ("batch_size", "steps")):
        for col, name in zip(sb.columns(2), pair):
            f = form.FIELD[name]
            col.number_input(f.label, min_value=int(f.lo), max_value=int(f.hi), step=1, key=key(name))
        show_notes(notes.get(pair[0], []) + notes.get(pair[1], []), sb)
    c1, c2 = sb.columns(2)
    f = form.FIELD["seed"]
    c1.number_input(f.label, min_value=int(f.lo), max_value=int(f.hi), step=1, key=key("seed"))
    c2.selectbox("Device", form.DEVICES, key=key("device"))
    show_notes(notes.get("seed", []) + notes.get("device", []), sb)

    sb.subheader("Optimisers")
    optimizer_picker(sb, BIND.use_key, key, available, notes,
                     {"gain": "gain", **form.LR_FIELDS, **form.OPTION_FIELDS}, max_chars=form.MAX_OPTIONS_CHARS)
    show_notes(notes.get("optimizers", []), sb)
    sb.checkbox("Same init for all", key=key("same_init"),
                help="Give the baselines AGD's orthogonal initialisation too, so only the update differs.")
    show_notes(notes.get("same_init", []), sb)


def _on_start(manager) -> None:
    """Start button: submit the comparison shown in the form (runs before the page redraws, so the
    page that follows already shows the new runs, Start disabled and Stop enabled)."""
    state = BIND.read()
    try:
        spec = spec_mod.RunSpec(**form.spec_fields(state))
        group_id, _ = manager.submit(spec, session=session_id())
    except (ValueError, QueueFull) as exc:  # SpecError is a ValueError
        st.session_state["live_start_error"] = str(exc)
        return
    st.session_state["live_group"] = group_id
    st.session_state["live_owned"] = [*st.session_state.get("live_owned", []), group_id]
    st.session_state["live_wait_first"] = group_id  # this rerun's panel waits for the first step
    st.session_state.pop("live_start_error", None)


def _status_block(rows, progress, frames, present: bool) -> None:
    """Per run: a progress bar with steps/s and ETA (or queue place, or the error), and the key
    numbers as metrics."""
    for row in rows:
        rid = row["id"]
        p = dict(progress.get(rid) or {"status": row["status"]})
        vals = panel.latest_values(frames[rid].scalars if rid in frames else None)
        with st.container(border=True, key=f"lv_run_{rid}"):
            cols = st.columns([2.6, 1, 1.1, 1.1, 1.1] if not present else [2, 1, 1.1, 1.1])
            with cols[0]:
                st.markdown(charts.md_label(row.get("label") or row["optimizer"], row["optimizer"]))
                st.progress(panel.progress_fraction(p), text=fmt.md_escape(panel.progress_text("", p)))
            cols[1].metric("Step", f"{vals['step']:,}" if vals["step"] is not None else "–")
            cols[2].metric("Loss", fmt.number(vals["loss"]))
            if vals["eta"] is not None:
                cols[3].metric("η (AGD)", fmt.number(vals["eta"]))
            else:
                cols[3].metric("Learning rate", fmt.number(vals["lr"]))
            if not present:
                cols[4].metric("Accuracy", fmt.percent(vals["acc"]))
            status, text = p.get("status"), fmt.md_escape(row.get("error") or p.get("status")).replace("\n", "  \n")
            if status in ("failed", "diverged", "interrupted"):
                st.error(f"{status.capitalize()}: {text}", icon=":material/error:")
            elif status == "cancelled" and row.get("error"):
                st.caption(f"Stopped: {text}")


def _refresh_interval(group_id: int | None, rows: list[dict]) -> float:
    frames = st.session_state.get("live_frames")
    read = frames is not None and st.session_state.get("live_frames_group") == group_id and frames.any_step_read()
    return panel.next_interval(read, rows, st.session_state.get("live_tick_s"))


def _panel(manager, group_id: int, present: bool, interval: float | None) -> None:
    """Progress, key numbers and charts of one comparison; re-run every `interval` seconds while
    its runs train (see module docstring for how the timer stops)."""
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
    _status_block(rows, progress, frames, present)
    runs = [charts.RunData(run_id=r["id"], label=r.get("label") or r["optimizer"], optimizer=r["optimizer"],
                           scalars=frames[r["id"]].scalars, layers=frames[r["id"]].layers, status=r["status"])
            for r in rows]
    figs = charts.all_live_figures(runs, smoothing=float(ss.get("lv_smooth", 0.6)), x=ss.get("lv_x", "step"),
                                   split=ss.get("lv_split", "batch"), log_loss=bool(ss.get("lv_logy", False)))
    for pair in (("loss", "acc"), ("step_size", "rel_update"), "boundary", ("w_spec_scaled", "w_srank"), ("g_srank",)):
        if pair == "boundary":
            if boundary.has_boundary((rows[0].get("spec") or {}).get("dataset")):
                st.markdown(f"**{panel.BOUNDARY_HELP[0]}**", help=panel.BOUNDARY_HELP[1])
                for pic, col in zip(boundary.boundary_figures(store, rows), st.columns(min(len(rows), 3)) * 3):
                    with col:
                        if pic.figure is None:
                            st.caption(f"{fmt.md_escape(pic.label)}: {fmt.md_escape(pic.message)}")
                        else:
                            plot(pic.figure, f"lv_boundary_{pic.run_id}", present)
            continue
        for col, name in zip(st.columns(2) if len(pair) == 2 else [st.container()], pair):
            with col:
                plot(figs[name], f"lv_chart_{name}", present, panel.CHART_HELP[name])
    if interval is None:
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
_apply_url()
state = BIND.read()
present, paused = bool(sticky("lv_present", False)), bool(sticky("lv_pause", False))
for key_, default in (("lv_smooth", 0.6), ("lv_logy", False), ("lv_x", "step"), ("lv_split", "batch")):
    sticky(key_, default)
data = data_view.data_status(state.get("dataset"))
available = form.optimizer_statuses()
notes = form.check(state, devices=manager.devices(), device_kind=manager.device_kind("auto"), data=data,
                   available=available, speed=manager.speed())

if present:
    st.html(PRESENTER_CSS)
else:
    _controls(notes, state, data, available)
    limits_expander(manager, st.sidebar, device=state.get("device", "auto"), page_steps=form.UI_LIMITS["steps"][1])

group_id, why = panel.shown_group(store, st.session_state.get("live_group"), st.session_state.get("live_owned", ()))
if why:
    st.session_state.setdefault("live_url_notes", []).append(why)
st.session_state["live_group"] = group_id

st.title("Live training")
if not present:
    st.caption("AGD trains with no learning rate. Pick a preset or set up a comparison on the left, press "
               "Start, and watch the step size AGD chooses, the weight norms it keeps and the stable ranks of "
               "weights and gradients, layer by layer.")
for text in st.session_state.pop("live_url_notes", []):
    st.warning(fmt.md_escape(text), icon=":material/link_off:")

rows = panel.group_runs(store, group_id)
# Only this session's own comparison holds its Start and Stop: another attendee's, opened by a
# link, is watched, never stopped from here.
training = [r["id"] for r in rows if r["status"] in ("queued", "running")]
active = training if group_id in st.session_state.get("live_owned", ()) else []
blocked = form.has_errors(notes)
top = st.columns([1.3, 0.8, 1.4, 1.3, 3], vertical_alignment="center")
top[0].button("Start training", type="primary", key="lv_start", disabled=blocked or bool(active),
              icon=":material/play_arrow:", on_click=_on_start, args=(manager,))
top[1].button("Stop", key="lv_stop", disabled=not active, icon=":material/stop:",
              on_click=manager.stop, args=(active,))
top[2].toggle("Presenter view", key="lv_present",
              help="Hide the controls; large numbers and charts for a projector. Link: ?present=1")
top[3].toggle("Pause charts", key="lv_pause", help="Stop refreshing so you can zoom; training goes on.")
with top[4]:
    if blocked and data is not None and not data.downloaded and not present:
        st.caption(f"{fmt.md_escape(data.title)} is not downloaded yet: see the note under Dataset.")
    elif blocked:
        st.caption("Fix the settings marked in red to start." if not present
                   else "The configuration has errors: turn off the presenter view to fix them.")
    elif active:
        st.caption("This comparison is still training: Stop it to start another.")
    show_notes(notes.get("start", []))
error = st.session_state.pop("live_start_error", None)
if error:
    st.error(f"Could not start: {fmt.md_escape(error)}", icon=":material/error:")
_write_url(state, group_id, present)

if group_id is None:
    st.info("No runs yet. Load a preset (“Adam fails at depth 32” is the classic) and press **Start training**.",
            icon=":material/rocket_launch:")
    # Where the curves will appear; drawing a chart now also has the browser load its plotting code
    # (~2 s on a 2-core laptop) before Start instead of after it (benchmarks/first_point.py).
    plot(charts.loss_figure([]), "lv_chart_empty", present, panel.CHART_HELP["loss"])
else:
    shown_spec = (store.get_group(group_id) or {}).get("spec") or (rows[0]["spec"] if rows else {})
    st.subheader(f"Comparison {group_id}")
    c1, c2 = st.columns([5, 1], vertical_alignment="center")
    c1.caption(fmt.md_escape(spec_mod.describe(shown_spec)))
    if not present and shown_spec:
        c2.button("Load these settings", key="lv_load_group", type="tertiary", on_click=BIND.set,
                  args=(form.state_from_spec(shown_spec),), help="Put this comparison's settings in the form.")
    paper_table(paper_view.comparison_table(shown_spec, rows), "lv_paper_table", "Final test accuracy reported "
                "by Bernstein et al. (2023) for this setting, beside this comparison's once its runs finish.")
    if not present:
        with st.expander("Chart options", icon=":material/tune:"):
            o1, o2, o3, o4 = st.columns(4)
            o1.slider("Smoothing (EMA)", 0.0, 0.99, step=0.01, key="lv_smooth")
            o2.toggle("Log-scale loss", key="lv_logy")
            o3.radio("x axis", ("step", "time"), key="lv_x", horizontal=True,
                     format_func=lambda v: "step" if v == "step" else "wall time")
            o4.radio("Loss and accuracy on", ("batch", "train", "test"), key="lv_split", horizontal=True,
                     format_func=lambda v: {"batch": "minibatch", "train": "train set", "test": "test set"}[v])
    interval = _refresh_interval(group_id, rows) if training and not paused else None
    st.fragment(run_every=interval)(_panel)(manager, group_id, present, interval)
