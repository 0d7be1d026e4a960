"""Runs: every stored run in a table (filter, sort, delete), any of them overlaid on any metric,
and their numbers exported (CSV, JSON, the command that trains a run again).

Thin page (docs/architecture.md): widgets -> agd_viz.views.runs (table, filters, overlays, exports) -> agd_viz.charts.
The overlay's selection is the multiselect `rn_sel`; ticking rows in the table, or a link
`?run=1,2`, sets it. Names, notes and errors are shown as text only, never as HTML.
"""

from __future__ import annotations

import streamlit as st

from agd_viz import fmt
from agd_viz.views import runs as rv
from agd_viz.jobs import Refused
from app_resources import job_manager, operator_key, session_id

SEL = "rn_sel"  # run ids overlaid, the page's selection
TABLE = "rn_table"
PAGE_SIZE = 1000  # newest runs listed; older ones stay reachable through ?run=


def _apply_url() -> None:
    """A link's runs win when they differ from what this page last wrote to the URL."""
    raw = st.query_params.get(rv.RUN_PARAM)
    if raw is None or raw == st.session_state.get("rn_url_written"):
        return
    ids, bad = rv.parse_run_param(raw)
    st.session_state["rn_url_written"] = raw
    st.session_state["rn_link_ids"] = ids
    if bad:
        st.session_state["rn_notes"] = [f"The link's run value(s) {', '.join(map(repr, bad))} are not run "
                                        "numbers; they were left out."]
    st.session_state[SEL] = ids


def _write_url(ids: list[int]) -> None:
    text = rv.format_run_param(ids)
    if text:
        if st.query_params.get(rv.RUN_PARAM) != text:
            st.query_params[rv.RUN_PARAM] = text
    elif rv.RUN_PARAM in st.query_params:
        del st.query_params[rv.RUN_PARAM]
    st.session_state["rn_url_written"] = text or None


def _on_table_select() -> None:
    """Rows ticked in the table become the overlay; runs selected but filtered out stay."""
    shown = st.session_state.get("rn_table_ids", [])
    rows = st.session_state[TABLE].selection.rows
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

st.title("Runs")
st.caption("Every run in the store. Filter and sort the table, tick rows (or pick runs below) to "
           "overlay them on any metric, export their numbers, or get the command that trains one "
           "again. A link with ?run=3 or ?run=3,4 opens those runs.")
for text in st.session_state.pop("rn_notes", []):
    st.warning(fmt.md_escape(text), icon=":material/link_off:")
for level, text in st.session_state.pop("rn_delete_notes", []):
    (st.success if level == "success" else st.error)(text)

rows = store.list_runs(limit=PAGE_SIZE)
linked = [i for i in st.session_state.get(SEL, []) if i not in {r["id"] for r in rows}]
rows += [r for r in (store.get_run(i) for i in linked) if r is not None]
by_id = {r["id"]: r for r in rows}
missing = [i for i in st.session_state.get(SEL, []) if i not in by_id]
if missing:
    st.warning(f"Run(s) {', '.join(f'#{i}' for i in missing)} are not in the store (deleted, or never "
               "made); showing the others.", icon=":material/link_off:")
    st.session_state[SEL] = [i for i in st.session_state[SEL] if i in by_id]

frame = rv.runs_frame(rows)
options = rv.filter_options(frame)

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
ascending = sb.toggle("Ascending", key="rn_asc", value=False)
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
    st.dataframe(
        shown[list(rv.COLUMNS)], key=TABLE, on_select=_on_table_select, selection_mode="multi-row",
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
_write_url(selected)

if selected:
    sel_rows = [by_id[i] for i in selected]
    st.subheader("Overlay")
    c1, c2, c3, c4, c5 = st.columns([1.4, 1.4, 1.2, 0.8, 1.0])
    metric = c1.selectbox("Metric", list(rv.METRICS), key="rn_metric",
                          format_func=lambda m: rv.METRICS[m].replace("<sub>", "").replace("</sub>", ""))
    per_layer = metric in rv.LAYERED
    smoothing = c3.slider("Smoothing (EMA)", 0.0, 0.99, 0.0, 0.01, key="rn_smooth")
    log_y = c4.toggle("Log y", key="rn_logy")
    x = c5.radio("x axis", ("step", "time"), key="rn_x", horizontal=True,
                 format_func=lambda v: "step" if v == "step" else "wall time")
    runs = rv.run_data(store, sel_rows, layers=per_layer)
    layers = None
    if per_layer:
        n_layers = rv.layer_count(runs)
        if n_layers:
            layers = c2.multiselect("Layers", list(range(n_layers)), key="rn_layers",
                                    placeholder="all layers", help="0 is the first weight matrix.")
        else:
            c2.caption("No per-layer metrics in these runs (trained with metrics “none”).")
    fig = rv.overlay_figure(runs, metric, layers=layers, smoothing=smoothing, log_y=log_y, x=x)
    st.plotly_chart(fig, key="rn_chart", width="stretch",
                    config=rv.image_config(image_format, f"agd-{metric}-runs-{rv.format_run_param(selected)}"))

    st.subheader("Export")
    e1, e2, _ = st.columns([1, 1, 2])
    ids = list(selected)
    e1.download_button("Metrics as CSV", data=lambda: rv.export_csv(store, ids),
                       file_name=rv.export_name(ids, "csv"), mime="text/csv", key="rn_csv",
                       icon=":material/download:", on_click="ignore")
    e2.download_button("Metrics as JSON", data=lambda: rv.export_json(store, ids),
                       file_name=rv.export_name(ids, "json"), mime="application/json", key="rn_json",
                       icon=":material/download:", on_click="ignore")
    st.caption("CSV: one row per run and step, per-layer values as columns such as w_fro[0]. JSON: each "
               "run's settings, summary and every metric.")
    for rid in ids:
        r = by_id[rid]
        with st.expander(f"Run {rid}: re-run it, its settings", icon=":material/replay:"):
            st.text(_run_title(rid))
            if r.get("name"):
                st.text(f"Name: {r['name']}")
            if r.get("error"):
                st.text(f"Error: {r['error']}")
            st.caption("Trains this run again, exactly (same data, network, optimiser, seed and steps):")
            st.code(rv.rerun_command(r.get("spec") or {}, r["optimizer"]), language="bash")
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
