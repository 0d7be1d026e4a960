"""The import rules of docs/architecture.md, held on the code itself.

Static checks read every module's imports (lazy ones inside functions included) with `ast`; the
dynamic check runs the real app in a fresh Python process (AppTest, no conftest, so no torch
imported by the test itself), opens every page, starts a run and lets a real worker train it,
then asserts the server process never imported torch.
"""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "agd_viz"
TORCH_LAYER = {"agd_viz.optim", "agd_viz.nets", "agd_viz.spectra", "agd_viz.data", "agd_viz.train",
               "agd_viz.worker", "agd_viz.remote"}
SERVER_ROOTS = ["app.py", "app_live.py", "app_resources.py", "app_widgets.py",
                *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, package_modules: set[str]) -> set[str]:
    """Every module `path` imports, anywhere in the file: agd_viz modules by full name (a
    `from agd_viz import x` names agd_viz.x when that is a module), others by top-level name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path) if path.is_relative_to(PACKAGE) else ""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.add(a.name if a.name in package_modules else a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import inside the package
                pkg = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, node.module])
            if base in package_modules or base == "agd_viz":
                if base != "agd_viz":
                    out.add(base)
                for a in node.names:
                    full = f"{base}.{a.name}"
                    if full in package_modules:
                        out.add(full)
                    elif base == "agd_viz":
                        out.add("agd_viz")
            else:
                out.add(base.split(".")[0])
    out.discard(here)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    names = set(modules)
    graph = {m: _imports(p, names) for m, p in modules.items()}
    for root in SERVER_ROOTS:
        graph[root] = _imports(ROOT / root, names)
    return graph


def test_the_library_never_imports_streamlit():
    graph = _graph()
    offenders = {m for m, deps in graph.items() if m.startswith("agd_viz") and "streamlit" in deps}
    assert not offenders, f"agd_viz modules importing streamlit: {sorted(offenders)}"


def test_nothing_the_server_imports_reaches_torch():
    """From app.py, the page files and every views/ and charts/ module, follow agd_viz imports:
    no module reached imports torch or a module of the torch layer."""
    graph = _graph()
    roots = [*SERVER_ROOTS, *(m for m in graph if m.startswith(("agd_viz.views", "agd_viz.charts")))]
    for root in roots:
        seen, todo, path = set(), [root], {root: [root]}
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            for dep in graph.get(m, ()):
                if dep == "torch" or dep in TORCH_LAYER:
                    pytest.fail(f"{' -> '.join(path[m])} imports {dep}")
                if dep.startswith("agd_viz") and dep not in seen:
                    path[dep] = [*path[m], dep]
                    todo.append(dep)


def _reached_by_the_server(graph) -> set[str]:
    roots = [*SERVER_ROOTS, *(m for m in graph if m.startswith(("agd_viz.views", "agd_viz.charts")))]
    seen, todo = set(), list(roots)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += [d for d in graph.get(m, ()) if d.startswith("agd_viz") or d in SERVER_ROOTS]
    return seen


def _import_time_modules(path: Path) -> set[str]:
    """Top-level names imported when `path` is imported: function bodies left out (lazy imports)."""
    out, todo = set(), list(ast.parse(path.read_text(), filename=str(path)).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
        todo += list(ast.iter_child_nodes(node))
    return out


def test_the_server_imports_ray_only_when_a_cluster_is_used():
    """Ray is optional (docs/cluster.md): no module the server reaches imports it at import time."""
    graph, modules = _graph(), _modules()
    for m in sorted(_reached_by_the_server(graph)):
        path = modules.get(m) or (ROOT / m if m in SERVER_ROOTS else None)
        if path is not None:
            assert "ray" not in _import_time_modules(path), f"{m} imports ray at import time"


def test_the_store_sits_at_the_bottom():
    allowed = {"agd_viz.fmt", "agd_viz.optspec"}
    deps = {d for d in _graph()["agd_viz.store"] if d.startswith("agd_viz")}
    assert deps <= allowed, f"agd_viz.store imports {sorted(deps - allowed)}"


def test_there_are_no_import_cycles():
    graph = {m: {d for d in deps if d in _modules()} for m, deps in _graph().items() if m in _modules()}
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_pages_stay_thin():
    for page in sorted((ROOT / "pages").glob("*.py")):
        n = len(page.read_text().splitlines())
        assert n < 300, f"{page.name} has {n} lines; move logic into agd_viz/views"


def test_every_chart_goes_through_one_helper():
    """The charts' look and renderer are set in one place (app_widgets.chart: the figure's template,
    the app's Plotly.js bundle); a page calling st.plotly_chart itself would draw in another style,
    and load the full Plotly.js and Streamlit's theme pass on every cold page."""
    calls = []
    for name in SERVER_ROOTS:
        for node in ast.walk(ast.parse((ROOT / name).read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "plotly_chart":
                calls.append(f"{name}:{node.lineno}")
    assert len(calls) == 1 and calls[0].startswith("app_widgets.py:"), calls



def test_the_chart_bundle_is_the_plotly_js_the_figures_are_written_for():
    """The app's renderer draws with static/'s cartesian bundle of Plotly.js; the figures are
    written by the Python plotly package for its own Plotly.js. A plotly upgrade without a new
    bundle (attributes the old one ignores, or misreads) fails here."""
    import plotly.offline

    import app_widgets

    bundle = app_widgets.PLOTLY_BUNDLE
    head = bundle.read_text()[:300]
    version = plotly.offline.get_plotlyjs_version()
    assert f"plotly.js (cartesian - minified) v{version}" in head, head
    assert bundle.name == f"plotly-cartesian-{version}.min.js"  # a new version is a new URL: no stale cache
    assert "MIT License" in (bundle.parent / "plotly-LICENSE.txt").read_text()


def test_every_trace_type_the_app_draws_is_in_the_bundle():
    """A trace type outside static/'s bundle makes its chart fall back to st.plotly_chart, which
    loads the full 4.7 MB Plotly.js on the page (benchmarks/cold_draw.py): name it here first."""
    import plotly.graph_objects as go
    from plotly.basedatatypes import BaseTraceType

    import app_widgets

    used = set()
    for path in [*(ROOT / "agd_viz").rglob("*.py"), *(ROOT / name for name in SERVER_ROOTS)]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "go"
                    and isinstance(getattr(go, node.attr, None), type)
                    and issubclass(getattr(go, node.attr), BaseTraceType)):
                used.add(getattr(go, node.attr)().type)
    assert used >= {"scatter", "bar", "heatmap"}, used  # the walk finds what the charts draw
    assert used <= app_widgets.BUNDLE_TRACES, used - app_widgets.BUNDLE_TRACES


def test_a_chart_that_reports_clicks_needs_a_key():
    """The click comes back in session state under the chart's key; without one it could not."""
    import plotly.graph_objects as go

    import app_widgets

    with pytest.raises(ValueError, match="needs a key"):
        app_widgets.chart(go.Figure(), on_click=print)

SERVER_SCRIPT = textwrap.dedent("""
    import sys, time
    from streamlit.testing.v1 import AppTest
    from agd_viz.store import Store

    db = sys.argv[1]
    at = AppTest.from_file("app.py", default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    for page in ("pages/sweep.py", "pages/runs.py", "pages/how_agd_works.py", "pages/live.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
    for key, value in (("lv_depth", 3), ("lv_width", 8), ("lv_steps", 20), ("lv_batch_size", 16)):
        at.number_input(key=key).set_value(value)
    at.run()
    at.button(key="lv_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    store = Store(db)
    deadline = time.monotonic() + 240
    while True:
        runs = store.list_runs()
        if runs and all(r["status"] not in ("queued", "running") for r in runs):
            break
        assert time.monotonic() < deadline, [(r["id"], r["status"]) for r in runs]
        time.sleep(0.3)
    at.run()  # the page shows the finished comparison: charts drawn from the store
    assert not at.exception, [e.value for e in at.exception]
    assert [r["status"] for r in runs] == ["finished"] * len(runs), [(r["status"], r["error"]) for r in runs]
    assert "ray" not in sys.modules  # no cluster configured: Ray is never imported
    print("TORCH" if "torch" in sys.modules else "NO-TORCH", len(runs))
""")


@pytest.mark.slow
def test_the_server_process_never_imports_torch(tmp_path):
    """Every page opened through app.py, a comparison started and trained by a real worker, its
    charts drawn: the Streamlit process itself never imported torch."""
    env = {"AGD_VIZ_DB": str(tmp_path / "runs.db"), "AGD_VIZ_MAX_WORKERS": "1", "PYTHONPATH": str(ROOT),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    import os

    env = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", SERVER_SCRIPT, env["AGD_VIZ_DB"]], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["NO-TORCH", "2"], out.stdout[-2000:]
