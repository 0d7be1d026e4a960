"""Downloads from a page: whether a downloadable dataset (MNIST, Fashion-MNIST, CIFAR-10) is in the
cache, what the form says while it is not, and the download itself with its progress text.

No streamlit, no torch (docs/architecture.md): `agd_viz.downloads` checks and fetches files
without either, so a page can show the status on every rerun.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from agd_viz import datasets, downloads, fmt

__all__ = ["ENV_ALLOW_DOWNLOADS", "ENV_DATA_URL", "DataStatus", "data_status", "download_base_url",
           "download_dataset", "download_progress", "downloads_allowed"]

# The catalogue's names and titles, as the pages list them.
DOWNLOADABLE = datasets.DOWNLOADABLE
title = datasets.title

ENV_ALLOW_DOWNLOADS = "AGD_VIZ_ALLOW_DOWNLOADS"  # "0": a shared demo server fetches nothing
ENV_DATA_URL = "AGD_VIZ_DATA_URL"  # a mirror laid out like the cache: <url>/<dataset>/<file>


def downloads_allowed() -> bool:
    """Whether the pages may download datasets ($AGD_VIZ_ALLOW_DOWNLOADS, default yes)."""
    return os.environ.get(ENV_ALLOW_DOWNLOADS, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class DataStatus:
    """A downloadable dataset as the form shows it: whether it is in the cache, and its size."""

    name: str
    title: str
    size_bytes: int
    downloaded: bool  # every file in the cache and matching its published checksum
    path: str
    allowed: bool = True  # downloads allowed on this server
    damaged: tuple[str, ...] = ()  # files in the cache that fail their checksum

    @property
    def size_text(self) -> str:
        return fmt.bytes_(self.size_bytes)

    @property
    def button_label(self) -> str:
        return f"Download {self.title} {'again ' if self.damaged else ''}({self.size_text})"

    def note(self) -> str:
        """Why Start waits, and what to do (shown next to the dataset control)."""
        if self.damaged and self.allowed:
            one = len(self.damaged) == 1
            return (f"{self.title} on this server is damaged ({', '.join(self.damaged)} no longer "
                    f"match{'es' if one else ''} the published checksum{'' if one else 's'}). "
                    f"Press “{self.button_label}” below: the damaged files are deleted and fetched again.")
        if self.damaged:
            return (f"{self.title} on this server is damaged, and downloads from the page are turned off "
                    f"here ({ENV_ALLOW_DOWNLOADS}=0). Whoever runs the server can fetch it again with "
                    f"`{downloads.download_command(self.name)}`.")
        if self.allowed:
            return (f"{self.title} is not downloaded yet. Press “{self.button_label}” below: it is fetched "
                    "once from its publisher, checked against the published checksums and kept on this "
                    "server for later runs.")
        return (f"{self.title} is not downloaded on this server, and downloads from the page are turned "
                f"off here ({ENV_ALLOW_DOWNLOADS}=0). Whoever runs the server can fetch it with "
                f"`{downloads.download_command(self.name)}`.")


def data_status(name: Any) -> DataStatus | None:
    """The download status of a downloadable dataset; None for the built-in ones."""
    if name not in datasets.DOWNLOADABLE:
        return None
    source = downloads.SOURCES[name]
    damaged = tuple(downloads.damaged_files(name))
    return DataStatus(name, source.title, int(source.size), downloads.is_downloaded(name) and not damaged,
                      str(downloads.dataset_dir(name)), downloads_allowed(), damaged)


def download_base_url(name: str) -> str | None:
    """Where to fetch `name` from: $AGD_VIZ_DATA_URL/<name> when set (a local mirror, e.g. a
    workshop room without internet), else None (the publishers' mirrors)."""
    base = os.environ.get(ENV_DATA_URL, "").strip()
    return f"{base.rstrip('/')}/{name}" if base else None


_DOWNLOAD_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def download_dataset(name: str, progress=None) -> tuple[bool, str]:
    """Fetch a downloadable dataset into the cache with agd_viz.downloads (checksums checked,
    files moved into place only when intact). Returns (True, its folder) or (False, why not: the
    library's message, which names the file and every URL tried). One download per dataset at a
    time in this process: a second session waits, then finds the files there.
    `progress(done_bytes, total_bytes, message)` as in `downloads.download`."""
    if name not in datasets.DOWNLOADABLE:
        return False, f"{name!r} is not a downloadable data set."
    if not downloads_allowed():
        return False, f"downloads are turned off on this server ({ENV_ALLOW_DOWNLOADS}=0)."
    with _LOCKS_GUARD:
        lock = _DOWNLOAD_LOCKS.setdefault(name, threading.Lock())
    with lock:
        try:
            for damaged in downloads.damaged_files(name):  # fetched again below, never trusted
                (downloads.dataset_dir(name) / damaged).unlink(missing_ok=True)
            path = downloads.download(name, progress=progress, base_url=download_base_url(name))
        except (downloads.DownloadError, OSError, ValueError) as exc:
            return False, fmt.hide_paths(exc)  # every attendee sees it: no server folder
    return True, str(path)


def download_progress(done: int, total: int, message: str) -> tuple[float, str]:
    """A progress bar's fraction and text: "MNIST: t10k-images… (3/4) · 1.2 MB of 12 MB"."""
    fraction = min(max(done / total, 0.0), 1.0) if total else 0.0
    return fraction, f"{message} · {fmt.bytes_(done)} of {fmt.bytes_(total)}"
