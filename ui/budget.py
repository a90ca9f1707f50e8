"""Work a click or a link starts, kept within bounds: an estimate and a button when it is long, the hosted
ceiling, and a stop once nobody waits for the result.

A page that computes asks ``approved`` first: up to ``AUTO_RUN_SECONDS`` the work runs at once, as pages always
did; above, the page shows the estimate and a button and computes nothing until it is pressed; above the
server's ceiling (``ATTRIBUTION_DASHBOARD_MAX_REQUEST_SECONDS``) it refuses in one sentence. Every page runs
inside ``stopped_with_the_run`` (dashboard.py), so the engine ends its work between batches once the visitor
closes the tab.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

import streamlit as st

import explainers as ex
from explainers import estimates
from explainers.runtime import stopping

# Up to this many estimated seconds a request runs at once; above, it waits for a button. The default comparison
# (three methods on two photos with their scores) is estimated at about 7 s on the development machine's 2-core
# CPU; twice that lets it run at once when other work slows the passes the estimate is timed on. A sanity check,
# a fine occlusion or a slow model's maps wait.
AUTO_RUN_SECONDS = 15.0
_APPROVED = "_budget_approved"  # {page: the request its button was last pressed for}


def allowed(seconds: float, what: str) -> bool:
    """False, with the one-sentence refusal shown, when ``what`` (``"The sanity check"``), estimated at ``seconds``,
    is above this server's ceiling on one request; True otherwise."""
    try:
        estimates.check_ceiling(seconds, what)
    except ex.InputError as error:
        st.error(str(error))
        return False
    return True


def approved(page: str, request: Hashable, seconds: float, what: str, button: str = "Compute") -> bool:
    """Whether ``what`` (``"Computing these maps"``), estimated at ``seconds``, may run now; ``request`` names it.

    Above the ceiling: refused in one sentence. Up to ``AUTO_RUN_SECONDS``: at once. Above: the estimate and a
    button (key ``{page}_run_estimated``, labelled ``button`` and the estimate), and True in the run its press
    starts and in later runs of the same ``request`` (a display change while it computes restarts it without
    asking again).
    """
    if not allowed(seconds, what):
        return False
    approvals: dict = st.session_state.setdefault(_APPROVED, {})
    if seconds <= AUTO_RUN_SECONDS or approvals.get(page) == request:
        return True
    slot = st.empty()  # the estimate and its button go once pressed: the page's progress replaces them
    with slot.container():
        st.info(f"{what} would take {estimates.describe(seconds)}, so it waits for you to start it.")
        pressed = st.button(f"{button} ({estimates.describe(seconds)})", key=f"{page}_run_estimated",
                            type="primary")
    if pressed:
        approvals[page] = request
        slot.empty()
    return pressed


def run_stopped() -> Callable[[], bool]:
    """A check, safe from any thread, that turns true once Streamlit asks this script run to stop: the visitor
    closed the tab (the server stops a disconnected session's run), or a newer run of the session replaced this
    one (a click's rerun stops the run under way). Either way nobody will see what it computes.

    Streamlit has no public call for this: the run's script requests (private) hold it, read here only. Whether
    the session is still among the server's active ones (public) answers for a closed tab too, should they change.
    """
    # Streamlit's runtime modules are used here only: this function is the one seam to them.
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequestType

    context = get_script_run_ctx()
    if context is None:  # not in a script run (a thread of its own): nothing to stop with
        return lambda: False
    requests, session = context.script_requests, context.session_id

    def stopped() -> bool:
        if getattr(requests, "_state", None) is ScriptRequestType.STOP:
            return True
        return runtime.exists() and not runtime.get_instance().is_active_session(session)

    return stopped


@contextmanager
def stopped_with_the_run() -> Iterator[None]:
    """Engine work inside ends between batches once this run is asked to stop (``run_stopped``); the run then ends
    as Streamlit ends a stopped run, drawing nothing more (nobody is there to see it)."""
    with stopping.stop_when(run_stopped()):
        try:
            yield
        except stopping.Stopped:
            st.stop()
