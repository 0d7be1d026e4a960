"""A page's state in its URL: which widget each query parameter sets, how its value is written
and read back, and what to say when a link carries a value the page cannot use.

Only values that differ from their defaults are written, so a link stays short and names what was
chosen; a bad value is explained and leaves its widget at the default. No streamlit here: a page
reads `st.query_params` into `read`, and writes `write`'s result back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from agd_viz import fmt

__all__ = ["parse_scalar", "Param", "read", "write"]


@dataclass(frozen=True)
class Param:
    """One query parameter: its `name` in the URL, the widget `key` it sets, its `kind` ("list"
    of texts, "ints", "text", "choice", "bool", "float"), its `default`, and for "choice" (and
    for the items of "list" and "ints" when given) the values allowed."""

    name: str
    key: str
    kind: str
    default: Any
    choices: tuple = ()
    lo: float | None = None
    hi: float | None = None


def _encode(p: Param, value: Any) -> str:
    if p.kind in ("list", "ints"):
        return ",".join(str(v) for v in value)
    if p.kind == "bool":
        return "1" if value else "0"
    if p.kind == "float":
        return f"{float(value):g}"
    return str(value)


def parse_scalar(kind: str, raw: Any, lo: float | None = None, hi: float | None = None,
                 choices: Sequence = ()) -> Any:
    """A link's "float", "bool" or "choice" value from its text (the Live form's fields read theirs
    with it too). ValueError says what is wrong, quoting at most the start of the text."""
    text = str(raw)
    if kind == "bool":
        value = fmt.truth(text)
        if value is None:
            raise ValueError(f"{text[:20]!r} is not 0 or 1")
        return value
    if kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text[:20]!r} is not a number") from None
        lo, hi = lo if lo is not None else -math.inf, hi if hi is not None else math.inf
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"{text[:20]} is outside {lo:g}–{hi:g}")
        return value
    if kind == "choice":
        if text not in tuple(str(c) for c in choices):
            raise ValueError(f"{text[:40]!r} is not one of {', '.join(str(c) for c in choices if str(c))}")
        return text
    raise AssertionError(f"not a scalar kind: {kind}")


def _decode(p: Param, raw: str, choices: Sequence | None) -> Any:
    allowed = tuple(choices) if choices is not None else p.choices
    if p.kind in ("list", "ints"):
        items = [t.strip() for t in str(raw).split(",") if t.strip()]
        if p.kind == "ints":
            bad = [t for t in items if not (t.isascii() and t.isdigit() and len(t) <= 9)]
            if bad:
                raise ValueError(f"{bad[0][:20]!r} is not a whole number")
            items = [int(t) for t in items]
        unknown = [v for v in items if allowed and v not in allowed]
        if unknown:
            raise ValueError(f"{str(unknown[0])[:40]!r} is not among the values here")
        return list(dict.fromkeys(items))
    if p.kind in ("bool", "float", "choice"):
        return parse_scalar(p.kind, raw, p.lo, p.hi, allowed)
    return str(raw)[:200]


def read(params: Mapping[str, Any], spec: Iterable[Param],
         choices: Mapping[str, Sequence] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The widget values a link sets ({widget key: value}) and a sentence per parameter it could not
    use. `choices`: allowed values by parameter name, known only at run time (e.g. the statuses of
    the runs there are)."""
    values, notes = {}, []
    for p in spec:
        if p.name not in params:
            continue
        raw = params[p.name]
        raw = raw[-1] if isinstance(raw, (list, tuple)) else raw
        try:
            values[p.key] = _decode(p, raw, (choices or {}).get(p.name))
        except ValueError as exc:
            notes.append(f"The link's {p.name}={str(raw)[:40]!r} was not used: {exc}.")
    return values, notes


def write(state: Mapping[str, Any], spec: Iterable[Param]) -> dict[str, str]:
    """The query parameters of the widget values in `state` that differ from their defaults."""
    out = {}
    for p in spec:
        if p.key not in state:
            continue
        value = state[p.key]
        default = list(p.default) if p.kind in ("list", "ints") else p.default
        if (list(value) if p.kind in ("list", "ints") else value) == default:
            continue
        out[p.name] = _encode(p, value)
    return out
