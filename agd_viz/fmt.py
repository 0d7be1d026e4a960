"""How numbers, durations, sizes and user text are written, everywhere in the app and the CLI.

No imports beyond the standard library: every layer may use it (docs/architecture.md).
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable

__all__ = ["duration", "estimate", "bytes_", "count", "number", "percent", "plural", "sizes",
           "md_escape", "sentence", "truth", "split_list", "parse_id", "hide_paths"]


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def duration(seconds: float | None) -> str:
    """"45 s", "3 min 05 s", "2 h 07 min"; "–" for a missing or negative value."""
    s = _finite(seconds)
    if s is None or s < 0:
        return "–"
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def estimate(seconds: float | None) -> str:
    """A duration that is an estimate: never "0 s"."""
    s = _finite(seconds)
    if s is not None and 0 <= s < 1:
        s = 1.0
    return duration(s)


def bytes_(n: float) -> str:
    """'7.9 GB', '310 MB', '12 kB' (decimal units, as people read a budget)."""
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.0f} MB"
    return f"{max(n, 0) / 1e3:.0f} kB"


def count(n: float) -> str:
    """'31 M', '1.2 M', '850 k', '96'."""
    if n >= 1e9:
        return f"{n / 1e9:.3g} G"
    if n >= 1e6:
        return f"{n / 1e6:.3g} M"
    if n >= 1e4:
        return f"{n / 1e3:.3g} k"
    return f"{int(n):,}"


def number(v: Any, digits: int = 3) -> str:
    """Short enough for a metric tile: 3 significant digits, and 2 with a bare exponent for very
    small or large values (η late in training goes below 1e-3): "0.344", "1.52", "7.7e-4"; "–"
    for a missing value."""
    f = _finite(v)
    if f is None:
        return "–"
    if f != 0 and (abs(f) < 1e-3 or abs(f) >= 1e5):
        mantissa, exp = f"{f:.1e}".split("e")
        return f"{mantissa}e{int(exp)}"
    return f"{f:.{digits}g}"


def percent(v: Any, digits: int = 1) -> str:
    """0.527 -> "52.7 %"; "–" for a missing value."""
    f = _finite(v)
    return "–" if f is None else f"{100 * f:.{digits}f} %"


def plural(n: int, word: str, many: str | None = None) -> str:
    """"1 run", "3 runs" ("1 run trains", …: the caller adds the verb)."""
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


def sizes(values: Iterable[int]) -> str:
    """(2, 4, 8) -> "2, 4, 8"."""
    return ", ".join(str(int(v)) for v in values)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md_escape(text: Any) -> str:
    """Text shown through Markdown (st.error, st.caption, a table cell) literally: a run's name or
    a worker's error never turns into a link, emphasis, code or an emoji shortcode."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


_LIST_SEP = re.compile(r"[,;\s]+")


def split_list(text: Any) -> list[str]:
    """The items of a typed list of numbers ("2, 4 8;16" -> ["2", "4", "8", "16"]): commas,
    semicolons or spaces between items, empty items dropped."""
    return [t for t in _LIST_SEP.split(str(text).strip()) if t]


TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def truth(text: Any) -> bool | None:
    """How a yes/no typed in a link, a spec or a form reads: True, False, or None for neither."""
    low = str(text).strip().lower()
    return True if low in TRUE_WORDS else False if low in FALSE_WORDS else None


def sentence(text: Any) -> str:
    """The text with its first letter in upper case."""
    text = str(text)
    return text[:1].upper() + text[1:]


MAX_ID_DIGITS = 18  # every id below 10**18 fits SQLite's 64-bit integers


def parse_id(text: Any) -> int | None:
    """A run or group number typed in a link or a form ("12"), or None: ASCII digits only, at most
    MAX_ID_DIGITS of them, above 0. (`str.isdigit` accepts "²" and "①", which `int` refuses, and
    `int` refuses more than 4,300 digits; SQLite holds no id past 2**63.)"""
    t = str(text).strip()
    if not t or len(t) > MAX_ID_DIGITS or not (t.isascii() and t.isdigit()):
        return None
    return int(t) or None


# An absolute path: a "/" that starts a word (not the "//" of a URL nor a "/" inside a word or a
# URL's path), then at least two segments.
_PATH = re.compile(r"(?<![\w:/.~-])(?:/[^\s/'\"`;,()\[\]]+){2,}/?")


def hide_paths(text: Any) -> str:
    """The text with each absolute file path replaced by its last part ("/srv/agd/runs.db.logs/
    run-3.log" -> "run-3.log"): what a worker or the store says reaches every attendee's page,
    and the server's folders are none of their business (the server log keeps the full text)."""
    return _PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], str(text))
