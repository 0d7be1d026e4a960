"""The Live page's larger widgets, kept out of pages/live.py so the page stays a thin script of
what it shows in which order (docs/architecture.md): the form in the sidebar, the replay bar, the charts' layout, the
view options beside a comparison, and the landing. What they show is computed in agd_viz.views
(live_view, replay, boundary, live_panel) and agd_viz.charts.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from agd_viz import charts, fmt
from agd_viz.views import boundary, replay
from agd_viz.views import datasets as data_view
from agd_viz.views import live_form as form
from agd_viz.views import live_panel as panel
from agd_viz.views import live_view as view
from app_widgets import FormBinding, download_box, optimizer_picker, paper_presets, plot, show_notes, switch

__all__ = ["BIND", "FOLDED", "form_sidebar", "replay_bar", "live_charts", "view_options", "landing"]

LANDING_PICTURE = Path(__file__).resolve().parent / "docs" / "landing.png"


BIND = FormBinding("live_form", "lv_", form.FIELDS, form.OPTIMIZER_NAMES)


# Set when a session's first view of the page is a link to a comparison (pages/live.py): the form
# then starts folded, one click away, and stays as the person leaves it.
FOLDED = "lv_form_folded"


def _unfold() -> None:
    st.session_state[FOLDED] = False


def _load_preset(name: str) -> None:
    BIND.set(form.PRESETS[name].state())
    st.session_state["live_preset_note"] = name
    _unfold()  # a preset changes the form: show what it set


def _load_paper_preset(key: str) -> None:
    BIND.set(form.paper_preset_state(key))
    st.session_state["live_paper_note"] = key
    _unfold()


def form_sidebar(notes: dict, state: dict, data, available: dict) -> None:
    """The form in the sidebar, each control's notes right below it. Number boxes take any whole
    number: a value out of range is refused by the form's check, in red under the box, with Start
    disabled; a box's own range would keep the last valid value and train that instead."""
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
                   "the runs finish, the paper's numbers are shown beside the measured ones. Every figure of the "
                   "paper, one click each on digits: the Paper page."),
                  key_prefix="lv_paper_", loaded_key="live_paper_note", on_click=_load_paper_preset)

    if st.session_state.get(FOLDED) and not form.has_errors(notes):
        # Someone following a link to a comparison: its charts first, the form's forty-odd widgets
        # (and their code, loaded before the page can finish) only when asked for
        # (benchmarks/cold_draw.py). A form with an error is never folded: Start says to fix it.
        sb.subheader("Settings")
        sb.caption("The form holds the settings of the comparison shown (the line above its charts). "
                   "Open it to change them and start your own.")
        sb.button("Edit the settings", key="lv_form_unfold", icon=":material/tune:", width="stretch",
                  on_click=_unfold)
        return
    sb.subheader("Data and network")
    sb.selectbox("Dataset", form.DATASET_CHOICES, key=key("dataset"), format_func=data_view.title)
    show_notes(notes.get("dataset", []), sb)
    download_box(data, "lv_download", sb)
    if form.image_shape(state.get("dataset")) is not None:
        sb.radio("Architecture", form.ARCHS, key=key("arch"), horizontal=True, format_func=form.ARCH_TITLES.get,
                 help="MLP: fully connected. CNN: bias-free 3×3 convolutions with average pooling, then one "
                      "linear layer; depth counts the convolutions and that layer, width the channels.")
        show_notes(notes.get("arch", []), sb)
    sb.radio("Loss", form.LOSSES, key=key("loss"), horizontal=True, format_func=form.LOSS_TITLES.get, help=form.LOSS_HELP)
    if state.get("dataset") in form.AUGMENTABLE:
        sb.checkbox("Augment training batches", key=key("augment"), help=f"As the paper: {form.AUGMENTABLE[state['dataset']]}.")
    if state.get("dataset") in data_view.DOWNLOADABLE:
        sb.number_input("Training images (0 = all)", step=1000, key=key("train_samples"),
                        help="Train on a seeded subset of the training images.")
        show_notes(notes.get("train_samples", []), sb)
    for pair in (("depth", "width"), ("batch_size", "steps")):
        for col, name in zip(sb.columns(2), pair):
            f = form.FIELD[name]
            col.number_input(f.label, step=1, key=key(name))
        show_notes(notes.get(pair[0], []) + notes.get(pair[1], []), sb)
    c1, c2 = sb.columns(2)
    c1.number_input(form.FIELD["seed"].label, step=1, key=key("seed"))
    c2.selectbox("Device", form.DEVICES, key=key("device"))
    show_notes(notes.get("seed", []) + notes.get("device", []), sb)

    sb.subheader("Optimisers")
    optimizer_picker(sb, BIND.use_key, key, available, notes,
                     {"gain": "gain", **form.LR_FIELDS, **form.OPTION_FIELDS}, max_chars=form.MAX_OPTIONS_CHARS)
    show_notes(notes.get("optimizers", []), sb)
    sb.checkbox("Same init for all", key=key("same_init"),
                help="Give the baselines AGD's orthogonal initialisation too, so only the update differs.")
    show_notes(notes.get("same_init", []), sb)


def replay_bar(frames, playing: bool) -> int | None:
    """The replay's Play button and step slider (None: replay off, or nothing read yet). While
    playing, each tick of the Live panel's fragment moves the slider one frame on (`replay.advance`);
    at the end, or on Pause, the whole page reruns so the fragment's timer stops."""
    ss = st.session_state
    span = replay.step_span(fr.scalars for fr in frames.values())
    if not ss.get("lv_replay") or span is None:
        return None
    lo, hi = span
    at_end = ss.get("lv_replay_step") is None or ss.get("lv_replay_step") == ss.get("lv_replay_hi")
    ss["lv_replay_hi"] = hi
    step = hi if at_end else replay.clamp(ss.get("lv_replay_step"), lo, hi)  # at the end: follow a live run
    if playing:
        step = replay.advance(step, lo, hi)
    ss["lv_replay_step"] = step
    with st.container(horizontal=True, vertical_alignment="center", key="lv_replay_bar"):
        if st.button("Pause" if playing else "Play", key="lv_replay_toggle", width=110,
                     icon=":material/pause:" if playing else ":material/play_arrow:",
                     help=f"Play the comparison from the slider's step to its end in about {replay.REPLAY_S:g} s."):
            ss["lv_replay_play"] = not playing
            if not playing and step >= hi:
                ss["lv_replay_step"] = lo  # at the end: play from the start
            st.rerun()  # the whole page: the fragment's timer starts or stops
        st.slider("Replay step", lo, max(hi, lo + 1), key="lv_replay_step", label_visibility="collapsed")
    if playing and step >= hi:
        ss["lv_replay_play"] = False
        st.rerun()
    return ss["lv_replay_step"]


def live_charts(figs: dict, store, rows: list[dict], present: bool, step: int | None) -> None:
    """Loss and accuracy first (the first screen, sized by `live_view.chart_height`), then the step
    size and relative update, the decision boundaries of a 2-D set, and the per-layer charts while
    their expander is open; or only the chart chosen to fill the screen. `step`: the replay's."""
    ss, n = st.session_state, len(rows)
    focus = ss.get("lv_focus") or ""
    first_h = view.chart_height(present, n, step is not None, focus=bool(focus))
    pics = []
    if boundary.has_boundary((rows[0].get("spec") or {}).get("dataset")) and focus in ("", "boundary"):
        pics = boundary.boundary_figures(store, rows, step=step)
    for pair in ([("loss", "acc"), ("step_size", "rel_update"), ("boundary",)] if not focus else [(focus,)]):
        if pair == ("boundary",):
            if pics:
                st.markdown(f"**{panel.BOUNDARY_HELP[0]}**", help=panel.BOUNDARY_HELP[1])
            for pic, col in zip(pics, st.columns(min(n, 3)) * 3):
                with col:
                    if pic.figure is None:
                        st.caption(f"{fmt.md_escape(pic.label)}: {fmt.md_escape(pic.message)}")
                    else:
                        plot(pic.figure, f"lv_boundary_{pic.run_id}", present, height=first_h if focus else None)
            continue
        for col, name in zip(st.columns(2) if len(pair) == 2 else [st.container()], pair):
            with col:
                plot(figs[name], f"lv_chart_{name}", present, panel.CHART_HELP[name],
                     height=first_h if pair == ("loss", "acc") or focus else None)
    if focus:
        return
    # The heavy per-layer figures below the first screen: built and sent only while the expander is open.
    layers = st.expander("Layer by layer: weight norms and stable ranks", key="lv_layers", on_change="rerun",
                         icon=":material/stacks:")
    if layers.open:
        with layers:
            for name in view.LAYER_CHARTS:
                plot(figs[name], f"lv_chart_{name}", present, panel.CHART_HELP[name])
    _link_options()


def _link_options() -> None:
    """The chart options into the link from within the panel's fragment (opening the per-layer
    charts reruns only the fragment; the page writes its link on a whole run)."""
    ss = st.session_state
    wanted, written = view.option_params(ss), ss.get("live_written", {})
    if wanted != written.get("options"):
        kept = {k: v for k, v in st.query_params.to_dict().items() if k not in view.OPTION_NAMES}
        st.query_params.from_dict({**kept, **wanted})
        ss["live_written"] = {**written, "options": wanted}


def view_options(training: bool) -> None:
    """Beside a comparison: the chart options (in the link), one chart full screen, pause (while
    `training`: a finished comparison has nothing to pause), replay."""
    # Full screen sits in the popover, which mounts its widgets only when opened: a list box in the
    # top row would load its code (the largest of the page's widgets) on every cold page.
    with st.popover("Chart options", icon=":material/tune:"):
        st.selectbox("Full screen", tuple(view.FOCUS), key="lv_focus", format_func=view.FOCUS.get,
                     help="Show one chart alone, as large as the screen allows.")
        st.slider("Smoothing (EMA)", 0.0, 0.99, step=0.01, key="lv_smooth")
        st.toggle("Log-scale loss", key="lv_logy")
        st.radio("x axis", ("step", "time"), key="lv_x", horizontal=True,
                 format_func=lambda v: "step" if v == "step" else "wall time")
        st.radio("Loss and accuracy on", ("batch", "train", "test"), key="lv_split", horizontal=True,
                 format_func=lambda v: {"batch": "minibatch", "train": "train set", "test": "test set"}[v])
    if training:
        switch("Pause charts", "lv_pause", "Stop refreshing so you can zoom; training goes on.")
    switch("Replay", "lv_replay", "A step slider and a Play button: every chart as it was at that step.")


def landing(start_headline, args: tuple, disabled: bool, description: str) -> None:
    """No comparison yet: what AGD is in one sentence, the headline preset one click away, and a
    picture of what it shows."""
    with st.container(border=True, key="lv_landing"):
        text, picture = st.columns([2, 3], vertical_alignment="center")
        with text:
            st.markdown(view.WHAT_IS_AGD)
            st.button(f"Run “{view.HEADLINE}”", type="primary", key="lv_headline", icon=":material/rocket_launch:",
                      on_click=start_headline, args=args, disabled=disabled, help=description)
            st.caption("No runs yet: run the headline comparison, or load another preset (or set up your own "
                       "network) on the left and press **Start training**.")
        if LANDING_PICTURE.is_file():
            picture.image(str(LANDING_PICTURE), caption=view.LANDING_CAPTION, width="stretch")
    # Where the curves will appear; drawing a chart now also has the browser load and run its
    # plotting code (app_widgets.chart's Plotly.js) before Start instead of after it
    # (benchmarks/first_point.py).
    plot(charts.loss_figure([]), "lv_chart_empty", False, panel.CHART_HELP["loss"])
