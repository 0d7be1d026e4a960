"""Widgets shared by the Live and Sweep pages (the logic behind them lives in agd_viz.live).

`download_box`: under a data set control, the Download button of a downloadable data set that is
not in the cache yet. It fetches only on click, in the script thread, with a progress bar fed by
`agd_viz.downloads.download`'s progress callback; then the page reruns, so Start (disabled until
the data is there) and the notes see the new files. The outcome (where the data now is, or the
library's error naming the file and URLs) is shown under the control after the rerun.

`paper_presets`: the sidebar expander of the paper's presets, and after a click the note of the
one loaded (with its "slow on a CPU" warning for presets made for a GPU).
"""

from __future__ import annotations

import streamlit as st

from agd_viz import live


def download_box(status: live.DataStatus | None, key: str, container=None) -> None:
    """Draw, in `container` (default: the main area), the outcome of the last download and, for a
    data set not downloaded yet on a server that allows downloads, its Download button. `key`:
    the button's widget key (also names the session keys of the outcome)."""
    box = container if container is not None else st.container()
    with box:
        done = st.session_state.pop(f"{key}_done", None)
        error = st.session_state.pop(f"{key}_error", None)
        if done:
            st.success(live.md_escape(done), icon=":material/download_done:")
        if error:
            st.error(f"Download failed: {live.md_escape(error)}", icon=":material/cloud_off:")
        if status is None or status.downloaded or not status.allowed:
            return
        if not st.button(status.button_label, key=key, icon=":material/download:", width="stretch",
                         help=f"Fetch {status.title} ({status.size_text}) from its publisher, check it "
                              "against the published checksums and keep it on this server."):
            return
        bar = st.progress(0.0, text=f"Downloading {live.md_escape(status.title)}…")

        def report(done_bytes: int, total_bytes: int, message: str) -> None:
            fraction, text = live.download_progress(done_bytes, total_bytes, message)
            bar.progress(fraction, text=live.md_escape(text))

        ok, text = live.download_dataset(status.name, progress=report)
        if ok:
            st.session_state[f"{key}_done"] = f"{status.title} is downloaded and checked ({text})."
        else:
            st.session_state[f"{key}_error"] = text
        st.rerun()


def paper_presets(presets, note_of, caption: str, key_prefix: str, loaded_key: str, on_click) -> None:
    """In the sidebar: one button per preset (`presets`: key -> preset with title/description;
    `note_of(key)`: its GPU warning or None) calling `on_click(key)`; then, if `loaded_key` names
    the preset just loaded, what it is and its warning."""
    sb = st.sidebar
    with sb.expander(caption[0], icon=":material/menu_book:"):
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
