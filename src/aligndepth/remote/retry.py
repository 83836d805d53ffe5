"""Retrying a flaky call with exponential backoff and jitter.

Generic on purpose: the caller says which exceptions are worth another try (rate limits,
server errors, timeouts, dropped connections, malformed bodies) and may suggest a wait
(a ``Retry-After`` header). Everything else propagates at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from aligndepth.errors import AlignDepthError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Args:
        max_retries: retries after the first attempt (0: try once).
        backoff_base: wait before the first retry, in seconds; doubles each retry.
        backoff_max: cap on any single wait, in seconds.
        jitter: each wait is scaled by a uniform factor in ``[1 - jitter, 1]``, so
            threads that failed together do not retry together.
    """

    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise AlignDepthError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise AlignDepthError("backoff_base and backoff_max must be >= 0 seconds")
        if not 0 <= self.jitter <= 1:
            raise AlignDepthError(f"jitter must be in [0, 1], got {self.jitter}")

    def delay(self, retry: int, suggested: float | None = None,
              rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        base = min(self.backoff_max, self.backoff_base * (2 ** retry))
        if suggested is not None and suggested > base:
            base = min(self.backoff_max, suggested)
        draw = (rng or random).random()
        return base * (1 - self.jitter * draw)


class RetriesExhausted(Exception):
    """Every attempt failed with a retryable error; ``last`` is the final one."""

    def __init__(self, attempts: int, last: BaseException) -> None:
        super().__init__(f"{attempts} attempt(s) failed; last: {type(last).__name__}")
        self.attempts = attempts
        self.last = last


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy,
                      retryable: Callable[[BaseException], bool],
                      suggested_wait: Callable[[BaseException], float | None] = lambda e: None,
                      describe: Callable[[BaseException], str] = lambda e: type(e).__name__,
                      sleep: Callable[[float], object] = time.sleep,
                      what: str = "request") -> T:
    """Call ``fn`` until it succeeds, retrying errors for which ``retryable`` is true.

    Raises:
        RetriesExhausted: ``policy.max_retries`` retries all failed retryably.
        Exception: the first non-retryable error, unchanged.
    """
    for retry in range(policy.max_retries + 1):
        try:
            return fn()
        except Exception as exc:
            if not retryable(exc):
                raise
            if retry == policy.max_retries:
                raise RetriesExhausted(retry + 1, exc) from exc
            wait = policy.delay(retry, suggested_wait(exc))
            log.debug("%s failed (%s); retry %d of %d in %.2fs", what, describe(exc),
                      retry + 1, policy.max_retries, wait)
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
