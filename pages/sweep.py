"""Depth × width sweep: a grid of runs in the background, heatmaps of how each optimiser did at
every depth and width (the paper's depth × width grid is AGD alone: agd_viz.paper, "fig6").

Thin page (docs/architecture.md): widgets -> agd_viz.views.sweep (form, results) ->
JobManager.submit_group (every cell or nothing) -> agd_viz.charts (sweep grids). A sweep is a stored
group of kind "sweep", so it can be reopened later (the picker, or ?sweep=ID). The results live in
one fragment that polls the store while runs of the shown sweep are queued or running; when it sees
them all ended it reruns the whole page once, which re-creates the fragment without a timer.

Clicking a heatmap cell picks it (each cell carries an invisible marker with its run id, as plotly
heatmaps emit no selection events); the "Cell" picker below does the same from the keyboard.
"""

from __future__ import annotations

import streamlit as st

from agd_viz import charts, fmt, optspec
from agd_viz.cluster import setup_note as cluster_setup_note
from agd_viz.jobs import Refused
from agd_viz.spec import SweepConfig, max_grid, page_limits
from agd_viz.views import datasets as data_view
from agd_viz.views import live_form
from agd_viz.views import live_panel as panel
from agd_viz.views import paper as paper_view
from agd_viz.views import runs as rv
from agd_viz.views import sweep as sw
from app_resources import job_manager, operator_key, session_id
from app_widgets import (chart, download_box, limits_expander, optimizer_picker, paper_presets, paper_table,
                         stop_runs)

REFRESH_S = 1.5
SWEEP_PARAM = "sweep"
HEATMAPS = (("final_train_loss", "Final train loss"), ("final_train_acc", "Final train accuracy"),
            ("final_test_acc", "Final test accuracy"))
DEFAULTS = {"sw_depths": fmt.sizes(sw.DEFAULT_CONFIG.depths), "sw_widths": fmt.sizes(sw.DEFAULT_CONFIG.widths),
            "sw_dataset": "digits", "sw_steps": 300, "sw_batch": 128, "sw_seed": 0, "sw_device": "auto",
            "sw_full": False, "sw_more": "", "sw_loss": "xent", **{f"sw_use_{n}": n in ("agd", "adam") for n in optspec.OPTIMIZERS},
            **{f"sw_lr_{n}": r for n, r in sw.DEFAULT_RATES.items()}}


def _load_paper_preset(key: str) -> None:
    """Fill the form with a sweep of the paper (agd_viz.paper), every field at once."""
    st.session_state.update(sw.form_state(sw.paper_preset_form(key)), sw_paper_note=key)


def _follow(group_id: int) -> None:
    """The form shows the settings of the sweep shown (opened by a link, picked, or the latest on
    arrival), once each time another is shown: a reloaded link shows the same form."""
    if st.session_state.get("sw_followed") == group_id:
        return
    st.session_state["sw_followed"] = group_id
    config = sw.config_of(store.get_group(group_id) or {})
    if config is not None:
        st.session_state.update(sw.form_state(sw.form_of_config(config)))


def _form(manager) -> tuple[SweepConfig | None, list[str]]:
    """Draw the form; the config it describes (None if it cannot be built) and its problems."""
    sb, ss = st.sidebar, st.session_state
    paper_presets(sw.PAPER_PRESETS, sw.paper_preset_note,
                  ("The paper's sweeps", sw.PRESETS_CAPTION),
                  key_prefix="sw_paper_", loaded_key="sw_paper_note", on_click=_load_paper_preset)
    sb.subheader("Grid")
    sb.text_input("Depths", key="sw_depths", max_chars=120,
                  help="Weight matrices per network, separated by commas: 2, 4, 8, 16, 32.")
    sb.text_input("Widths", key="sw_widths", max_chars=120,
                  help="Hidden units per layer, separated by commas: 32, 64, 128 (up to 1024 and more on a GPU).")
    sb.subheader("Training")
    sb.selectbox("Dataset", live_form.DATASET_CHOICES, key="sw_dataset", format_func=data_view.title)
    data = data_view.data_status(ss.get("sw_dataset"))
    if data is not None and not data.downloaded:
        sb.error(data.note(), icon=":material/error:")
    download_box(data, "sw_download", sb)
    c1, c2 = sb.columns(2)
    # No ranges on the boxes (a box's own would keep, and train, its last valid value): the
    # config's check refuses a bad one and Start waits.
    c1.number_input("Steps", step=50, key="sw_steps")
    c2.number_input("Batch size", step=16, key="sw_batch")
    c1, c2 = sb.columns(2)
    c1.number_input("Seed", step=1, key="sw_seed")
    c2.selectbox("Device", live_form.DEVICES, key="sw_device")
    sb.radio("Loss", live_form.LOSSES, key="sw_loss", horizontal=True, format_func=live_form.LOSS_TITLES.get,
             help=live_form.LOSS_HELP + " CIFAR-10 batches are augmented as in the paper.")
    sb.checkbox("Per-layer metrics", key="sw_full",
                help="Weight norms and stable ranks per layer for every run: slower; the heatmaps do not need them.")
    sb.subheader("Optimisers")
    optimizer_picker(sb, lambda n: f"sw_use_{n}", lambda f: f, live_form.optimizer_statuses(), {},
                     {n: f"sw_lr_{n}" for n in sw.BASELINES}, option_fields=False)
    sb.text_input("More optimisers", key="sw_more", max_chars=200,
                  help="Any other optimiser specs, separated by spaces or semicolons, e.g. "
                       "“agd:gain=2; sgd:lr=0.1,momentum=0.9; prodigy”.")
    try:
        rates = {n: ss.get(f"sw_lr_{n}", "") for n in sw.BASELINES if ss.get(f"sw_use_{n}")}
        lr_free = [n for n in live_form.OPTION_OPTIMIZERS if ss.get(f"sw_use_{n}")]
        optimizers = sw.optimizer_specs(bool(ss.get("sw_use_agd")), rates, "; ".join([*lr_free, ss.get("sw_more", "")]))
        config = SweepConfig(depths=ss["sw_depths"], widths=ss["sw_widths"], optimizers=tuple(optimizers),
                             dataset=ss["sw_dataset"], steps=int(ss["sw_steps"]), batch_size=int(ss["sw_batch"]),
                             seed=int(ss["sw_seed"]), device=ss["sw_device"],
                             metrics="full" if ss.get("sw_full") else "none", loss=ss.get("sw_loss", "xent"))
        problems = config.check(device=manager.device_kind(config.device), ranges=PAGE)
    except ValueError as exc:  # SweepError included: a list that does not parse
        return None, [str(exc)]
    if data is not None and not data.downloaded:
        problems.append(f"{data.title} is not downloaded yet: see the note under Dataset on the left.")
    elif not problems:  # this session's share of the queue: compute time, metric bytes, runs
        problems += [p for p in [manager.check_submission(config.specs(), session_id())] if p]
    return config, problems


def _on_start(manager, config: SweepConfig) -> None:
    """Queue every cell of the grid into one stored group of kind "sweep", cheap cells first, so the
    heatmaps start filling at once; all of it or, refused, nothing."""
    try:
        gid, _ = manager.submit_group(config.specs(), kind="sweep", session=session_id(), group_spec=config.to_dict())
    except (ValueError, Refused, RuntimeError) as exc:  # SpecError, SweepError, a full queue
        st.session_state["sw_start_error"] = str(exc)
        return
    st.session_state["sw_pick"] = gid
    st.session_state.pop("sw_start_error", None)
    st.session_state.pop("sw_cell", None)


def _pick_cell(points) -> None:
    """A click on a heatmap: its cell's curves below (the figures, drawn after, outline it)."""
    cell = sw.clicked_cell(points)
    if cell is not None:
        st.session_state["sw_cell"] = cell


def _heatmap(fig, key: str, config: dict) -> None:
    chart(fig, key=key, width="stretch", config=config, on_click=_pick_cell)


def _cell_curves(store, df, cell: tuple[int, int], image: str) -> None:
    d, w = cell
    ids = sw.cell_run_ids(df, d, w)
    rows = [r for r in (store.get_run(i) for i in ids) if r is not None]
    if not rows:
        st.caption("No runs in this cell yet.")
        return
    runs, name = rv.run_data(store, rows), f"agd-sweep-cell-d{d}-w{w}"
    c1, c2 = st.columns(2)
    # The minibatch values of every step (a sweep without per-layer metrics evaluates the full
    # training set only at its start and end: two points).
    chart(charts.loss_figure(runs, "loss", "batch", 0.6, True), c1, key="sw_cell_loss", width="stretch",
          config=rv.image_config(image, f"{name}-loss"))
    chart(charts.loss_figure(runs, "acc", "batch", 0.6), c2, key="sw_cell_acc", width="stretch",
          config=rv.image_config(image, f"{name}-acc"))
    for r in rows:
        if r.get("error") and r["status"] != "finished":
            st.text(f"#{r['id']} {r.get('label') or r['optimizer']}: {r['status']}: {r['error']}")
    if st.button("Open these runs on the Runs page", key="sw_open_runs", icon=":material/table_rows:"):
        st.switch_page("pages/runs.py", query_params={"run": rv.format_run_param(ids)})


def _panel(manager, group_id: int, interval: float | None, image: str) -> None:
    store = manager.store
    group = store.get_group(group_id)
    if group is None:
        st.info(f"Sweep {group_id} is no longer in the store.")
        return
    config = sw.config_of(group)
    df = sw.results_frame(store.list_runs(group_id=group_id), config)
    counts = sw.progress(df)
    st.progress(counts["done"] / max(counts["total"], 1), text=sw.progress_text(counts))
    paper_table(paper_view.sweep_table(df, config), "sw_paper_table",
                "What Bernstein et al. (2023) report for this grid, beside this sweep's finished AGD runs.")

    panels = sw.panel_order(df, config)
    options = sw.cell_options(df)
    if options and st.session_state.get("sw_cell") not in options:
        st.session_state["sw_cell"] = options[-1]
    picked = st.session_state.get("sw_cell") if options else None

    st.caption("Every panel shares one colour scale, so a colour means the same value for every optimiser. "
               "Click a cell to see its runs' curves below.")
    for value, title in HEATMAPS:
        st.markdown(f"**{title}**")
        fig = charts.sweep_heatmaps(df, value, panels, selected=picked, fmt=".1%" if value.endswith("_acc") else ".3g")
        _heatmap(fig, f"sw_hm_{value}", rv.image_config(image, f"agd-sweep-{group_id}-{value}"))
    families = sw.baseline_families(panels)
    has_agd = any(optspec.family(o) == "agd" for o in panels)
    if has_agd and families:
        st.markdown("**Best learning rate per cell against AGD**",
                    help="For each cell, the baseline's lowest final train loss over all the learning rates in "
                         "the sweep, beside AGD's (which has no rate to tune).")
        fam = families[0] if len(families) == 1 else st.radio(
            "Baseline", families, key="sw_best_family", horizontal=True, format_func=optspec.title)
        frame, names = sw.best_rate_panels(df, fam, "final_train_loss")
        _heatmap(charts.best_rate_heatmaps(frame, "final_train_loss", names, selected=picked), "sw_hm_best",
                 rv.image_config(image, f"agd-sweep-{group_id}-best-{fam}"))
        wins, both = sw.agd_wins(sw.agd_vs_best(df, fam))
        if both:
            st.caption(f"AGD's final train loss is lower than the best {optspec.title(fam)} rate's in {wins} of "
                       f"{both} cells.")
    if has_agd:
        st.markdown("**AGD's mean step size η per cell**",
                    help="η = log((1 + √(1 + 4G)) / 2), chosen by AGD at every step; averaged over the run.")
        agd_opts = [o for o in panels if optspec.family(o) == "agd"]
        fig = charts.sweep_heatmaps(df[df["optimizer"].isin(agd_opts)], "mean_eta", agd_opts, selected=picked)
        _heatmap(fig, "sw_hm_eta", rv.image_config(image, f"agd-sweep-{group_id}-eta"))

    st.markdown("**Curves of one cell**")
    if not options:
        st.caption("The curves appear here once the first cell has a run.")
    else:
        st.selectbox("Cell", options, key="sw_cell", format_func=lambda c: f"depth {c[0]} × width {c[1]}")
        _cell_curves(store, df, st.session_state["sw_cell"], image)
    if interval is not None and not sw.is_active(sw.results_frame(store.list_runs(group_id=group_id))):
        st.rerun()  # a full run re-creates this fragment without a timer


# -------------------------------------------------------------------------------------------------
# Page

manager = job_manager()
store = manager.store
PAGE = page_limits()
for key_, value in DEFAULTS.items():
    st.session_state.setdefault(key_, value)

sweeps = store.list_groups(kind="sweep")
sweep_ids = [g["id"] for g in sweeps]
owned = [g["id"] for g in sweeps if g.get("owner") == session_id()]  # this browser's, kept across reloads
raw = st.query_params.get(SWEEP_PARAM)
if raw is not None and raw != st.session_state.get("sw_url_written"):
    st.session_state["sw_url_written"] = raw
    st.session_state["sw_pick"], st.session_state["sw_url_note"] = sw.linked_sweep(raw, sweep_ids)
# A new session starts on its own latest sweep, or none: never on another attendee's (a link opens one).
st.session_state["sw_pick"] = panel.shown_group(store, st.session_state.get("sw_pick"), owned, "sweep")[0]
if st.session_state["sw_pick"] is not None:
    _follow(st.session_state["sw_pick"])
config, problems = _form(manager)

st.title("Depth × width sweep")
st.caption(sw.PAGE_CAPTION)
note = st.session_state.pop("sw_url_note", None)
if note:
    st.warning(fmt.md_escape(note), icon=":material/link_off:")

picked_id = st.session_state.get("sw_pick")
training = [r["id"] for r in (store.list_runs(group_id=picked_id) if picked_id is not None else [])
            if r["status"] in ("queued", "running")]
active = training if picked_id in owned or operator_key() else []  # another's sweep is watched, not stopped
with st.container(border=True):
    st.markdown("**New sweep**")
    if config is not None:
        speed, workers = manager.speed(), manager.max_workers
        st.markdown(f"{config.describe_size()} · about **{fmt.estimate(config.seconds(speed, workers=workers))}** "
                    f"with {fmt.plural(workers, 'worker')} at a time {fmt.md_escape(manager.where())}")
        st.caption(f"Estimate: FLOPs per step ∝ batch × Σ d_k·d_(k−1), plus fixed costs per step and layer; "
                   f"{speed.describe()}.")
    if cluster_setup_note():
        st.info(cluster_setup_note(), icon=":material/cloud_off:")
    for text in problems:
        st.error(fmt.md_escape(fmt.sentence(text)), icon=":material/error:")
    c1, c2, c3 = st.columns([1.2, 1, 3], vertical_alignment="center")
    c1.button("Start sweep", type="primary", key="sw_start", icon=":material/play_arrow:",
              disabled=config is None or bool(problems) or bool(active), on_click=_on_start, args=(manager, config))
    c2.button("Stop sweep", key="sw_stop", icon=":material/stop:", disabled=not active, on_click=stop_runs,
              args=(manager, active, "sw_start_error"))
    c3.caption("The sweep shown below is still training: stop it to start another." if active
               else "Set the grid and optimisers on the left.")
    error = st.session_state.pop("sw_start_error", None)
    if error:
        st.error(f"Could not start: {fmt.md_escape(error)}", icon=":material/error:")

try:
    grid_limit = max_grid()
except ValueError:
    grid_limit = None  # config.check() above has said what is wrong with AGD_VIZ_MAX_GRID
limits_expander(manager, "sw_limits", st.sidebar, device=st.session_state.get("sw_device", "auto"), max_grid=grid_limit)
image = st.sidebar.radio("Chart download format", ("png", "svg"), key="sw_img", horizontal=True,
                         format_func=str.upper, help="The camera button on each chart saves it in this format.")

if st.session_state.get("sw_pick") is None:
    if sweep_ids:  # others' sweeps: open one to watch it
        st.selectbox("Sweep", sweep_ids, key="sw_pick", index=None, placeholder="Open a stored sweep to watch it",
                     format_func=lambda i: f"Sweep {i}")
    st.info("No sweeps yet. Choose depths, widths and optimisers on the left and press **Start sweep**, or run "
            "one from the shell: `python -m agd_viz sweep --depths 2,4,8 --widths 64,128 --optimizer agd "
            "--optimizer adam:lr=1e-3`.", icon=":material/grid_on:")
else:
    labels = {g["id"]: g for g in sweeps}
    st.selectbox("Sweep", sweep_ids, key="sw_pick",
                 format_func=lambda i: f"Sweep {i}" + (f" · {labels[i]['name']}" if labels[i].get("name") else "")
                 + f" · {labels[i]['n_runs']} runs")
    group_id = st.session_state["sw_pick"]
    if st.query_params.get(SWEEP_PARAM) != str(group_id):
        st.query_params[SWEEP_PARAM] = str(group_id)
    st.session_state["sw_url_written"] = str(group_id)
    st.caption(fmt.md_escape(sw.describe(group_id, sw.config_of(labels[group_id]))))
    st.fragment(run_every=REFRESH_S if training else None)(_panel)(manager, group_id, REFRESH_S if training else None,
                                                                   image)
