"""Switches whoever runs the server sets in the environment, never a visitor in the page."""

from __future__ import annotations

import os

# Loading a model whose Lambda layers carry serialised Python runs that code on the
# server. Only the person who starts the server may allow it, for files they trust.
TRUST_MODEL_CODE_ENV = "ATTRIBUTION_DASHBOARD_TRUST_MODEL_CODE"
# On a host a visitor must not read the server's files by typing a path: server paths are
# accepted only inside these folders (os.pathsep-separated); unset means none (see data_roots).
DATA_ROOTS_ENV = "ATTRIBUTION_DASHBOARD_DATA_ROOTS"
# A folder scan reads at most this many entries and this many folder levels below the dataset
# folder, so no path a visitor gives makes one request run unbounded.
SCAN_MAX_ENTRIES_ENV = "ATTRIBUTION_DASHBOARD_SCAN_MAX_ENTRIES"
SCAN_MAX_DEPTH_ENV = "ATTRIBUTION_DASHBOARD_SCAN_MAX_DEPTH"
DEFAULT_SCAN_MAX_ENTRIES = 100_000
DEFAULT_SCAN_MAX_DEPTH = 6
# On a host, the seconds one request (maps, scores, a sanity check, a visualisation, a dataset run) may be
# estimated to take; a request above it is refused in one sentence. Unset: no ceiling, as for one local user.
MAX_REQUEST_SECONDS_ENV = "ATTRIBUTION_DASHBOARD_MAX_REQUEST_SECONDS"
# Python files (os.pathsep-separated) the dashboard imports at start-up, as the CLI's ``--plugin``: they may register
# methods and metrics. Importing a file runs its code on the server, so only whoever starts the server names them.
PLUGINS_ENV = "ATTRIBUTION_DASHBOARD_PLUGINS"

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


def _positive_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip().replace("_", "")
    return int(value) if value.isdigit() and int(value) > 0 else default


def scan_max_entries() -> int:
    """Files and folders one folder scan reads at most (``ATTRIBUTION_DASHBOARD_SCAN_MAX_ENTRIES``, default 100,000)."""
    return _positive_int(SCAN_MAX_ENTRIES_ENV, DEFAULT_SCAN_MAX_ENTRIES)


def scan_max_depth() -> int:
    """Folder levels one scan descends below the dataset folder (``ATTRIBUTION_DASHBOARD_SCAN_MAX_DEPTH``, default 6)."""
    return _positive_int(SCAN_MAX_DEPTH_ENV, DEFAULT_SCAN_MAX_DEPTH)


def max_request_seconds() -> float | None:
    """The most seconds one request may be estimated to take (``ATTRIBUTION_DASHBOARD_MAX_REQUEST_SECONDS``), or
    None for no ceiling (unset, empty, or not a number above 0)."""
    try:
        value = float(os.environ.get(MAX_REQUEST_SECONDS_ENV, "").strip().replace("_", ""))
    except ValueError:
        return None
    return value if value > 0 and value != float("inf") else None


def plugin_paths() -> list[str]:
    """The plugin files ``ATTRIBUTION_DASHBOARD_PLUGINS`` names, in order (empty entries left out)."""
    return [path.strip() for path in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if path.strip()]
