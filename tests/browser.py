"""A headless Chromium for the report tests: Debian's ``chromium`` (or the one named by
``ALIGNDEPTH_CHROMIUM``) driven by Playwright, with every network request refused and
recorded. The tests that need it are skipped, saying why, when either is missing
(``make test`` installs Debian's chromium where it can; Playwright is in the dev extra)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_ENV = "ALIGNDEPTH_CHROMIUM"


def chromium_path() -> str | None:
    """The Chromium executable to drive, or ``None``."""
    named = os.environ.get(CHROMIUM_ENV)
    if named:
        return named if os.access(named, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@contextmanager
def offline_page(viewport: dict[str, int] | None = None) -> Iterator[tuple[Any, list[str]]]:
    """A page in a headless Chromium with the network off: every request that is not for
    a ``file:`` or ``data:`` URL is aborted and its URL appended to the list yielded
    beside the page. Skips the test when Chromium or Playwright is missing."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium found (install Debian's `chromium` package, or set "
                    f"{CHROMIUM_ENV} to a Chromium executable) to drive report.html")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the `playwright` package is not installed (pip install -e '.[dev]') "
                    "to drive report.html in Chromium")
    refused: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(offline=True,
                                          viewport=viewport or {"width": 1280, "height": 900})
            context.route("**/*", guard)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, refused
            assert not errors, f"the page raised: {errors}"
        finally:
            browser.close()
