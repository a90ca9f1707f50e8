"""Switches whoever runs the server sets in the environment, never a visitor in the page."""

from __future__ import annotations

import os

# Loading a model whose Lambda layers carry serialised Python runs that code on the
# server. Only the person who starts the server may allow it, for files they trust.
TRUST_MODEL_CODE_ENV = "ATTRIBUTION_DASHBOARD_TRUST_MODEL_CODE"
# On a public host a visitor must not read the server's files by typing a path.
SERVER_PATHS_ENV = "ATTRIBUTION_DASHBOARD_SERVER_PATHS"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return default


def trust_model_code() -> bool:
    """Off unless ``ATTRIBUTION_DASHBOARD_TRUST_MODEL_CODE=1``: Keras safe mode stays on."""
    return _flag(TRUST_MODEL_CODE_ENV, False)


def server_paths_allowed() -> bool:
    """On unless ``ATTRIBUTION_DASHBOARD_SERVER_PATHS=0``: models and folders may be given by server path."""
    return _flag(SERVER_PATHS_ENV, True)
