"""Depth × width sweep: a grid of runs in the background, heatmaps of how each optimiser did at
every depth and width (the paper's Figure 3: AGD trains every cell, Adam fails at depth).

Thin page: widgets -> agd_viz.sweep (grid, limit, estimate, results, figures) -> agd_viz.jobs (one
worker per run, FIFO). A sweep is a stored group of kind "sweep", so it can be reopened later (the
picker, or ?sweep=ID). The results live in one fragment that polls the store while runs of the
shown sweep are queued or running; when it sees them all ended it reruns the whole page once,
which re-creates the fragment without a timer, so polling stops.

Clicking a heatmap cell picks it (each cell carries an invisible marker with its run id, as plotly
heatmaps emit no selection events); the "Cell" picker below does the same from the keyboard.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from agd_viz import charts, live
from agd_viz import runs_view as rv
from agd_viz import sweep as sw
from agd_viz.jobs import QueueFull
from app_resources import job_manager, limits_expander, session_id
from app_widgets import download_box, paper_presets

REFRESH_S = 1.5
SWEEP_PARAM = "sweep"
HEATMAPS = (("final_train_loss", "Final train loss"), ("final_train_acc", "Final train accuracy"),
            ("final_test_acc", "Final test accuracy"))

# -------------------------------------------------------------------------------------------------
# The form (sidebar)


def _defaults() -> None:
    for key, value in (("sw_depths", sw.format_sizes(sw.DEFAULT_DEPTHS)),
                       ("sw_widths", sw.format_sizes(sw.DEFAULT_WIDTHS)), ("sw_dataset", "digits"),
                       ("sw_steps", 300), ("sw_batch", 128), ("sw_seed", 0), ("sw_device", "auto"),
                       ("sw_full", False), ("sw_use_agd", True), ("sw_use_adam", True),
                       ("sw_use_sgd", False), ("sw_use_adamw", False), ("sw_more", "")):
        st.session_state.setdefault(key, value)
    for name, rates in sw.DEFAULT_RATES.items():
        st.session_state.setdefault(f"sw_lr_{name}", rates)
    for name in live.LR_FREE:
        st.session_state.setdefault(f"sw_use_{name}", False)


def _load_paper_preset(key: str) -> None:
    """Fill the form with a sweep of the paper (agd_viz.paper), every field at once."""
    form = sw.paper_preset_form(key)
    ss = st.session_state
    ss["sw_depths"], ss["sw_widths"], ss["sw_dataset"] = form["depths"], form["widths"], form["dataset"]
    ss["sw_steps"], ss["sw_batch"], ss["sw_full"] = form["steps"], form["batch_size"], form["full"]
    ss["sw_use_agd"], ss["sw_more"] = form["agd"], form["more"]
    for name, rates in form["rates"].items():
        ss[f"sw_use_{name}"] = rates is not None
        ss[f"sw_lr_{name}"] = rates if rates is not None else sw.DEFAULT_RATES[name]
    for name in live.LR_FREE:
        ss[f"sw_use_{name}"] = name in form["lr_free"]
    ss["sw_paper_note"] = key


def _form(datasets) -> tuple[sw.SweepConfig | None, list[str]]:
    """Draw the form; the config it describes (None if it cannot be built) and its problems."""
    sb = st.sidebar
    paper_presets(sw.PAPER_PRESETS, sw.paper_preset_note,
                  ("The paper's sweeps",
                   "Grids that rerun Bernstein et al. (2023), Figure 6; the paper's numbers are shown "
                   "beside this sweep's as its runs finish."),
                  key_prefix="sw_paper_", loaded_key="sw_paper_note", on_click=_load_paper_preset)
    sb.subheader("Grid")
    sb.text_input("Depths", key="sw_depths", max_chars=120,
                  help="Weight matrices per network, separated by commas: 2, 4, 8, 16, 32.")
    sb.text_input("Widths", key="sw_widths", max_chars=120,
                  help="Hidden units per layer, separated by commas: 32, 64, 128 (up to 1024 and more on a GPU).")
    sb.subheader("Training")
    sb.selectbox("Dataset", datasets, key="sw_dataset", format_func=live.dataset_title)
    data = live.data_status(st.session_state.get("sw_dataset"))  # torch only for a downloadable set
    if data is not None and not data.downloaded:
        sb.error(data.note(), icon=":material/error:")
    download_box(data, "sw_download", sb)
    c1, c2 = sb.columns(2)
    c1.number_input("Steps", min_value=1, max_value=1_000_000, step=50, key="sw_steps")
    c2.number_input("Batch size", min_value=1, max_value=65536, step=16, key="sw_batch")
    c1, c2 = sb.columns(2)
    c1.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key="sw_seed")
    c2.selectbox("Device", live.DEVICES, key="sw_device")
    sb.checkbox("Per-layer metrics", key="sw_full",
                help="Weight norms and stable ranks per layer for every run: slower; the heatmaps do not need them.")
    sb.subheader("Optimisers")
    sb.checkbox("AGD (no learning rate)", key="sw_use_agd")
    rates = {}
    for name in sw.BASELINES:
        title = live.OPTIMIZER_TITLES[name]
        sb.checkbox(title, key=f"sw_use_{name}")
        if st.session_state.get(f"sw_use_{name}"):
            sb.text_input(f"{title} learning rates", key=f"sw_lr_{name}", max_chars=80,
                          help="One or more, separated by commas; each rate is its own run in every cell.")
            rates[name] = st.session_state.get(f"sw_lr_{name}", "")
    lr_free = []
    for name, (ok, install) in live.optimizer_statuses().items():
        checked = bool(st.session_state.get(f"sw_use_{name}"))
        sb.checkbox(live.OPTIMIZER_TITLES[name], key=f"sw_use_{name}", disabled=not ok and not checked,
                    help=live.OPTION_HELP[name] + " One run per cell, at the package's defaults (other "
                         "settings: More optimisers)." if ok else f"Not installed here: {install}")
        if not ok and not checked:
            sb.caption(f"Not installed here: `{install}`" if install else "Not available here.")
        if checked:
            lr_free.append(name)
    sb.text_input("More optimisers", key="sw_more", max_chars=200,
                  help="Any other optimiser specs, separated by spaces or semicolons, e.g. "
                       "“agd:gain=2; sgd:lr=0.1,momentum=0.9; prodigy”.")
    problems = []
    try:
        optimizers = sw.optimizer_specs(bool(st.session_state.get("sw_use_agd")), rates,
                                        "; ".join([*lr_free, st.session_state.get("sw_more", "")]))
        config = sw.SweepConfig(
            depths=st.session_state["sw_depths"], widths=st.session_state["sw_widths"],
            optimizers=tuple(optimizers), dataset=st.session_state["sw_dataset"],
            steps=int(st.session_state["sw_steps"]), batch_size=int(st.session_state["sw_batch"]),
            seed=int(st.session_state["sw_seed"]), device=st.session_state["sw_device"],
            metrics="full" if st.session_state.get("sw_full") else "none")
        problems = config.check(device=job_manager().device_kind(config.device))
    except ValueError as exc:  # SweepError included: a list that does not parse
        return None, [str(exc)]
    if data is not None and not data.downloaded:
        problems.append(f"{data.title} is not downloaded yet: see the note under Dataset on the left.")
    return config, problems


def _sentence(text: str) -> str:
    text = str(text)
    return text[:1].upper() + text[1:]


# -------------------------------------------------------------------------------------------------
# Starting and stopping


def _on_start(manager, config: sw.SweepConfig) -> None:
    """Queue every cell of the grid into one stored group of kind "sweep" (FIFO: cheap cells
    first, so the heatmaps start filling at once)."""
    submitted: list[int] = []
    gid = None
    try:
        specs = config.specs()  # imports torch: only on Start
        manager.check_room(config.n_runs, session_id())  # the whole grid, or nothing
        gid = manager.store.create_group("sweep", None, config.to_dict())
        for spec in specs:
            submitted += manager.submit(spec, group_kind="sweep", group_id=gid, session=session_id())[1]
    except (ValueError, QueueFull, RuntimeError) as exc:  # SpecError, SweepError, a full queue
        for rid in submitted:  # another session filled the queue meanwhile: no half sweeps
            manager.cancel(rid)
        if gid is not None:
            manager.store.delete_group(gid)  # with its runs
        st.session_state["sw_start_error"] = str(exc)
        return
    st.session_state["sw_pick"] = gid
    st.session_state.pop("sw_start_error", None)
    st.session_state.pop("sw_cell", None)


def _on_stop(manager, run_ids: list[int]) -> None:
    for rid in run_ids:
        manager.cancel(rid)


# -------------------------------------------------------------------------------------------------
# Results


def _describe(group: dict, config: sw.SweepConfig | None) -> str:
    if config is None:
        return f"Sweep {group['id']}"
    opts = ", ".join(config.optimizers)
    return (f"{live.dataset_title(config.dataset)} · depths {sw.format_sizes(config.depths)} × widths "
            f"{sw.format_sizes(config.widths)} · {opts} · {config.steps:,} steps · batch "
            f"{config.batch_size} · seed {config.seed}")


def _config_of(group: dict) -> sw.SweepConfig | None:
    try:
        return sw.SweepConfig.from_dict(group.get("spec") or {})
    except (ValueError, TypeError):
        return None


def _clicked(key: str) -> tuple[int, int] | None:
    """The cell a click on chart `key` picked, once per click (a selection persists between
    reruns; applying it again would undo a later choice in the picker)."""
    state = st.session_state.get(key)
    points = []
    try:
        points = list(state.selection.points) if state is not None else []
    except AttributeError:
        points = []
    cells = []
    for p in points:
        data = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(data, (list, tuple)) and len(data) >= 3 and data[0] >= 0:  # -1: no run yet
            cells.append((int(data[1]), int(data[2])))
    seen = st.session_state.setdefault("sw_clicks", {})
    signature = tuple(cells)
    if seen.get(key) == signature:
        return None
    seen[key] = signature
    return cells[-1] if cells else None


def _heatmap(fig, key: str, config: dict) -> None:
    st.plotly_chart(fig, key=key, width="stretch", on_select="rerun", selection_mode="points",
                    config=config)


def _cell_curves(store, df: pd.DataFrame, cell: tuple[int, int], image: str) -> None:
    d, w = cell
    ids = sw.cell_run_ids(df, d, w)
    rows = [r for r in (store.get_run(i) for i in ids) if r is not None]
    if not rows:
        st.caption("No runs in this cell yet.")
        return
    runs = rv.run_data(store, rows)
    c1, c2 = st.columns(2)
    name = f"agd-sweep-cell-d{d}-w{w}"
    with c1:
        st.plotly_chart(charts.loss_figure(runs, "loss", "train", 0.0, True),
                        key="sw_cell_loss", width="stretch", config=rv.image_config(image, f"{name}-loss"))
    with c2:
        st.plotly_chart(charts.loss_figure(runs, "acc", "train"),
                        key="sw_cell_acc", width="stretch", config=rv.image_config(image, f"{name}-acc"))
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
    config = _config_of(group)
    rows = store.list_runs(group_id=group_id)
    df = sw.results_frame(rows, config)
    counts = sw.progress(df)
    done, total = counts["done"], max(counts["total"], 1)
    parts = [f"{done} of {counts['total']} runs done"]
    for status in ("running", "queued", "diverged", "failed", "cancelled", "interrupted", "pending"):
        if counts.get(status):
            parts.append(f"{counts[status]} {status if status != 'pending' else 'not started'}")
    st.progress(done / total, text=" · ".join(parts))
    paper = sw.paper_table(df, config)
    if paper is not None:
        table, caption = paper
        st.markdown("**Paper vs measured**", help="What Bernstein et al. (2023) report for this grid, "
                    "beside this sweep's finished AGD runs.")
        st.dataframe(table, hide_index=True, width="stretch", key="sw_paper_table")
        st.caption(rv.md_escape(caption))

    panels = sw.panel_order(df, config)
    # A click picks a cell before the figures are drawn, so they outline the cell just picked.
    for value, _ in HEATMAPS:
        cell = _clicked(f"sw_hm_{value}")
        if cell is not None:
            st.session_state["sw_cell"] = cell
    for key in ("sw_hm_best", "sw_hm_eta"):
        cell = _clicked(key)
        if cell is not None:
            st.session_state["sw_cell"] = cell
    options = sw.cell_options(df)
    if options and st.session_state.get("sw_cell") not in options:
        st.session_state["sw_cell"] = options[-1]
    picked = st.session_state.get("sw_cell") if options else None

    st.caption("Every panel shares one colour scale, so a colour means the same value for every "
               "optimiser. Click a cell to see its runs' curves below.")
    for value, title in HEATMAPS:
        st.markdown(f"**{title}**")
        fig = sw.heatmaps(df, value, panels, selected=picked, fmt=".1%" if value.endswith("_acc") else ".3g")
        _heatmap(fig, f"sw_hm_{value}", rv.image_config(image, f"agd-sweep-{group_id}-{value}"))

    families = sw.baseline_families(panels)
    has_agd = any(sw.family(o) == "agd" for o in panels)
    if has_agd and families:
        st.markdown("**Best learning rate per cell against AGD**",
                    help="For each cell, the baseline's lowest final train loss over all the learning "
                         "rates in the sweep, beside AGD's (which has no rate to tune).")
        fam = families[0]
        if len(families) > 1:
            fam = st.radio("Baseline", families, key="sw_best_family", horizontal=True,
                           format_func=lambda f: live.OPTIMIZER_TITLES.get(f, f))
        fig = sw.best_rate_heatmaps(df, fam, "final_train_loss", selected=picked)
        _heatmap(fig, "sw_hm_best", rv.image_config(image, f"agd-sweep-{group_id}-best-{fam}"))
        wins, both = sw.agd_wins(sw.agd_vs_best(df, fam))
        if both:
            st.caption(f"AGD's final train loss is lower than the best {live.OPTIMIZER_TITLES.get(fam, fam)} "
                       f"rate's in {wins} of {both} cells.")
    if has_agd:
        st.markdown("**AGD's mean step size η per cell**",
                    help="η = log((1 + √(1 + 4G)) / 2), chosen by AGD at every step; averaged over the run.")
        agd_opts = [o for o in panels if sw.family(o) == "agd"]
        fig = sw.heatmaps(df[df["optimizer"].isin(agd_opts)], "mean_eta", agd_opts, selected=picked)
        _heatmap(fig, "sw_hm_eta", rv.image_config(image, f"agd-sweep-{group_id}-eta"))

    st.markdown("**Curves of one cell**")
    if not options:
        st.caption("The curves appear here once the first cell has a run.")
    else:
        st.selectbox("Cell", options, key="sw_cell",
                     format_func=lambda c: f"depth {c[0]} × width {c[1]}")
        _cell_curves(store, df, st.session_state["sw_cell"], image)

    if interval is not None and not sw.is_active(sw.results_frame(store.list_runs(group_id=group_id))):
        st.rerun()  # a full run re-creates this fragment without a timer


# -------------------------------------------------------------------------------------------------
# Page

manager = job_manager()
store = manager.store
_defaults()
datasets = live.dataset_choices()
config, problems = _form(datasets)

sweeps = store.list_groups(kind="sweep")
sweep_ids = [g["id"] for g in sweeps]
raw = st.query_params.get(SWEEP_PARAM)
if raw is not None and raw != st.session_state.get("sw_url_written"):
    st.session_state["sw_url_written"] = raw
    if raw.isdigit() and int(raw) in sweep_ids:
        st.session_state["sw_pick"] = int(raw)
    else:
        st.session_state["sw_url_note"] = (f"The link's sweep {raw[:20]!r} is not in the run store; "
                                           "showing the most recent sweep instead.")
if sweep_ids and st.session_state.get("sw_pick") not in sweep_ids:
    st.session_state["sw_pick"] = sweep_ids[0]

st.title("Depth × width sweep")
st.caption("Train every optimiser at every depth and width, in the background, and compare them "
           "cell by cell. AGD needs no learning rate at any size; a baseline's best rate moves with "
           "depth and width (Bernstein et al. 2023, Figure 3).")
note = st.session_state.pop("sw_url_note", None)
if note:
    st.warning(rv.md_escape(note), icon=":material/link_off:")

speed = sw.calibrate(store.list_runs(status="finished", limit=200))
workers = manager.max_workers
picked_id = st.session_state.get("sw_pick")
shown_rows = store.list_runs(group_id=picked_id) if picked_id is not None else []
active = [r["id"] for r in shown_rows if r["status"] in sw.ACTIVE]

with st.container(border=True):
    st.markdown("**New sweep**")
    if config is not None:
        est = sw.estimate_seconds(config, speed, workers=workers)
        st.markdown(f"{config.describe_size()} · about **{sw.format_duration(est)}** "
                    f"with {workers} worker{'s' if workers != 1 else ''} at a time")
        st.caption(f"Estimate: FLOPs per step ∝ batch × Σ d_k·d_(k−1), plus fixed costs per step "
                   f"and layer; {speed.describe()}.")
    for text in problems:
        st.error(rv.md_escape(_sentence(text)), icon=":material/error:")
    c1, c2, c3 = st.columns([1.2, 1, 3], vertical_alignment="center")
    c1.button("Start sweep", type="primary", key="sw_start", icon=":material/play_arrow:",
              disabled=config is None or bool(problems) or bool(active),
              on_click=_on_start, args=(manager, config))
    c2.button("Stop sweep", key="sw_stop", icon=":material/stop:", disabled=not active,
              on_click=_on_stop, args=(manager, active))
    if active:
        c3.caption("The sweep shown below is still training: stop it to start another.")
    else:
        c3.caption("Set the grid and optimisers on the left.")
    error = st.session_state.pop("sw_start_error", None)
    if error:
        st.error(f"Could not start: {rv.md_escape(error)}", icon=":material/error:")

try:
    grid_limit = sw.max_grid()
except ValueError:
    grid_limit = None  # config.check() above has said what is wrong with AGD_VIZ_MAX_GRID
limits_expander(manager, st.sidebar, device=st.session_state.get("sw_device", "auto"), max_grid=grid_limit)
image = st.sidebar.radio("Chart download format", ("png", "svg"), key="sw_img", horizontal=True,
                         format_func=str.upper, help="The camera button on each chart saves it in this format.")

if not sweep_ids:
    st.info("No sweeps yet. Choose depths, widths and optimisers on the left and press **Start sweep**, "
            "or run one from the shell: `python -m agd_viz sweep --depths 2,4,8 --widths 64,128 "
            "--optimizer agd --optimizer adam:lr=1e-3`.", icon=":material/grid_on:")
else:
    labels = {g["id"]: g for g in sweeps}
    st.selectbox("Sweep", sweep_ids, key="sw_pick",
                 format_func=lambda i: f"Sweep {i}" + (f" · {labels[i]['name']}" if labels[i].get("name") else "")
                 + f" · {labels[i]['n_runs']} runs")
    group_id = st.session_state["sw_pick"]
    if st.query_params.get(SWEEP_PARAM) != str(group_id):
        st.query_params[SWEEP_PARAM] = str(group_id)
    st.session_state["sw_url_written"] = str(group_id)
    st.caption(rv.md_escape(_describe(labels[group_id], _config_of(labels[group_id]))))
    interval = REFRESH_S if active else None
    st.fragment(run_every=interval)(_panel)(manager, group_id, interval, image)
