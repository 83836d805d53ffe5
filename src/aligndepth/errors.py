"""The one exception type for user mistakes.

Anything the user can fix (a missing file, a bad flag, a malformed dataset line) raises
:class:`AlignDepthError` with a one-line message that names the problem and the fix.
The CLI prints it without a traceback and exits with code 2. Every other exception is a
bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AlignDepthError(Exception):
    """A user-facing error: bad input, missing files, incompatible models."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return a ``" (did you mean 'x'?)"`` suffix for the closest choice, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
