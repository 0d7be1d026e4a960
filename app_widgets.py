"""Widgets shared by the pages (the logic behind them lives in agd_viz.views).

`FormBinding`, `show_notes`, `sticky`: a form held in session state and mirrored in its widgets,
its notes under each control, and values that survive their widget not being drawn; `switch`: an
on/off button. `chart`: every chart of the app, in the charts' own look; `plot`: a chart with its
title and help, styled for the presenter view. `status_line`: a run's progress and latest numbers
on one line. `copy_link_button`: the page's URL to the clipboard. `lazy_expander`: a folded
expander that builds its content only while open; `limits_expander`: the server's limits in one.

`download_box`: under a data set control, the Download button of a downloadable data set that is
not in the cache yet. It fetches only on click, in the script thread, with a progress bar fed by
`agd_viz.downloads.download`'s progress callback; then the page reruns, so Start (disabled until
the data is there) and the notes see the new files. The outcome (where the data now is, or the
library's error naming the file and URLs) is shown under the control after the rerun.

`paper_presets`: the sidebar expander of the paper's presets, and after a click the note of the
one loaded (with its "slow on a CPU" warning for presets made for a GPU).
"""

from __future__ import annotations

import html
from pathlib import Path

import streamlit as st

from agd_viz import charts, fmt, optspec
from agd_viz import spec as spec_mod
from agd_viz.fmt import md_escape
from agd_viz.jobs import Refused
from agd_viz.views import datasets as data_views
from app_resources import operator_key, session_id

# What the server serves as files (server.enableStaticServing: Streamlit's `static/` beside app.py).
STATIC = Path(__file__).resolve().parent / "static"


def stop_runs(manager, run_ids, error_key: str) -> None:
    """A Stop button's callback: the job manager checks again that the runs are this session's
    (or that it holds the operator key); a refusal is kept under `error_key` for the page."""
    try:
        manager.stop(run_ids, session=session_id(), admin_key=operator_key())
    except Refused as exc:
        st.session_state[error_key] = str(exc)


def download_box(status: data_views.DataStatus | None, key: str, container=None) -> None:
    """Draw, in `container` (default: the main area), the outcome of the last download and, for a
    data set not downloaded yet on a server that allows downloads, its Download button. `key`:
    the button's widget key (also names the session keys of the outcome)."""
    box = container if container is not None else st.container()
    with box:
        done = st.session_state.pop(f"{key}_done", None)
        error = st.session_state.pop(f"{key}_error", None)
        if done:
            st.success(md_escape(done), icon=":material/download_done:")
        if error:
            st.error(f"Download failed: {md_escape(error)}", icon=":material/cloud_off:")
        if status is None or status.downloaded or not status.allowed:
            return
        if not st.button(status.button_label, key=key, icon=":material/download:", width="stretch",
                         help=f"Fetch {status.title} ({status.size_text}) from its publisher, check it "
                              "against the published checksums and keep it on this server."):
            return
        bar = st.progress(0.0, text=f"Downloading {md_escape(status.title)}…")

        def report(done_bytes: int, total_bytes: int, message: str) -> None:
            fraction, text = data_views.download_progress(done_bytes, total_bytes, message)
            bar.progress(fraction, text=md_escape(text))

        ok, text = data_views.download_dataset(status.name, progress=report)
        if ok:
            st.session_state[f"{key}_done"] = f"{status.title} is downloaded and checked."  # no server path
        else:
            st.session_state[f"{key}_error"] = text
        st.rerun()


def lazy_expander(container, label: str, key: str, icon: str | None = None):
    """A folded expander whose content is built only while it is open (else None). A folded
    expander's widgets would all reach the browser, which loads their code and draws them hidden:
    on a cold page that is time before the charts (benchmarks/cold_draw.py). Opening it reruns the
    page, which then builds the content."""
    box = container.expander(label, key=key, on_change="rerun", icon=icon)
    return box if box.open else None


def paper_presets(presets, note_of, caption: str, key_prefix: str, loaded_key: str, on_click) -> None:
    """In the sidebar: one button per preset (`presets`: key -> preset with title/description;
    `note_of(key)`: its GPU warning or None) calling `on_click(key)`; then, if `loaded_key` names
    the preset just loaded, what it is and its warning."""
    sb = st.sidebar
    box = lazy_expander(sb, caption[0], f"{key_prefix}open", icon=":material/menu_book:")
    if box is not None:
        with box:
            st.caption(caption[1])
            for key, preset in presets.items():
                gpu = note_of(key)
                st.button(preset.title, key=f"{key_prefix}{key}", on_click=on_click, args=(key,),
                          help=preset.description + (f" {gpu}" if gpu else ""), width="stretch")
    loaded = st.session_state.pop(loaded_key, None)
    if loaded:
        preset = presets[loaded]
        sb.caption(f"Loaded “{preset.title}”: {preset.description}")
        gpu = note_of(loaded)
        if gpu:
            sb.warning(gpu, icon=":material/speed:")


# -------------------------------------------------------------------------------------------------
# Form state <-> widgets, notes, sticky values


class FormBinding:
    """A page form held in `st.session_state[state_key]` and mirrored in its widgets (keys
    `prefix + field name`, and `prefix + "use_" + name` for each optimiser's checkbox), so that a
    preset or a link can set every widget at once, and the form survives widgets not being drawn
    (presenter view, another page)."""

    def __init__(self, state_key: str, prefix: str, fields, optimizer_names):
        self.state_key, self.prefix = state_key, prefix
        self.fields, self.names = tuple(fields), tuple(optimizer_names)

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def use_key(self, name: str) -> str:
        return f"{self.prefix}use_{name}"

    def _state(self) -> dict:
        if self.state_key not in st.session_state:
            st.session_state[self.state_key] = {f.name: f.default for f in self.fields}
        return st.session_state[self.state_key]

    def _widget_values(self, state: dict) -> dict:
        out = {self.key(f.name): state[f.name] for f in self.fields if f.name != "optimizers"}
        out.update({self.use_key(n): n in state["optimizers"] for n in self.names})
        return out

    def set(self, state: dict) -> None:
        """Every field at once (a preset, a link, "Load these settings")."""
        st.session_state[self.state_key] = dict(state)
        st.session_state.update(self._widget_values(state))

    def read(self) -> dict:
        """The form as the widgets now show it (widgets not drawn yet get the stored values)."""
        for key, value in self._widget_values(self._state()).items():
            st.session_state.setdefault(key, value)
        state = dict(self._state())
        for f in self.fields:
            if f.name != "optimizers" and self.key(f.name) in st.session_state:
                state[f.name] = st.session_state[self.key(f.name)]
        state["optimizers"] = tuple(n for n in self.names if st.session_state.get(self.use_key(n)))
        st.session_state[self.state_key] = state
        return state


def show_notes(notes, container=None) -> None:
    """A form's notes (views' `Note`: level + text) under a control: errors red, warnings yellow,
    the rest as captions."""
    with container if container is not None else st.container():
        for note in notes:
            if note.level == "error":
                st.error(note.text, icon=":material/error:")
            elif note.level == "warning":
                st.warning(note.text, icon=":material/warning:")
            else:
                st.caption(note.text)


def _flip(key: str) -> None:
    st.session_state[key] = not st.session_state.get(key)  # `sticky` keeps its copy on the run


def switch(label: str, key: str, help_text: str) -> bool:
    """An on/off switch drawn as a button (its icon a switch; the state in
    `st.session_state[key]`, kept like a `sticky` value): the page's buttons have their code
    loaded already, where a toggle would bring eight more files to every cold page
    (benchmarks/cold_draw.py). Returns the state."""
    on = bool(sticky(key, False))
    st.button(label, key=f"{key}_switch", help=help_text, on_click=_flip, args=(key,),
              icon=":material/toggle_on:" if on else ":material/toggle_off:")
    return on


def sticky(key: str, default):
    """A widget value that survives the widget not being drawn (presenter view, another page):
    Streamlit drops a widget's state then, so a plain session key keeps a copy."""
    keep = f"keep_{key}"
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(keep, default)
    st.session_state[keep] = st.session_state[key]
    return st.session_state[key]


# -------------------------------------------------------------------------------------------------
# Charts

# The Live page at 1280 px: Streamlit's default 6rem above the title and its wide side padding
# would push the first chart below a 720 px screen. A constant string: nothing a user typed ever
# reaches unsafe HTML.
PAGE_CSS = """
<style>
[data-testid="stMainBlockContainer"] { padding-top: 3rem; padding-left: 2rem; padding-right: 2rem; }
</style>
"""

# Presenter view: no sidebar or header, large type (ticks and legends are sized in the figures,
# charts.presenter_style), the configuration line at 18 px and more; the controls' row (the
# presenter's, not the room's) at its usual size, so it stays one line at 1280 px.
PRESENTER_CSS = """
<style>
section[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stExpandSidebarButton"],
header[data-testid="stHeader"] { display: none; }
[data-testid="stMainBlockContainer"] { max-width: 100%; padding: 0.75rem 1.5rem 2rem; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.25rem; }
.st-key-lv_top [data-testid="stMarkdownContainer"] p { font-size: 1rem; }
[data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] p { font-size: 1.2rem !important; }
h3 { font-size: 1.6rem !important; padding: 0 !important; }
</style>
"""


_TEMPLATE: list = []  # the charts' template, built on first use


def _template():
    """Streamlit's Plotly template (its colour scales and category colours) with the charts' look
    on top (charts.chart_style, titles in the app theme's text colour)."""
    if not _TEMPLATE:
        import plotly.graph_objects as go
        import plotly.io as pio

        base = pio.templates["streamlit"] if "streamlit" in pio.templates else go.layout.Template()
        template = go.layout.Template(base)
        template.layout.update(charts.chart_style(st.get_option("theme.textColor") or "#31333f"))
        _TEMPLATE.append(template)
    return _TEMPLATE[0]


# The charts' own renderer: a Streamlit component (no iframe) drawing with Plotly.js's cartesian
# bundle (static/, 1.5 MB: scatter, bar, heatmap and the rest of the 2-D traces this app draws),
# where st.plotly_chart loads the full 4.7 MB bundle (maps, 3-D, WebGL) on every cold page: about
# 0.5 s of a 2-core laptop's first view of a comparison (benchmarks/cold_draw.py, docs/performance.md
# §9). Served by Streamlit's static serving (.streamlit/config.toml); the file name carries the
# version, so a browser never runs a cached older bundle.
PLOTLY_BUNDLE = STATIC / "plotly-cartesian-4.1.1.min.js"
# Trace types in that bundle (its README; tests/browser checks them against the bundle itself).
BUNDLE_TRACES = frozenset({"scatter", "bar", "box", "heatmap", "histogram", "histogram2d",
                           "histogram2dcontour", "contour", "image", "pie", "violin"})
# Mode bar buttons the charts never show: Plotly 4's "Share chart" uploads the figure to Plotly's
# cloud (the app sends nothing off the machine), and box and lasso select, which report nothing
# here (a click does: chart's on_click). Both renderers get the same configuration.
HIDDEN_BUTTONS = ("sendChartToCloud", "select2d", "lasso2d")
_CHART_JS = """
// One copy of Plotly.js for the page, loaded by whichever chart comes first.
function plotly(src) {
  if (!window.__agdVizPlotly) {
    window.__agdVizPlotly = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = () => window.Plotly ? resolve(window.Plotly) : reject(new Error("no Plotly in " + src));
      s.onerror = () => { window.__agdVizPlotly = null; reject(new Error("could not load " + src)); };
      document.head.appendChild(s);
    });
  }
  return window.__agdVizPlotly;
}

// Called again with the same parent on every new figure (a live refresh, a replay step): the
// chart is updated in place (Plotly.react keeps zoom through the figure's uirevision).
export default function ({ parentElement, data, setTriggerValue }) {
  let el = parentElement.querySelector(":scope > div.agd-viz-chart");
  if (!el) {
    el = document.createElement("div");
    el.className = "agd-viz-chart";
    parentElement.appendChild(el);
  }
  if (data.key) el.dataset.key = data.key;
  el.dataset.spec = (+el.dataset.spec || 0) + 1;
  const mine = el.dataset.spec;
  const fig = JSON.parse(data.spec);
  // The chart's height from the start, so nothing below it moves when the library arrives.
  el.style.minHeight = (fig.layout.height || 450) + "px";
  const drawn = plotly(data.src).then((P) => {
    if (el.dataset.spec !== mine) return P;  // a newer figure came while the library loaded
    P.react(el, fig.data, fig.layout, data.config);
    if (!el.agdResize) {  // the container's width, not only the window's (sidebar, full screen)
      el.agdResize = new ResizeObserver(() => { if (el.data) P.Plots.resize(el); });
      el.agdResize.observe(el);
    }
    if (data.click && !el.agdClick) {  // chart(on_click=...): the points clicked, to the server
      el.agdClick = true;
      const plain = (v) => (v !== null && typeof v === "object" && v.length !== undefined) ? Array.from(v) : v;
      el.on("plotly_click", (ev) => setTriggerValue("click", ev.points.map(
        (pt) => ({customdata: plain(pt.customdata) ?? null, x: pt.x, y: pt.y}))));
    }
    return P;
  }).catch((err) => {
    el.textContent = "This chart could not be drawn: " + err.message;
  });
  return () => {
    if (el.agdResize) el.agdResize.disconnect();
    drawn.then((P) => P && P.purge(el));
  };
}
"""
_CHART = []


def _chart_component():
    if not _CHART:
        _CHART.append(st.components.v2.component("agd_viz_chart", js=_CHART_JS, isolate_styles=False))
    return _CHART[0]


def own_renderer(fig) -> bool:
    """Whether `fig` is drawn by the app's renderer: the server serves static/ (a server started
    from another folder than the app's may not), the bundle is there, and the figure's traces are
    in it."""
    return (bool(st.get_option("server.enableStaticServing")) and PLOTLY_BUNDLE.is_file()
            and all((t.type or "scatter") in BUNDLE_TRACES for t in fig.data))


def chart(fig, container=None, *, key: str | None = None, width="stretch", config: dict | None = None,
          on_click=None):
    """Every chart of the app: the figure carries its look (charts.chart_style, Streamlit's theme
    pass off: ~30 ms a chart on a cold page and on each live refresh) and is drawn by the app's
    renderer (above) where it can be, else by st.plotly_chart. `on_click(points)`, with a `key`:
    called (as a widget callback, before the script reruns) with the points a click picked, each
    a dict with its `customdata`, `x` and `y`."""
    if on_click is not None and key is None:
        raise ValueError("chart(on_click=...) needs a key: the click is read back under it")
    fig.update_layout(template=_template())
    config = {"displaylogo": False, **(config or {})}
    config["modeBarButtonsToRemove"] = [*config.get("modeBarButtonsToRemove", ()), *HIDDEN_BUTTONS]
    if not own_renderer(fig):
        clicks = {}
        if on_click is not None:  # a click selects a point; its selection comes back to the callback
            clicks = {"on_select": lambda: on_click(list(st.session_state[key].selection.points)),
                      "selection_mode": "points"}
        return (container or st).plotly_chart(fig, theme=None, key=key, width=width, config=config, **clicks)
    base = st.get_option("server.baseUrlPath").strip("/")
    data = {"spec": fig.to_json(), "config": config, "key": key,
            "click": on_click is not None,
            "src": f"/{base}/app/static/{PLOTLY_BUNDLE.name}" if base else f"/app/static/{PLOTLY_BUNDLE.name}"}
    mount = _chart_component()
    callback = (lambda: on_click(list(st.session_state[key]["click"] or []))) if on_click is not None else None
    if container is None:
        return mount(key=key, data=data, width=width, height="content", on_click_change=callback)
    with container:
        return mount(key=key, data=data, width=width, height="content", on_click_change=callback)


def plot(fig, key: str, present: bool = False, help_text: tuple[str, str] | None = None, config=None,
         height: int | None = None) -> None:
    """A chart with its bold title and help (a (title, help) pair), styled for the presenter view
    when `present`; `height` (px) overrides the figure's."""
    if help_text is not None:
        st.markdown(f"**{help_text[0]}**", help=help_text[1])
    if present:
        fig = charts.presenter_style(fig, height=height)
    elif height is not None:
        fig.update_layout(height=height)
    chart(fig, key=key, width="stretch", config=config)


def status_line(label: str, color: str, progress_text: str, fraction: float, chips, present: bool = False) -> None:
    """One run on one line: its name in its colour, its progress ("running · step 120 / 300 · …")
    and its latest numbers as chips ((name, value) pairs), over a thin progress bar. Every text is
    escaped: a run's label is user text."""
    size = 22 if present else 15
    pct = f"{100 * min(max(fraction, 0.0), 1.0):.1f}"
    items = "".join(f'<span style="background:#eef1f6;border-radius:1em;padding:0.05em 0.6em;white-space:nowrap">'
                    f'<span style="opacity:0.6">{html.escape(name)}</span> <b>{html.escape(value)}</b></span>'
                    for name, value in chips)
    st.html(f'<div style="display:flex;flex-wrap:wrap;align-items:baseline;gap:0.25em 0.6em;font-size:{size}px">'
            f'<span style="color:{html.escape(color)};font-weight:700;min-width:8em">{html.escape(label)}</span>'
            f'{items}<span style="opacity:0.7;font-size:0.8em">{html.escape(progress_text)}</span></div>'
            f'<div style="height:3px;margin-top:3px;border-radius:2px;background:linear-gradient(to right,'
            f'{html.escape(color)} {pct}%,#e3e6ec {pct}%)"></div>')


# Copies the page's URL as the browser shows it (the page keeps its state there): a component
# iframe, the one place a script may run, reading its parent's address (same origin). The
# clipboard API needs a secure origin; on plain http over a LAN, the older copy command does it.
COPY_LINK_HTML = """
<style>
body { margin: 0; font-family: "Source Sans", "Source Sans Pro", system-ui, -apple-system, "Segoe UI", sans-serif; }
button { font: inherit; font-size: 14px; height: 38px; padding: 0 12px; border: 1px solid #d5d9e0;
         border-radius: 0.4rem; background: #fff; color: #1f2430; cursor: pointer; white-space: nowrap; }
button:hover { border-color: #1565c0; color: #1565c0; }
</style>
<button id="copy" title="Copy this page's link: it reopens the form, the chart options and the comparison shown">
Copy link</button>
<script>
const b = document.getElementById("copy");
b.onclick = async () => {
  const url = window.parent.location.href;
  let ok = false;
  try { await navigator.clipboard.writeText(url); ok = true; } catch (e) {
    const t = document.createElement("textarea");
    t.value = url; document.body.appendChild(t); t.select();
    try { ok = document.execCommand("copy"); } catch (e2) {}
    t.remove();
  }
  b.textContent = ok ? "Copied" : "Copy: use the address bar";
  setTimeout(() => { b.textContent = "Copy link"; }, 2000);
};
</script>
"""


def copy_link_button() -> None:
    """A "Copy link" button copying the page's current URL."""
    st.iframe(COPY_LINK_HTML, height=40, width=110)


# -------------------------------------------------------------------------------------------------
# Server limits


def limits_lines(manager, device: str = "auto", page_steps: int | None = None, max_grid: int | None = None) -> list[str]:
    """The server's limits as short lines (server settings only, no user text)."""
    room = manager.room(session_id())
    kind = manager.device_kind(device)
    steps = spec_mod.max_steps()
    page_steps = page_steps or spec_mod.page_limits()["steps"][1]  # the Sweep page's too
    lines = [
        f"Workers: {fmt.plural(manager.max_workers, 'job')} at once; the others wait in a queue "
        f"(now {fmt.plural(room['active'], 'run')} waiting or training).",
        f"Queue: at most {room['max_queued']} runs waiting or training on this server, "
        f"{room['max_queued_per_session']} per browser session (yours: {room['session_active']}).",
        f"Your share of the queue: about {fmt.estimate(room['max_queued_seconds_per_session'])} of compute "
        f"and {fmt.bytes_(room['max_queued_bytes_per_session'])} of metrics waiting or training (yours now: "
        f"{fmt.estimate(room['session_seconds']) if room['session_seconds'] else 'none'}); it is shared "
        "fairly: the queue takes one job from each session in turn.",
        f"Steps: at most {min(steps, page_steps or steps):,} per run"
        + (" on this page" if page_steps and page_steps < steps else "") + ".",
        f"Memory: about {fmt.bytes_(spec_mod.budget_bytes(kind))} per comparison on the "
        f"{kind.upper() if kind != 'cpu' else 'CPU'}.",
    ]
    if max_grid is not None:
        lines.append(f"Sweeps: at most {max_grid} runs each.")
    return lines


def limits_expander(manager, key: str, container=None, **kwargs) -> None:
    """A small "Server limits" expander (Live and Sweep pages); settings via environment variables."""
    box = lazy_expander(container or st, "Server limits", key, icon=":material/shield:")
    if box is None:
        return
    with box:
        try:
            lines = limits_lines(manager, **kwargs)
        except ValueError as exc:  # a malformed AGD_VIZ_* variable: say which, keep the page up
            st.caption(str(exc))
            return
        st.caption("  \n".join(lines))
        st.caption("Set by the server's `AGD_VIZ_MAX_WORKERS`, `AGD_VIZ_MAX_QUEUED`, "
                   "`AGD_VIZ_MAX_QUEUED_PER_SESSION`, `AGD_VIZ_MAX_QUEUED_SECONDS_PER_SESSION`, "
                   "`AGD_VIZ_MAX_QUEUED_MB_PER_SESSION`, `AGD_VIZ_PAGE_MAX_STEPS` (and `_BATCH`, `_DEPTH`, "
                   "`_WIDTH`), `AGD_VIZ_MAX_STEPS`, `AGD_VIZ_MAX_MEMORY_MB` and `AGD_VIZ_MAX_GRID`.")


def optimizer_picker(container, use_key, field_key, available: dict, notes: dict, fields: dict,
                     max_chars: int = 200, option_fields: bool = True) -> None:
    """A checkbox per optimiser of the vocabulary (agd_viz.optspec), in registry order, and under
    each ticked one its setting: AGD's gain, a baseline's learning rates (`fields[name]`), or a
    learning-rate-free optimiser's options (when `option_fields`). An optimiser whose package is
    missing is shown disabled with its install command. `use_key(name)` / `field_key(field)`:
    the widget keys; `notes`: the form's notes by field."""
    with container:
        for name, info in optspec.OPTIMIZERS.items():
            ok, install = available.get(name, (True, None))
            checked = bool(st.session_state.get(use_key(name)))
            if info.kind == "options" and name == optspec.names("options")[0]:
                st.caption("Learning-rate-free (and schedule-free) baselines")
            st.checkbox("AGD (no learning rate)" if info.kind == "agd" else info.title, key=use_key(name),
                        disabled=not ok and not checked, help=info.help or None if ok else f"Not installed here: {install}")
            if not ok and not checked:
                st.caption(f"Not installed here: `{install}`" if install else "Not available here.")
            if not checked:
                continue
            if not ok:  # ticked by a link or a preset: say why it cannot train (the form's note)
                show_notes(notes.get(fields.get(name), []))
                continue
            if info.kind == "agd" and "gain" in fields:
                # No min/max on the box: out of range, it would keep (and train) the last valid value;
                # the form's check refuses it in red under the box instead, with Start disabled.
                st.number_input("AGD gain", step=0.5, format="%g", key=field_key(fields["gain"]),
                                help=f"Scales AGD's update (not η). 1 is the paper's setting; 0.01 to "
                                     f"{optspec.MAX_GAIN:g}.")
                show_notes(notes.get(fields["gain"], []))
            elif info.kind == "rates":
                st.text_input(f"{info.title} learning rates", key=field_key(fields[name]), max_chars=80,
                              help="One or more, separated by commas: 1e-3, 1e-2. Each is its own run.")
                show_notes(notes.get(fields[name], []))
            elif info.kind == "options" and option_fields:
                st.text_input(f"{info.title} options", key=field_key(fields[name]), max_chars=max_chars,
                              placeholder=info.hint, help=f"{info.help} Options as key=value, separated by commas; "
                              f"empty: the package's defaults. Keys: {', '.join(info.defaults)}.")
                show_notes(notes.get(fields[name], []))


def paper_table(found, key: str, help_text: str) -> None:
    """"Paper vs measured": the table and caption of agd_viz.views.paper (nothing when `found` is
    None: no preset of the paper matches what is shown)."""
    if found is None:
        return
    table, caption = found
    st.markdown("**Paper vs measured**", help=help_text)
    st.dataframe(table, hide_index=True, width="stretch", key=key)
    st.caption(md_escape(caption))
