"""Where aligndepth keeps what it builds and caches."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that moves every cache (organisms, judge and engine answers).
CACHE_ENV = "ALIGNDEPTH_CACHE"


def cache_root() -> Path:
    """``$ALIGNDEPTH_CACHE`` or the platform user cache directory for aligndepth."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("aligndepth"))
