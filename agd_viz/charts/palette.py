"""Colours: one family of shades per optimiser, the shade picked by its learning rate (AGD: gain),
and the line style of each run of a figure.

Which optimiser a text names, its scale relative to the default and its other non-default
options come from `agd_viz.optspec`, the one parser of spec strings and labels; only the colours
themselves live here.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Sequence

from agd_viz import optspec
from agd_viz.fmt import md_escape

__all__ = ["color_for"]

# Index 0 is the family's base colour; then darker/lighter shades alternate so that neighbouring
# learning rates (half a decade apart) land on clearly different shades.
_FAMILY_SHADES = {
    "agd": ["#1565c0", "#0b3d91", "#42a5f5", "#002171", "#90caf9"],
    "adam": ["#f57c00", "#bf4800", "#ffa726", "#8a3000", "#ffcc80"],
    "sgd": ["#2e7d32", "#1b5e20", "#66bb6a", "#003300", "#a5d6a7"],
    "adamw": ["#7b1fa2", "#4a0072", "#ba68c8", "#2a0045", "#e1bee7"],
    # The learning-rate-free baselines (and schedule-free AdamW): red, teal, brown.
    "prodigy": ["#c62828", "#8e0000", "#ef5350", "#5f0000", "#ef9a9a"],
    "dadapt-adam": ["#00838f", "#005662", "#26c6da", "#003038", "#80deea"],
    "schedulefree-adamw": ["#6d4c41", "#40241a", "#a1887f", "#260e04", "#d7ccc8"],
    # Muon, AGD's successor: magenta, far from AGD's blue and Adam's orange on a projector.
    "muon": ["#ad1457", "#78002e", "#ec407a", "#4a001c", "#f48fb1"],
}
# For optimisers without a family: none of these is blue, orange, green or purple.
_HASH_PALETTE = ["#d62728", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#c2185b",
                 "#00897b"]
# Classes of a 2-D toy data set (decision boundaries).
_CLASS_COLORS = ["#e15759", "#4e79a7", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948",
                 "#ff9da7", "#9c755f", "#bab0ac"]


def _stable_hash(text: str) -> int:
    # Python's hash() is salted per process; colours must agree between app, worker and tests.
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:4], "little")


def color_for(label_or_optimizer: str) -> str:
    """Colour of an optimiser, the same on every chart.

    AGD is always the same blue, Adam orange, SGD green, AdamW purple; Prodigy red, D-Adapt
    Adam teal, schedule-free AdamW brown. Within a family the learning rate (AGD: gain; the
    option is `OptimizerInfo.scale_key`) picks a shade: round(2·log10(value/default))
    half-decades from the default, larger rates darker. Other non-default settings shift the
    shade by a stable hash. Unknown optimisers get a colour from a fixed palette chosen by a
    stable hash of their name; a known optimiser whose options do not parse gets its base colour.
    """
    text = str(label_or_optimizer or "")
    parsed = optspec.try_parse(text)
    name = parsed.name if parsed is not None else optspec.family(text)
    shades = _FAMILY_SHADES.get(name)
    if shades is None:
        return _HASH_PALETTE[_stable_hash(name or text) % len(_HASH_PALETTE)]
    if parsed is None:
        return shades[0]
    index = 0
    scale = parsed.scale
    if scale is not None and scale > 0:
        k = round(2 * math.log10(scale))
        index = 2 * k - 1 if k > 0 else -2 * k
    # Keys are unique, so sorting never compares the (mixed-type) values.
    extra = sorted((k, v) for k, v in parsed.changed.items() if k != parsed.info.scale_key)
    if extra:
        index += 1 + _stable_hash(repr(extra)) % (len(shades) - 1)
    return shades[index % len(shades)]


def _rgb(color: str) -> tuple[int, ...] | None:
    """(r, g, b) of "#rrggbb" or "rgba(r,g,b,a)"; None for anything else."""
    if color.startswith("#") and len(color) == 7:
        return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
    if color.startswith("rgba("):
        return tuple(int(float(v)) for v in color[5:-1].split(",")[:3])
    return None


_AGD_RGB = {_rgb(c) for c in _FAMILY_SHADES["agd"]}


def drawn_last(trace: dict) -> bool:
    """Whether a trace is AGD's (any shade of its family, its lines or its bands): drawn on top of
    the baselines, so that Adam's line never hides it where the two overlap."""
    for color in ((trace.get("line") or {}).get("color"), (trace.get("marker") or {}).get("color"),
                  trace.get("fillcolor")):
        if isinstance(color, str) and _rgb(color) in _AGD_RGB:
            return True
    return False


def _rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _mix_white(color: str, amount: float) -> str:
    c = color.lstrip("#")
    rgb = [int(c[i:i + 2], 16) for i in (0, 2, 4)]
    r, g, b = (round(v + (255 - v) * amount) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


_DASHES = ["solid", "dot", "dash", "longdash", "dashdot"]


def _styles(runs: Sequence[Any]) -> dict[int, tuple[str, str]]:
    """(colour, dash) per run (charts' RunData), keyed by id(run): the optimiser's colour; runs
    sharing a colour differ by dash."""
    seen: dict[str, int] = {}
    out = {}
    for run in runs:
        color = color_for(run.optimizer or run.label)
        n = seen.get(color, 0)
        seen[color] = n + 1
        out[id(run)] = (color, _DASHES[n % len(_DASHES)])
    return out


# Streamlit's Markdown colour names nearest each family's base colour, for a run's name written in
# text (st.markdown ":blue[...]") beside its lines.
_MD_COLORS = {"agd": "blue", "adam": "orange", "sgd": "green", "adamw": "violet", "prodigy": "red",
              "dadapt-adam": "gray", "schedulefree-adamw": "gray", "muon": "red"}


def md_label(label: str, optimizer: str) -> str:
    """A run's name as bold Markdown in its family's colour (the text itself escaped)."""
    return f":{_MD_COLORS.get(optspec.family(optimizer), 'gray')}[**{md_escape(label)}**]"
