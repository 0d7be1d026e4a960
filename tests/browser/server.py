"""Start the real app (`streamlit run app.py`) on a free port against a given run store.

Shared by the browser tests' fixture and docs/make_screenshots.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def running_app(db: Path, log: Path, env: dict | None = None, timeout: float = 90.0, script: str = "app.py"):
    """Yield the base URL of `streamlit run app.py` (or another `script`) serving `db`; stop it
    (and its workers) after."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    full_env = {**os.environ, "AGD_VIZ_DB": str(db), "PYTHONPATH": str(ROOT), **(env or {})}
    url = f"http://127.0.0.1:{port}"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not become healthy in {timeout:g} s; see {log}")
            time.sleep(0.25)
        yield url
    finally:
        # SIGTERM lets the server's exit handler stop its training workers; SIGKILL if it hangs.
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


def launch_chromium(playwright):
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    return playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)


def wait_idle(page, timeout_ms: float = 60_000) -> None:
    """Wait until the app has finished its current script run (not a sleep)."""
    page.wait_for_selector(IDLE, timeout=timeout_ms)


# Plotly ships long arrays as {dtype, bdata: base64} (decoded here), short ones as plain lists.
_VALUES_JS = """
  const kinds = {f4: Float32Array, f8: Float64Array, i1: Int8Array, u1: Uint8Array, i2: Int16Array,
                 u2: Uint16Array, i4: Int32Array, u4: Uint32Array};
  const values = (a) => {
    if (!a) return [];
    if (Array.isArray(a) || ArrayBuffer.isView(a)) return a;
    if (a.bdata !== undefined && kinds[a.dtype]) {
      const bytes = Uint8Array.from(atob(a.bdata), c => c.charCodeAt(0));
      return new kinds[a.dtype](bytes.buffer);
    }
    return [];
  };
  const top = (xs) => {
    let m = null;
    for (let i = 0; i < xs.length; i++) {
      const v = Number(xs[i]);
      if (Number.isFinite(v) && (m === null || v > m)) m = v;
    }
    return m;
  };
"""

# Each chart's trace count, total x values and largest x, read from the plotly div's `data`.
PLOT_POINTS_JS = """
() => {""" + _VALUES_JS + """
  return Array.from(document.querySelectorAll('.js-plotly-plot')).map(div => {
    const traces = div.data || [];
    let points = 0, maxX = null;
    for (const t of traces) {
      const xs = values(t.x);
      points += xs.length;
      const m = top(xs);
      if (m !== null && (maxX === null || m > maxX)) maxX = m;
    }
    return {points, maxX, traces: traces.length};
  });
}
"""

# The first chart's (the loss chart's) largest x per trace name: the step each run has reached on it.
RUN_STEPS_JS = """
() => {""" + _VALUES_JS + """
  const div = document.querySelector('.js-plotly-plot');
  const out = {};
  for (const t of (div && div.data) || []) {
    const m = top(values(t.x));
    if (m !== null) out[t.name] = Math.max(out[t.name] ?? m, m);
  }
  return out;
}
"""

# Counts script runs (full or fragment) from now on: each flips stApp's script state to running.
COUNT_RUNS_JS = """
() => {
  window.__agdRuns = 0;
  const app = document.querySelector("[data-testid='stApp']");
  new MutationObserver(() => {
    if (app.getAttribute('data-test-script-state') === 'running') window.__agdRuns++;
  }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}
"""


def count_runs(page, seconds: float) -> int:
    """How many script runs happen in the next `seconds` (a live fragment ticks once a second)."""
    page.evaluate(COUNT_RUNS_JS)
    page.wait_for_timeout(int(seconds * 1000))
    return page.evaluate("window.__agdRuns")
