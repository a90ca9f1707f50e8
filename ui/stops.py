"""Ending a page's run with one sentence: what every page does when the visitor's input cannot be used."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, NoReturn

import streamlit as st

from explainers.errors import InputError

Kind = Literal["error", "warning", "info"]


def stop(message: str, kind: Kind = "error") -> NoReturn:
    """Show ``message`` (an error, a warning or a note) and end this run of the page; the sidebar stays."""
    getattr(st, kind)(message)
    st.stop()
    raise AssertionError("st.stop ends the run")  # never reached; tells the type checker the call does not return


@contextmanager
def stopped_on_input_error(kind: Kind = "error") -> Iterator[None]:
    """Inside the block, bad input (an InputError, already one sentence naming the file and the problem) ends the
    page's run with that sentence; any other error is a fault and propagates."""
    try:
        yield
    except InputError as error:
        stop(str(error), kind)


@contextmanager
def shown_on_input_error() -> Iterator[None]:
    """Inside the block, bad input shows its sentence and ends the block only: for one tab or section, where the
    rest of the page (other tabs, the exports) must still be drawn. Other errors propagate."""
    try:
        yield
    except InputError as error:
        st.error(str(error))
