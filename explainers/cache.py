"""Where the engine keeps files it derives (converted models)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

CACHE_ENV = "ATTRIBUTION_DASHBOARD_CACHE"


def cache_dir() -> Path:
    """The per-user cache folder; ``$ATTRIBUTION_DASHBOARD_CACHE`` overrides it."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path(platformdirs.user_cache_dir("attribution-dashboard"))
