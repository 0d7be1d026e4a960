"""Live training: AGD beside baselines, with its step size, weight norms and stable ranks live.

Thin page: widgets -> agd_viz.live (form, URL, checks, incremental reads) -> agd_viz.jobs (runs in
worker processes) -> agd_viz.charts (figures). The charts live in one fragment that polls the run
store while any run of the shown comparison is queued or running; when it sees them all ended it
reruns the whole page once, which re-creates the fragment without a timer, so polling stops.
"""

from __future__ import annotations

import time

import streamlit as st

from agd_viz import charts, live
from agd_viz.jobs import QueueFull
from agd_viz.snapshots import snapshot_path
from app_resources import job_manager, limits_expander, session_id
from app_widgets import download_box, paper_presets

REFRESH_S = 1.0  # seconds between chart refreshes while runs train (longer on a busy server)
FIRST_POINTS_REFRESH_S = 0.25  # while a run trains but no step has reached the charts yet
FIELD_KEY = "lv_{}".format  # widget key of a form field
USE_KEY = "lv_use_{}".format  # checkbox "train this optimiser"

# Presenter view: bigger type, taller charts, no sidebar. A constant string: nothing a user typed
# ever reaches unsafe_allow_html.
PRESENTER_CSS = """
<style>
section[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"] { display: none; }
[data-testid="stAppViewContainer"] .block-container { max-width: 100%; padding-top: 1.5rem; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.2rem; }
[data-testid="stMetricValue"], [data-testid="stMetricValue"] * { font-size: 3.4rem !important; line-height: 1.1; }
[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] * { font-size: 1.3rem !important; }
h1 { font-size: 3rem; }
</style>
"""
PRESENTER_SCALE = 1.35
PRESENTER_FONT = 17

CHART_HELP = {
    "loss": ("Loss", "Minibatch (or full train/test set) loss per optimiser. Faint: raw; bold: EMA."),
    "acc": ("Accuracy", "Classification accuracy on the same split."),
    "step_size": ("Step size", "AGD's automatic η = log((1 + √(1 + 4G)) / 2) from its gradient "
                  "summary G (lower panel); baselines' learning rates dashed (Prodigy and D-Adapt "
                  "Adam: the step they adapt as they train, d·lr)."),
    "rel_update": ("Relative update per layer", "‖ΔW‖_F / ‖W‖_F each step: the step size that "
                   "compares across optimisers. Line: mean over layers; band: min to max."),
    "w_spec_scaled": ("Weight spectral norm, scaled", "‖W_l‖_* / √(d_out / d_in) per layer (light: "
                      "first layer, dark: last). AGD's initialisation and update hold it near 1."),
    "w_srank": ("Stable rank of the weights", "‖W‖_F² / ‖W‖_*² per layer (rows) and step (columns)."),
    "g_srank": ("Stable rank of the gradients", "Low stable rank: the gradient is close to rank one, "
                "which is what AGD's bound assumes."),
}


# -------------------------------------------------------------------------------------------------
# Form state <-> widgets


def _form() -> dict:
    if "live_form" not in st.session_state:
        st.session_state["live_form"] = live.default_state()
    return st.session_state["live_form"]


def _widget_values(state: dict) -> dict:
    """Session-state values of every widget for a form state."""
    out = {FIELD_KEY(f.name): state[f.name] for f in live.FIELDS if f.name != "optimizers"}
    for name in live.OPTIMIZER_NAMES:
        out[USE_KEY(name)] = name in state["optimizers"]
    return out


def _set_form(state: dict) -> None:
    st.session_state["live_form"] = dict(state)
    for key, value in _widget_values(state).items():
        st.session_state[key] = value


def _load_preset(name: str) -> None:
    _set_form(live.PRESETS[name].state())
    st.session_state["live_preset_note"] = name


def _load_paper_preset(key: str) -> None:
    _set_form(live.paper_preset_state(key))
    st.session_state["live_paper_note"] = key


def _read_widgets() -> dict:
    state = dict(_form())
    for f in live.FIELDS:
        key = FIELD_KEY(f.name)
        if f.name != "optimizers" and key in st.session_state:
            state[f.name] = st.session_state[key]
    chosen = [n for n in live.OPTIMIZER_NAMES
              if st.session_state.get(USE_KEY(n), n in state["optimizers"])]
    state["optimizers"] = tuple(chosen)
    st.session_state["live_form"] = state
    return state


def _show_notes(notes: list) -> None:
    for note in notes:
        if note.level == "error":
            st.error(note.text, icon=":material/error:")
        elif note.level == "warning":
            st.warning(note.text, icon=":material/warning:")
        else:
            st.caption(note.text)


# -------------------------------------------------------------------------------------------------
# URL


def _apply_url(datasets) -> None:
    """A link's configuration wins over the session's when it differs from what this page last
    wrote to the URL (someone pasted or edited a link); otherwise the session's state stands."""
    params = st.query_params.to_dict()
    fields = live.form_params(params)
    if fields and fields != st.session_state.get("live_url_written"):
        state, notes = live.state_from_query(params, datasets=datasets)
        _set_form(state)
        st.session_state["live_url_notes"] = notes
        st.session_state["live_url_written"] = live.form_params(live.query_from_state(state))
    if live.PRESENT_PARAM in params:
        flag = live.parse_flag(params[live.PRESENT_PARAM])
        if st.session_state.get("live_present_written") != flag:
            st.session_state["lv_present"] = st.session_state["keep_lv_present"] = flag
            st.session_state["live_present_written"] = flag
    group = live.parse_group(params.get(live.GROUP_PARAM))
    if group is not None and group != st.session_state.get("live_group_written"):
        st.session_state["live_group"] = group
        st.session_state["live_group_written"] = group
    elif live.GROUP_PARAM in params and group is None:
        st.session_state["live_url_notes"] = [
            *st.session_state.get("live_url_notes", []),
            f"The link's group ({str(params[live.GROUP_PARAM])[:20]!r}) is not a run group number; "
            "showing the latest comparison instead.",
        ]


def _write_url(state: dict, group: int | None, present: bool) -> None:
    wanted = live.query_from_state(state)
    if group is not None:
        wanted[live.GROUP_PARAM] = str(group)
    if present:
        wanted[live.PRESENT_PARAM] = "1"
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
    st.session_state["live_url_written"] = live.form_params(wanted)
    st.session_state["live_group_written"] = group
    st.session_state["live_present_written"] = present


# -------------------------------------------------------------------------------------------------
# Controls (sidebar)


def _controls(notes: dict, datasets, state: dict, data, available: dict) -> None:
    """Draw the form in the sidebar, each control's notes right below it. `data`: the chosen data
    set's download status (None: built in); `available`: which optional optimisers are installed."""
    sb = st.sidebar
    sb.subheader("Presets")
    for name, preset in live.PRESETS.items():
        sb.button(name, key=f"lv_preset_{name}", help=preset.description, on_click=_load_preset,
                  args=(name,), width="stretch")
    loaded = st.session_state.pop("live_preset_note", None)
    if loaded:
        sb.caption(f"Loaded “{loaded}”: {live.PRESETS[loaded].description}")
    paper_presets(live.PAPER_PRESETS, live.paper_preset_note,
                  ("The paper's comparisons, and beyond",
                   "Rerun Bernstein et al. (2023) on its data sets; once the runs finish, the paper's "
                   "numbers are shown beside the measured ones."),
                  key_prefix="lv_paper_", loaded_key="live_paper_note", on_click=_load_paper_preset)

    sb.subheader("Data and network")
    sb.selectbox("Dataset", datasets, key=FIELD_KEY("dataset"), format_func=live.dataset_title)
    _show_notes_in(sb, notes.get("dataset", []))
    download_box(data, "lv_download", sb)
    if live.image_shape(state.get("dataset")) is not None:
        sb.radio("Architecture", live.ARCHS, key=FIELD_KEY("arch"), horizontal=True,
                 format_func=lambda a: live.ARCH_TITLES.get(a, a),
                 help="MLP: fully connected. CNN: bias-free 3×3 convolutions with average pooling, then "
                      "one linear layer; depth counts the convolutions and that layer, width the channels.")
        _show_notes_in(sb, notes.get("arch", []))
    if state.get("dataset") in live.DOWNLOADABLE:
        f = live.FIELD["train_samples"]
        sb.number_input("Training images (0 = all)", min_value=int(f.lo), max_value=int(f.hi), step=1000,
                        key=FIELD_KEY("train_samples"),
                        help="Train on a seeded subset of the training images for a quicker run.")
        _show_notes_in(sb, notes.get("train_samples", []))
    c1, c2 = sb.columns(2)
    for col, name in ((c1, "depth"), (c2, "width")):
        f = live.FIELD[name]
        col.number_input(f.label, min_value=int(f.lo), max_value=int(f.hi), step=1, key=FIELD_KEY(name))
    _show_notes_in(sb, notes.get("depth", []) + notes.get("width", []))
    c1, c2 = sb.columns(2)
    for col, name in ((c1, "batch_size"), (c2, "steps")):
        f = live.FIELD[name]
        col.number_input(f.label, min_value=int(f.lo), max_value=int(f.hi), step=1, key=FIELD_KEY(name))
    _show_notes_in(sb, notes.get("batch_size", []) + notes.get("steps", []))
    c1, c2 = sb.columns(2)
    f = live.FIELD["seed"]
    c1.number_input(f.label, min_value=int(f.lo), max_value=int(f.hi), step=1, key=FIELD_KEY("seed"))
    c2.selectbox("Device", live.DEVICES, key=FIELD_KEY("device"))
    _show_notes_in(sb, notes.get("seed", []) + notes.get("device", []))

    sb.subheader("Optimisers")
    sb.checkbox("AGD (no learning rate)", key=USE_KEY("agd"))
    if st.session_state.get(USE_KEY("agd")):
        sb.number_input("AGD gain", min_value=0.01, max_value=live.MAX_GAIN, step=0.5, format="%g",
                        key=FIELD_KEY("gain"), help="Scales AGD's update (not η). 1 is the paper's setting.")
        _show_notes_in(sb, notes.get("gain", []))
    for name in ("adam", "sgd", "adamw"):
        title = live.OPTIMIZER_TITLES[name]
        sb.checkbox(title, key=USE_KEY(name))
        if st.session_state.get(USE_KEY(name)):
            key = live.LR_FIELDS[name]
            sb.text_input(f"{title} learning rates", key=FIELD_KEY(key), max_chars=80,
                          help="One or more, separated by commas: 1e-3, 1e-2. Each is its own run.")
            _show_notes_in(sb, notes.get(key, []))
    sb.caption("Learning-rate-free (and schedule-free) baselines")
    for name in live.LR_FREE:
        title, key = live.OPTIMIZER_TITLES[name], live.OPTION_FIELDS[name]
        ok, install = available.get(name, (True, None))
        checked = bool(st.session_state.get(USE_KEY(name)))
        sb.checkbox(title, key=USE_KEY(name), disabled=not ok and not checked,
                    help=live.OPTION_HELP[name] if ok else f"Not installed here: {install}")
        if not ok and not checked:
            sb.caption(f"Not installed here: `{install}`" if install else "Not available here.")
        elif ok and checked:
            valid = ", ".join(live.OPTION_DEFAULTS[name])
            sb.text_input(f"{title} options", key=FIELD_KEY(key), max_chars=live.MAX_OPTIONS_CHARS,
                          placeholder=live.OPTION_HINTS[name],
                          help=f"{live.OPTION_HELP[name]} Options as key=value, separated by commas; "
                               f"empty: the package's defaults. Keys: {valid}.")
        _show_notes_in(sb, notes.get(key, []))
    _show_notes_in(sb, notes.get("optimizers", []))
    sb.checkbox("Same init for all", key=FIELD_KEY("same_init"),
                help="Give the baselines AGD's orthogonal initialisation too, so only the update differs.")
    _show_notes_in(sb, notes.get("same_init", []))


def _show_notes_in(container, notes: list) -> None:
    with container:
        _show_notes(notes)


@st.cache_resource(show_spinner=False)
def _available_devices() -> tuple:
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return tuple(out)


# -------------------------------------------------------------------------------------------------
# Starting and stopping


def _on_start(manager) -> None:
    """Start button: submit the comparison shown in the form (runs before the page redraws, so
    the page that follows already shows the new runs, Start disabled and Stop enabled)."""
    from agd_viz.train import RunSpec, SpecError  # torch comes with it: only on Start

    state = _read_widgets()
    try:
        spec = RunSpec(**live.spec_fields(state))
        group_id, _ = manager.submit(spec, session=session_id())
    except (SpecError, ValueError, QueueFull) as exc:
        st.session_state["live_start_error"] = str(exc)
        return
    st.session_state["live_group"] = group_id
    st.session_state.pop("live_start_error", None)


def _on_stop(manager, run_ids: list[int]) -> None:
    """Stop button: cancel every run of the comparison still queued or running, and give the
    workers a moment to record it so the page that follows shows them stopped."""
    for rid in run_ids:
        manager.cancel(rid)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        progress = manager.progress(run_ids)
        if live.all_final(progress, run_ids):
            break
        time.sleep(0.1)


def _group_runs(store, group_id: int | None) -> list[dict]:
    if group_id is None:
        return []
    return sorted(store.list_runs(group_id=group_id), key=lambda r: r["id"])


def _latest_group(store) -> int | None:
    groups = store.list_groups(kind="compare")
    return groups[0]["id"] if groups else None


def _describe(spec: dict) -> str:
    if not spec:
        return ""
    arch = " · CNN" if spec.get("arch") == "cnn" else ""
    subset = (spec.get("data_options") or {}).get("train_samples")
    arch += f" · {subset:,} training images" if isinstance(subset, int) else ""
    return (f"{live.dataset_title(spec.get('dataset', '?'))}{arch} · depth {spec.get('depth')} × width "
            f"{spec.get('width')} · batch {spec.get('batch_size')} · {spec.get('steps')} steps · "
            f"seed {spec.get('seed')}" + (" · same init" if spec.get("same_init") else ""))


# -------------------------------------------------------------------------------------------------
# The live panel


def _run_data(rows: list[dict], frames: dict) -> list[charts.RunData]:
    out = []
    for row in rows:
        fr = frames.get(row["id"])
        out.append(charts.RunData(
            run_id=row["id"], label=row.get("label") or row["optimizer"], optimizer=row["optimizer"],
            scalars=fr.scalars if fr is not None else None,
            layers=fr.layers if fr is not None else None, status=row["status"],
        ))
    return out


_MD_COLORS = {"agd": "blue", "adam": "orange", "sgd": "green", "adamw": "violet", "prodigy": "red",
              "dadapt-adam": "gray", "schedulefree-adamw": "yellow"}


def _colored(label: str, optimizer: str) -> str:
    color = _MD_COLORS.get(optimizer.split(":")[0].strip().lower(), "gray")
    return f":{color}[**{live.md_escape(label)}**]"


def _status_block(rows, progress, frames, present: bool) -> None:
    """Per run: a progress bar with steps/s and ETA (or queue place, or the error), and the key
    numbers as metrics."""
    for row in rows:
        rid = row["id"]
        p = dict(progress.get(rid) or {"status": row["status"]})
        label = row.get("label") or row["optimizer"]
        vals = live.latest_values(frames[rid].scalars if rid in frames else None)
        with st.container(border=True, key=f"lv_run_{rid}"):
            cols = st.columns([2.6, 1, 1.1, 1.1, 1.1]) if not present else st.columns([2, 1, 1.1, 1.1])
            with cols[0]:
                st.markdown(_colored(label, row["optimizer"]))
                st.progress(live.progress_fraction(p), text=live.md_escape(live.progress_text("", p)))
            step_label = f"{vals['step']:,}" if vals["step"] is not None else "–"
            cols[1].metric("Step", step_label)
            cols[2].metric("Loss", live.format_number(vals["loss"]))
            if vals["eta"] is not None:
                cols[3].metric("η (AGD)", live.format_number(vals["eta"]))
            else:
                cols[3].metric("Learning rate", live.format_number(vals["lr"]))
            if not present:
                acc = vals["acc"]
                cols[4].metric("Accuracy", "–" if acc is None else f"{100 * acc:.1f}%")
            status = p.get("status")
            text = live.md_escape(row.get("error") or status).replace("\n", "  \n")
            if status in ("failed", "diverged", "interrupted"):
                st.error(f"{status.capitalize()}: {text}", icon=":material/error:")
            elif status == "cancelled" and row.get("error"):
                st.caption(f"Stopped: {text}")


def _style(fig, present: bool):
    """Presenter view: taller charts and larger type. Sizes go on every axis and the legend
    explicitly, because Streamlit's chart theme sets them there and would win over `font`."""
    if present:
        fig.update_layout(height=int((fig.layout.height or 340) * PRESENTER_SCALE),
                          font=dict(size=PRESENTER_FONT), legend=dict(font=dict(size=PRESENTER_FONT)),
                          hoverlabel=dict(font=dict(size=PRESENTER_FONT)))
        fig.update_xaxes(tickfont=dict(size=PRESENTER_FONT - 2), title_font=dict(size=PRESENTER_FONT))
        fig.update_yaxes(tickfont=dict(size=PRESENTER_FONT - 2), title_font=dict(size=PRESENTER_FONT))
    return fig


def _chart(name: str, fig, present: bool) -> None:
    title, help_text = CHART_HELP[name]
    st.markdown(f"**{title}**", help=help_text)
    st.plotly_chart(_style(fig, present), key=f"lv_chart_{name}", width="stretch",
                    config={"displaylogo": False})


def _boundary_section(manager, rows: list[dict], spec: dict, present: bool) -> None:
    """Decision boundary of each run on a 2-D toy set, from the worker's latest weight snapshot."""
    if spec.get("dataset") not in live.TOY_2D or not rows:
        return
    st.markdown("**Decision boundary**", help="Each optimiser's prediction over the plane, drawn "
                "from a snapshot of its weights (saved about once a second while it trains).")
    toy = _toy_data(spec.get("dataset"), int(spec.get("seed", 0)),
                    tuple(sorted((spec.get("data_options") or {}).items())))
    if toy is None:
        st.caption("The data set could not be loaded for the picture.")
        return
    raw, y, d_in, d_out, transform, classes = toy
    gx, gy, grid = live.boundary_grid(raw)
    inputs = transform(grid)
    cache = st.session_state.setdefault("live_boundaries", {})
    cols = st.columns(min(len(rows), 3))
    for k, row in enumerate(rows):
        rid = row["id"]
        label = row.get("label") or row["optimizer"]
        path = snapshot_path(manager.db_path, rid)
        with cols[k % len(cols)]:
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:
                st.caption(f"{live.md_escape(label)}: waiting for the first weight snapshot…")
                continue
            hit = cache.get(rid)
            if hit is None or hit[0] != mtime:
                fig, why = _boundary_figure(path, row.get("spec") or spec, d_in, d_out, gx, gy, inputs,
                                            raw, y, classes, label)
                cache[rid] = hit = (mtime, fig, why)
            _, fig, why = hit
            if fig is None:
                st.caption(f"{live.md_escape(label)}: no picture ({live.md_escape(why)}).")
                continue
            st.plotly_chart(_style(fig, present), key=f"lv_boundary_{rid}", width="stretch",
                            config={"displaylogo": False})


def _boundary_figure(path, spec, d_in, d_out, gx, gy, inputs, raw, y, classes, label):
    from agd_viz.snapshots import load_snapshot

    doc = load_snapshot(path)
    if doc is None:
        return None, "the snapshot could not be read"
    try:
        probs = live.predict_grid(doc["state_dict"], spec, d_in, d_out, inputs)
    except (ValueError, RuntimeError, KeyError) as exc:
        return None, str(exc)
    fig = charts.decision_boundary_figure(
        gx, gy, probs.reshape(len(gy), len(gx), -1), raw[:, 0], raw[:, 1], y,
        title=f"{label} · step {doc.get('step', '?')}", class_names=classes)
    return fig, None


@st.cache_resource(show_spinner=False, max_entries=16)
def _toy_data(name: str, seed: int, options: tuple):
    """A 2-D toy set's raw training points (plane coordinates), labels, network dimensions, the
    input map (plane -> network inputs) and class names; None if it cannot be loaded."""
    try:
        from agd_viz import data

        ds = data.load(name, seed=seed, **dict(options))
    except Exception:  # noqa: BLE001 - the picture is optional; the charts still work
        return None
    if ds.input_kind != "2d" or ds.task != "classification" or ds.raw_train is None:
        return None
    return (ds.raw_train, ds.y_train.cpu().numpy(), int(ds.d_in), int(ds.d_out), ds.input_transform,
            ds.classes)


def _refresh_interval(group_id: int | None, rows: list[dict]) -> float:
    """REFRESH_S (stretched on a busy server), but FIRST_POINTS_REFRESH_S while a run of the
    comparison trains and none of its steps has been read yet: after Start the first point then
    shows a fraction of a second after the worker's first step, not up to a period later
    (benchmarks/first_point.py). Queued runs poll at the normal rate."""
    frames = st.session_state.get("live_frames")
    read = (frames is not None and st.session_state.get("live_frames_group") == group_id
            and any((fr.last_step or 0) >= 1 for fr in frames.runs.values()))
    if not read and any(r["status"] == "running" for r in rows):
        return FIRST_POINTS_REFRESH_S
    return live.refresh_interval(st.session_state.get("live_tick_s"), REFRESH_S)


def _panel(manager, group_id: int, present: bool, interval: float | None) -> None:
    """Progress, key numbers and charts of one comparison; re-run every `interval` seconds while
    its runs train (see module docstring for how the timer stops)."""
    started = time.perf_counter()
    store = manager.store
    rows = _group_runs(store, group_id)
    if not rows:
        st.info(f"Comparison {group_id} has no runs (it may have been deleted).")
        return
    run_ids = [r["id"] for r in rows]
    progress = manager.progress(run_ids)
    frames_store = st.session_state.get("live_frames")
    if frames_store is None or st.session_state.get("live_frames_group") != group_id:
        frames_store = st.session_state["live_frames"] = live.LiveFrames()
        st.session_state["live_frames_group"] = group_id
        st.session_state.pop("live_boundaries", None)
    frames = frames_store.refresh(store, run_ids)
    # Rows again after the metrics: a run that ended between the two reads shows its end status.
    rows = _group_runs(store, group_id)

    _status_block(rows, progress, frames, present)

    opts = st.session_state
    runs = _run_data(rows, frames)
    figs = charts.all_live_figures(
        runs, smoothing=float(opts.get("lv_smooth", 0.6)), x=opts.get("lv_x", "step"),
        split=opts.get("lv_split", "batch"), log_loss=bool(opts.get("lv_logy", False)))
    spec = (rows[0].get("spec") or {})
    c1, c2 = st.columns(2)
    with c1:
        _chart("loss", figs["loss"], present)
    with c2:
        _chart("acc", figs["acc"], present)
    c1, c2 = st.columns(2)
    with c1:
        _chart("step_size", figs["step_size"], present)
    with c2:
        _chart("rel_update", figs["rel_update"], present)
    _boundary_section(manager, rows, spec, present)
    c1, c2 = st.columns(2)
    with c1:
        _chart("w_spec_scaled", figs["w_spec_scaled"], present)
    with c2:
        _chart("w_srank", figs["w_srank"], present)
    _chart("g_srank", figs["g_srank"], present)

    if interval is None:
        return
    if live.all_final(manager.progress(run_ids), run_ids):
        st.rerun()  # a full run re-creates this fragment without a timer
    tick = time.perf_counter() - started
    previous = st.session_state.get("live_tick_s")
    st.session_state["live_tick_s"] = tick if previous is None else 0.7 * previous + 0.3 * tick
    if live.interval_drifted(interval, _refresh_interval(group_id, rows)):
        st.rerun()  # re-create the timer at the new interval


# -------------------------------------------------------------------------------------------------
# Page


def _sticky(key: str, default):
    """A widget value that survives the widget not being drawn (presenter view, another page):
    Streamlit drops a widget's state then, so a plain session key keeps a copy."""
    keep = f"keep_{key}"
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(keep, default)
    st.session_state[keep] = st.session_state[key]
    return st.session_state[key]


manager = job_manager()
store = manager.store
datasets = live.dataset_choices()

_apply_url(datasets)
for key, value in _widget_values(_form()).items():
    if key not in st.session_state:
        st.session_state[key] = value
state = _read_widgets()
present = bool(_sticky("lv_present", False))
paused = bool(_sticky("lv_pause", False))
for key, default in (("lv_smooth", 0.6), ("lv_logy", False), ("lv_x", "step"), ("lv_split", "batch")):
    _sticky(key, default)
devices = _available_devices() if state.get("device") in ("cuda", "mps") else None
data = live.data_status(state.get("dataset"))  # imports torch only for a downloadable set
available = live.optimizer_statuses()
notes = live.check(state, devices=devices, datasets=datasets, device_kind=manager.device_kind("auto"),
                   data=data, available=available)

if present:
    st.html(PRESENTER_CSS)
else:
    _controls(notes, datasets, state, data, available)
    limits_expander(manager, st.sidebar, device=state.get("device", "auto"),
                    page_steps=live.UI_LIMITS["steps"][1])

group_id = st.session_state.get("live_group")
if group_id is not None:
    found = store.get_group(group_id)
    if found is None or found.get("kind") != "compare":
        why = "is not in the run store" if found is None else f"is a {found.get('kind')}, not a comparison"
        st.session_state.setdefault("live_url_notes", []).append(
            f"Run group {group_id} {why}; showing the latest comparison instead.")
        group_id = None
if group_id is None:
    group_id = _latest_group(store)
    st.session_state["live_group"] = group_id

st.title("Live training")
if not present:
    st.caption("AGD trains with no learning rate. Pick a preset or set up a comparison on the left, "
               "press Start, and watch the step size AGD chooses, the weight norms it keeps and the "
               "stable ranks of weights and gradients, layer by layer.")
for text in st.session_state.pop("live_url_notes", []):
    st.warning(live.md_escape(text), icon=":material/link_off:")

rows = _group_runs(store, group_id)
active = [r["id"] for r in rows if r["status"] in live.ACTIVE]
blocked = live.has_errors(notes)

top = st.columns([1.3, 0.8, 1.4, 1.3, 3], vertical_alignment="center")
top[0].button("Start training", type="primary", key="lv_start", disabled=blocked or bool(active),
              icon=":material/play_arrow:", on_click=_on_start, args=(manager,))
top[1].button("Stop", key="lv_stop", disabled=not active, icon=":material/stop:", on_click=_on_stop,
              args=(manager, active))
top[2].toggle("Presenter view", key="lv_present",
              help="Hide the controls; large numbers and charts for a projector. Link: ?present=1")
top[3].toggle("Pause charts", key="lv_pause", help="Stop refreshing so you can zoom; training goes on.")
with top[4]:
    if blocked and data is not None and not data.downloaded and not present:
        st.caption(f"{live.md_escape(data.title)} is not downloaded yet: see the note under Dataset.")
    elif blocked:
        st.caption("Fix the settings marked in red to start." if not present
                   else "The configuration has errors: turn off the presenter view to fix them.")
    elif active:
        st.caption("This comparison is still training: Stop it to start another.")
    _show_notes(notes.get("start", []))
error = st.session_state.pop("live_start_error", None)
if error:
    st.error(f"Could not start: {live.md_escape(error)}", icon=":material/error:")

_write_url(state, group_id, present)

if group_id is None:
    st.info("No runs yet. Load a preset (“Adam fails at depth 32” is the classic) and press "
            "**Start training**.", icon=":material/rocket_launch:")
else:
    group = store.get_group(group_id) or {}
    shown_spec = group.get("spec") or (rows[0]["spec"] if rows else {})
    st.subheader(f"Comparison {group_id}")
    c1, c2 = st.columns([5, 1], vertical_alignment="center")
    c1.caption(live.md_escape(_describe(shown_spec)))
    if not present and shown_spec:
        c2.button("Load these settings", key="lv_load_group", type="tertiary", on_click=_set_form,
                  args=(live.state_from_spec(shown_spec),), help="Put this comparison's settings in the form.")
    paper = live.paper_table(shown_spec, rows) if shown_spec else None
    if paper is not None:
        table, caption = paper
        st.markdown("**Paper vs measured**", help="Final test accuracy reported by Bernstein et al. "
                    "(2023) for this setting, beside this comparison's once its runs finish.")
        st.dataframe(table, hide_index=True, width="stretch", key="lv_paper_table")
        st.caption(live.md_escape(caption))
    if not present:
        with st.expander("Chart options", icon=":material/tune:"):
            o1, o2, o3, o4 = st.columns(4)
            o1.slider("Smoothing (EMA)", 0.0, 0.99, step=0.01, key="lv_smooth")
            o2.toggle("Log-scale loss", key="lv_logy")
            o3.radio("x axis", ("step", "time"), key="lv_x", horizontal=True,
                     format_func=lambda v: "step" if v == "step" else "wall time")
            o4.radio("Loss and accuracy on", ("batch", "train", "test"), key="lv_split", horizontal=True,
                     format_func=lambda v: {"batch": "minibatch", "train": "train set", "test": "test set"}[v])
    interval = None
    if active and not paused:
        interval = _refresh_interval(group_id, rows)
    st.fragment(run_every=interval)(_panel)(manager, group_id, present, interval)
