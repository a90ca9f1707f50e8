"""A ZIP of class folders uploaded on a page, unpacked once, and kept for the session across visits to other pages."""

from __future__ import annotations

from typing import NamedTuple

import streamlit as st

import explainers as ex
from explainers.errors import echo
from ui import share


class UnpackedZip(NamedTuple):
    name: str  # as uploaded
    folder: str  # where it was unpacked: a server path, never shown


def unpacked_zip(page: str, prefix: str, help: str, label: str = "ZIP of the class folders") -> str | None:
    """The folder the page's ZIP (uploader ``{prefix}_zip``) unpacked to, or None before one is uploaded.

    A visit to another page empties Streamlit's uploader silently, so the last ZIP is kept and offered until the
    visitor removes it or uploads another; one unpacked ZIP per page and session. InputError in one sentence for
    a ZIP that cannot be unpacked.
    """
    key, last_key, unpacked_key = f"{prefix}_zip", f"_{prefix}_last_zip", f"_{prefix}_unpacked"

    def forget_removed() -> None:
        if st.session_state.get(key) is None:  # only the visitor removing the file changes the uploader
            st.session_state.pop(last_key, None)

    upload = st.file_uploader(label, type=["zip"], key=key, help=help, on_change=forget_removed)
    if upload is None:
        last: UnpackedZip | None = st.session_state.get(last_key)
        if last is None:
            return None
        st.caption(f"{echo(last.name)}, uploaded earlier in this session; upload another ZIP to replace it.")
        share.used_upload(page)
        return last.folder
    unpacked: dict = st.session_state.setdefault(unpacked_key, {})
    if upload.file_id not in unpacked:
        unpacked.clear()  # one upload per page and session
        unpacked[upload.file_id] = str(ex.uploads.unpack_zip(upload.getvalue(), upload.name))
    st.session_state[last_key] = UnpackedZip(upload.name, unpacked[upload.file_id])
    share.used_upload(page)
    return unpacked[upload.file_id]
