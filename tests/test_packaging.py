"""`pip install .` gives the library and its `agd-viz` command: the wheel built from pyproject.toml
holds every module of agd_viz (views and charts included) and the console script."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_the_whole_library_and_the_command(tmp_path):
    src = tmp_path / "src"  # a copy, so the build leaves no egg-info in the checkout
    shutil.copytree(ROOT / "agd_viz", src / "agd_viz", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "wheel"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("agd_viz-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "agd_viz").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "agd-viz = agd_viz.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
    from agd_viz import __version__

    assert wheel.name.startswith(f"agd_viz-{__version__}-")
