"""What every client of an OpenAI-compatible endpoint shares.

:class:`EndpointClient` holds the ``openai`` client (built with ``max_retries=0``: this
module retries on its own), the key (handed to the client and used to scrub error text,
never recorded), the retry policy and a bounded thread pool. Subclasses (the API judges,
the served engines) say what one request is and what to do with its answer.

Retried: HTTP 408/409/429/5xx, timeouts, connection errors and bodies that are not the
expected JSON (:class:`MalformedAnswer`), with exponential backoff and jitter (a
``Retry-After`` header lengthens a wait). A rejected key (401/403) or a wrong URL or
model (404) is a configuration error: :meth:`EndpointClient.fatal` names the fix.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from aligndepth.errors import AlignDepthError
from aligndepth.remote.retry import RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

#: HTTP statuses worth another try (besides every 5xx).
RETRY_STATUSES = frozenset({408, 409, 429})
T = TypeVar("T")


class MalformedAnswer(Exception):
    """The endpoint answered, but not with the body we expected (retried)."""


class Abandoned(Exception):
    """The batch failed elsewhere; this item is not attempted again."""


def from_env(value: str | None, names: Sequence[str]) -> str | None:
    """``value`` if given, else the first non-empty environment variable of ``names``."""
    if value:
        return value
    for name in names:
        found = os.environ.get(name, "").strip()
        if found:
            return found
    return None


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment (safe to record and print)."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def openai_module() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise AlignDepthError("OpenAI-compatible endpoints need the openai package: pip "
                              "install 'aligndepth[api]'") from exc
    return openai


class EndpointClient:
    """Base class: a client of one OpenAI-compatible endpoint.

    Args:
        what: how errors name this client (e.g. "the rubric judge").
        base_url: the endpoint's base URL (``.../v1``).
        key: the API key (already resolved from an option or the environment).
        timeout: seconds before one request counts as timed out.
        max_retries: retries per item after the first attempt.
        backoff_base: seconds before the first retry (doubling after that).
        backoff_max: cap on one wait, in seconds.
        max_concurrency: requests in flight at once.
    """

    def __init__(self, what: str, base_url: str, key: str, *, timeout: float = 60.0,
                 max_retries: int = 6, backoff_base: float = 1.0, backoff_max: float = 60.0,
                 max_concurrency: int = 8) -> None:
        if max_concurrency < 1:
            raise AlignDepthError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if timeout <= 0:
            raise AlignDepthError(f"timeout must be positive seconds, got {timeout}")
        if not urlsplit(base_url).scheme.startswith("http"):
            raise AlignDepthError(f"{what}'s base URL '{public_url(base_url)}' is not an "
                                  "http(s) URL: give one such as https://host/v1")
        self.what = what
        self.base_url = base_url.rstrip("/")
        self.endpoint = public_url(base_url)
        self.timeout = float(timeout)
        self.max_concurrency = int(max_concurrency)
        self.policy = RetryPolicy(max_retries=max_retries, backoff_base=backoff_base,
                                  backoff_max=backoff_max)
        self._secret = key
        self._client = openai_module().OpenAI(api_key=key, base_url=self.base_url,
                                              max_retries=0, timeout=self.timeout)

    def scrub(self, text: str) -> str:
        """``text`` with the API key masked, on one line, at most 300 characters."""
        if self._secret:
            text = text.replace(self._secret, "***")
        text = " ".join(text.split())
        return text[:297] + "..." if len(text) > 300 else text

    def _describe_error(self, exc: BaseException) -> str:
        status = getattr(exc, "status_code", None)
        head = type(exc).__name__ + (f" (HTTP {status})" if status is not None else "")
        message = self.scrub(str(exc))
        return f"{head}: {message}" if message else head

    def _retryable(self, exc: BaseException) -> bool:
        openai = openai_module()
        if isinstance(exc, openai.APIStatusError):
            return exc.status_code in RETRY_STATUSES or exc.status_code >= 500
        return isinstance(exc, (openai.APIConnectionError, openai.APIResponseValidationError,
                                MalformedAnswer, ValueError))

    @staticmethod
    def _suggested_wait(exc: BaseException) -> float | None:
        headers: Mapping[str, str] | None = getattr(getattr(exc, "response", None),
                                                    "headers", None)
        if not headers:
            return None
        for header, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
            value = headers.get(header)
            if value is not None:
                try:
                    return max(0.0, float(value) * scale)
                except ValueError:
                    continue
        return None

    def fatal(self, exc: BaseException, key_hint: str, model: str) -> AlignDepthError | None:
        """A configuration error that no retry or skip can fix, else ``None``."""
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            return AlignDepthError(f"{self.what}'s endpoint {self.endpoint} rejected the API "
                                   f"key (HTTP {status}): check {key_hint}")
        if status == 404:
            return AlignDepthError(f"{self.what}'s endpoint {self.endpoint} answered 404 for "
                                   f"model '{model}': check the base URL (it usually ends in "
                                   "/v1) and the model")
        return None

    def with_retries(self, attempt: Callable[[], T], stop: threading.Event, what: str) -> T:
        """``attempt()`` under the retry policy; no new attempt once ``stop`` is set.

        Raises :class:`~aligndepth.remote.retry.RetriesExhausted` when every attempt failed
        with a retryable error; anything else propagates at once.
        """

        def guarded() -> T:
            if stop.is_set():
                raise Abandoned
            return attempt()

        return call_with_retries(guarded, self.policy, self._retryable, self._suggested_wait,
                                 self._describe_error, sleep=stop.wait, what=what)

    def run_pool(self, todo: Mapping[str, Any],
                 fetch: Callable[[str, Any, threading.Event], T], name: str) -> dict[str, T]:
        """``fetch(key, item, stop)`` for every item, ``max_concurrency`` at a time.

        When one raises, what has not started is dropped, retries stop, requests in flight
        finish (so their answers reach any cache), and the error propagates.
        """
        out: dict[str, T] = {}
        if not todo:
            return out
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(todo)),
                                  thread_name_prefix=name)
        try:
            futures: dict[Future[T], str] = {pool.submit(fetch, key, item, stop): key
                                             for key, item in todo.items()}
            for fut in as_completed(futures):
                out[futures[fut]] = fut.result()
        except BaseException:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return out
