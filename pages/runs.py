"""Runs: every stored run in a table (filter, sort, delete), several metrics of any of them on one
zoomable dashboard, final values against depth, width, batch size or optimiser across runs, and
their numbers exported (CSV, JSON, the command that trains a run again).

Thin page (docs/architecture.md): widgets -> agd_viz.views.runs (table, filters, overlays, exports,
the link) -> agd_viz.charts. The selection is the multiselect `rn_sel`; ticking rows in the table,
or a link `?run=1,2`, sets it. Filters, sort and chart options live in the link too (only what
differs from the defaults). Names, notes and errors are shown as text only, never as HTML.
"""

from __future__ import annotations

import streamlit as st

from agd_viz import charts, fmt
from agd_viz.jobs import PACKAGE_ROOT
from agd_viz.views import links
from agd_viz.views import runs as rv
from agd_viz.jobs import Refused
from app_resources import job_manager, operator_key, session_id
from app_widgets import chart

SEL = "rn_sel"  # run ids overlaid, the page's selection
PAGE_SIZE = 1000  # newest runs listed; older ones stay reachable through ?run=


def _table_key() -> str:
    # A new key when a link sets the selection: the table then starts ticked as the link says.
    return f"rn_table_{st.session_state.get('rn_table_version', 0)}"


def _apply_url() -> None:
    """A link's runs win when they differ from what this page last wrote to the URL."""
    raw = st.query_params.get(rv.RUN_PARAM)
    if raw is None or raw == st.session_state.get("rn_url_written"):
        return
    ids, bad = rv.parse_run_param(raw)
    st.session_state["rn_url_written"] = raw
    st.session_state["rn_table_version"] = st.session_state.get("rn_table_version", 0) + 1
    if bad:
        st.session_state["rn_notes"] = [f"The link's run value(s) {', '.join(map(repr, bad))} are not run "
                                        "numbers; they were left out."]
    st.session_state[SEL] = ids


def _apply_link(options: dict) -> None:
    """The link's filters, sort and chart options, once per link (the page's own link changes nothing)."""
    params = {k: v for k, v in st.query_params.to_dict().items() if k != rv.RUN_PARAM}
    if params == st.session_state.get("rn_link_written"):
        return
    values, notes = links.read(params, rv.URL_PARAMS, rv.link_choices(options))
    st.session_state.update(values)
    st.session_state["rn_notes"] = [*st.session_state.get("rn_notes", []), *notes]


def _write_url(ids: list[int]) -> None:
    wanted = links.write(st.session_state, rv.URL_PARAMS)
    text = rv.format_run_param(ids)
    if text:
        wanted[rv.RUN_PARAM] = text
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
    st.session_state["rn_url_written"] = text or None
    st.session_state["rn_link_written"] = {k: v for k, v in wanted.items() if k != rv.RUN_PARAM}


def _on_table_select() -> None:
    """Rows ticked in the table become the overlay; runs selected but filtered out stay."""
    shown = st.session_state.get("rn_table_ids", [])
    rows = st.session_state[_table_key()].selection.rows
    ticked = [shown[i] for i in rows if i < len(shown)]
    hidden = [i for i in st.session_state.get(SEL, []) if i not in shown]
    st.session_state[SEL] = hidden + ticked


# -------------------------------------------------------------------------------------------------
# Delete


def _ask_delete(ids: list[int]) -> None:
    st.session_state["rn_confirm"] = list(ids)


def _cancel_delete() -> None:
    st.session_state.pop("rn_confirm", None)


def _do_delete(manager, ids: list[int]) -> None:
    """Stop the runs still training, then delete what is over (JobManager.delete_runs): only this
    session's own runs, unless it holds the operator key (the job manager checks)."""
    try:
        deleted, active = manager.delete_runs(ids, session=session_id(), admin_key=operator_key())
    except Refused as exc:
        st.session_state.pop("rn_confirm", None)
        st.session_state["rn_delete_notes"] = [("error", fmt.md_escape(exc))]
        return
    st.session_state[SEL] = [i for i in st.session_state.get(SEL, []) if i not in deleted]
    st.session_state.pop("rn_confirm", None)
    notes = []
    if deleted:
        notes.append(("success", f"Deleted {len(deleted)} run(s): {', '.join(f'#{i}' for i in deleted)}."))
    if active:
        notes.append(("error", f"Run(s) {', '.join(f'#{i}' for i in active)} did not stop in time and were "
                               "not deleted; try again in a moment."))
    st.session_state["rn_delete_notes"] = notes


# -------------------------------------------------------------------------------------------------
# Page

manager = job_manager()
store = manager.store
_apply_url()

rows = store.list_runs(limit=PAGE_SIZE)
linked = [i for i in st.session_state.get(SEL, []) if i not in {r["id"] for r in rows}]
rows += [r for r in (store.get_run(i) for i in linked) if r is not None]
by_id = {r["id"]: r for r in rows}
missing = [i for i in st.session_state.get(SEL, []) if i not in by_id]
if missing:
    st.session_state["rn_notes"] = [*st.session_state.get("rn_notes", []), f"Run(s) {', '.join(f'#{i}' for i in missing)} "
                                    "are not in the store (deleted, or never made); showing the others."]
    st.session_state[SEL] = [i for i in st.session_state[SEL] if i in by_id]

frame = rv.runs_frame(rows)
options = rv.filter_options(frame)
_apply_link(options)

st.title("Runs")
st.caption("Every run in the store. Filter and sort the table, tick rows (or pick runs below) to see "
           "several metrics of them at once, compare final values across settings, export their numbers, "
           "or get the command that trains one again. A link with ?run=3 or ?run=3,4 opens those runs.")
for text in st.session_state.pop("rn_notes", []):
    st.warning(fmt.md_escape(text), icon=":material/link_off:")
for level, text in st.session_state.pop("rn_delete_notes", []):
    (st.success if level == "success" else st.error)(text)

sb = st.sidebar
sb.subheader("Filter")
filters = rv.Filters(
    statuses=sb.multiselect("Status", options["statuses"], key="rn_f_status"),
    datasets=sb.multiselect("Dataset", options["datasets"], key="rn_f_dataset"),
    optimizers=sb.multiselect("Optimiser", options["optimizers"], key="rn_f_opt"),
    depths=sb.multiselect("Depth", options["depths"], key="rn_f_depth"),
    widths=sb.multiselect("Width", options["widths"], key="rn_f_width"),
    text=sb.text_input("Name contains", key="rn_f_text", max_chars=100),
)
sb.subheader("Sort")
sort_by = sb.selectbox("Sort by", rv.SORTS, key="rn_sort", format_func=lambda c: rv.COLUMNS.get(c, c))
ascending = sb.toggle("Ascending", key="rn_asc")
sb.subheader("Charts")
image_format = sb.radio("Chart download format", ("png", "svg"), key="rn_img", horizontal=True,
                        format_func=str.upper, help="The camera button on each chart saves it in this format.")

shown = rv.sort_frame(rv.apply_filters(frame, filters), sort_by, ascending)
st.session_state["rn_table_ids"] = [int(i) for i in shown["id"]]
if not rows:
    st.info("No runs stored yet. Start one on the Live training page, run a sweep, or use "
            "`python -m agd_viz train`.", icon=":material/inbox:")
else:
    st.caption(f"{len(shown)} of {len(frame)} runs shown" + (" (the newest " + str(PAGE_SIZE) + ")"
                                                              if len(rows) >= PAGE_SIZE else ""))
    ticked = [k for k, rid in enumerate(st.session_state["rn_table_ids"]) if rid in st.session_state.get(SEL, [])]
    st.dataframe(
        shown[list(rv.COLUMNS)], key=_table_key(), on_select=_on_table_select, selection_mode="multi-row",
        selection_default={"selection": {"rows": ticked}}, placeholder="–",
        hide_index=True, width="stretch", height=min(420, 38 + 35 * max(len(shown), 1)),
        column_config={
            "id": st.column_config.NumberColumn("run", format="%d"),
            "name": st.column_config.TextColumn("name"),
            "label": st.column_config.TextColumn("optimiser"),
            "progress": st.column_config.TextColumn("steps"),
            "final_train_loss": st.column_config.NumberColumn("train loss", format="%.4g"),
            "final_train_acc": st.column_config.NumberColumn("train acc", format="percent"),
            "final_test_acc": st.column_config.NumberColumn("test acc", format="percent"),
            "mean_eta": st.column_config.NumberColumn("mean η", format="%.3g"),
            "group_id": st.column_config.NumberColumn("group", format="%d"),
            "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
        },
    )


def _run_title(rid: int) -> str:
    r = by_id.get(rid)
    if r is None:
        return f"#{rid}"
    spec = r.get("spec") or {}
    return (f"#{rid} {rv.label_of(r)} · {spec.get('dataset')} "
            f"{spec.get('depth')}×{spec.get('width')} · {r['status']}")


selected = st.multiselect("Runs to overlay", [r["id"] for r in rows], key=SEL, format_func=_run_title,
                          placeholder="Tick rows in the table or pick runs here")

if rows:
    st.subheader("Against a setting")
    h1, h2, _ = st.columns([1, 1.3, 2])
    hx = h1.selectbox("x", rv.HPARAM_X, key="rn_hp_x", format_func=lambda v: v.replace("_", " "))
    hm = h2.selectbox("Final value of", rv.HPARAM_METRICS, key="rn_hp_metric", format_func=charts.metric_name)
    chart(charts.hparam_figure(rv.hparam_frame([by_id[int(i)] for i in shown["id"]], hx, hm), hx, hm),
          key="rn_hparams", width="stretch", config=rv.image_config(image_format, f"agd-{hm}-vs-{hx}"))
    st.caption("The finished runs of the table (its filters apply): each line is an optimiser, and the other "
               "settings that vary; runs that differ only in their seed are averaged, the band spans them.")

if selected:
    sel_rows = [by_id[i] for i in selected]
    st.subheader("Dashboard")
    c1, c2, c3, c4, c5 = st.columns([2, 1.2, 1.2, 0.8, 1.0])
    st.session_state.setdefault("rn_metrics", list(rv.DASHBOARD_DEFAULT))
    metrics = c1.multiselect("Metrics", list(rv.METRICS), key="rn_metrics",
                             format_func=lambda m: rv.METRICS[m].replace("<sub>", "").replace("</sub>", ""),
                             help="Several metrics share one step axis: zoom one and they all follow. A "
                                  "per-layer metric alone shows each layer; beside others, its mean over layers.")
    per_layer = len(metrics) == 1 and metrics[0] in rv.LAYERED
    smoothing = c3.slider("Smoothing (EMA)", 0.0, 0.99, step=0.01, key="rn_smooth")
    log_y = c4.toggle("Log y", key="rn_logy")
    x = c5.radio("x axis", ("step", "time"), key="rn_x", horizontal=True,
                 format_func=lambda v: "step" if v == "step" else "wall time")
    runs = rv.run_data(store, sel_rows, layers=any(m in rv.LAYERED for m in metrics))
    layers = None
    if per_layer:
        n_layers = rv.layer_count(runs)
        if n_layers:
            layers = c2.multiselect("Layers", list(range(n_layers)), key="rn_layers",
                                    placeholder="all layers", help="0 is the first weight matrix.")
        else:
            c2.caption("No per-layer metrics in these runs (trained with metrics “none”).")
    if len(metrics) == 1:
        fig = rv.overlay_figure(runs, metrics[0], layers=layers, smoothing=smoothing, log_y=log_y, x=x)
    else:
        fig = charts.dashboard_figure(runs, metrics, smoothing=smoothing, log_y=log_y, x=x)
    chart(fig, key="rn_chart", width="stretch", config=rv.image_config(
        image_format, f"agd-{'-'.join(metrics) or 'runs'}-runs-{rv.format_run_param(selected)}"))

    st.subheader("Export")
    e1, e2, _ = st.columns([1, 1, 2])
    ids = list(selected)
    e1.download_button("Metrics as CSV", data=lambda: rv.export_csv(store, ids),
                       file_name=rv.export_name(ids, "csv"), mime="text/csv", key="rn_csv",
                       icon=":material/download:", on_click="ignore")
    e2.download_button("Metrics as JSON", data=lambda: rv.export_json(store, ids),
                       file_name=rv.export_name(ids, "json"), mime="application/json", key="rn_json",
                       icon=":material/download:", on_click="ignore")
    st.caption("CSV: one row per run and step, the run's settings as columns, per-layer values as columns such "
               "as w_fro[0]. JSON: each run's settings, summary and every metric.")
    for rid in ids:
        r = by_id[rid]
        with st.expander(f"Run {rid}: re-run it, its settings", icon=":material/replay:"):
            st.text(_run_title(rid))
            if r.get("name"):
                st.text(f"Name: {r['name']}")
            if r.get("error"):
                st.text(f"Error: {r['error']}")
            st.caption("Trains this run again, exactly (same data, network, optimiser, seed and steps):")
            st.code(rv.rerun_command(r.get("spec") or {}, r["optimizer"], PACKAGE_ROOT, manager.db_path),
                    language="bash")
            st.caption("Its spec (RunSpec.from_dict takes it):")
            st.code(rv.spec_json(r.get("spec") or {}), language="json")

    st.subheader("Delete")
    confirm = st.session_state.get("rn_confirm")
    if confirm is None:
        st.button(f"Delete {len(ids)} selected run(s)…", key="rn_delete", icon=":material/delete:",
                  on_click=_ask_delete, args=(ids,))
    else:
        active, _ = rv.split_active(rows, confirm)
        text = f"Delete {rv.describe_runs(rows, confirm)} and all their metrics? This cannot be undone."
        if active:
            text += f" {len(active)} of them still training will be stopped first."
        st.warning(fmt.md_escape(text), icon=":material/warning:")
        b1, b2, _ = st.columns([1, 1, 3])
        b1.button("Yes, delete", key="rn_delete_yes", type="primary", on_click=_do_delete,
                  args=(manager, confirm))
        b2.button("Cancel", key="rn_delete_no", on_click=_cancel_delete)

_write_url(selected)  # last: every widget of the page has its value by now
