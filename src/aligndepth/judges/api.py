"""What every judge behind an OpenAI-compatible HTTP API shares.

:class:`ApiJudge` owns the client, the retry loop, the answer cache and a bounded thread
pool; a subclass (``rubric``, ``moderation``) says only how one (instruction, response)
becomes a request (:meth:`ApiJudge.request`, returning a JSON-able *answer*) and how an
answer becomes a :class:`Verdict` (:meth:`ApiJudge.to_verdict`).

Behaviour, in order, for a batch:

1. Every pair gets a cache key (sha256 of the judge's answer identity, the instruction
   and the response; see :mod:`aligndepth.judges.cache`). Cached answers cost nothing;
   duplicate pairs in a batch are requested once.
2. The rest run in a pool of ``max_concurrency`` threads. The ``openai`` client is built
   with ``max_retries=0``; this module retries on its own (HTTP 408/409/429/5xx,
   timeouts, connection errors, bodies that are not the expected JSON), with exponential
   backoff from ``backoff_base`` seconds, capped at ``backoff_max``, with jitter, and at
   most ``max_retries`` retries (a ``Retry-After`` header lengthens a wait).
3. Each answer is written to the cache as soon as it arrives, so an interrupted batch
   keeps what it paid for, unless the judge cannot read it (:meth:`ApiJudge.to_verdict`
   gives ``unparseable``): such an answer becomes ``Verdict("unparseable", ...)`` for this
   run and is not cached, so a rerun asks again. A cached answer that turns out
   unreadable (an older parser, a hand-edited file) counts as not cached and is asked
   again.

Failures. A rejected key (HTTP 401/403) or a wrong URL or model (404) raises
:class:`AlignDepthError` at once. Any other failure (retries exhausted, or another 4xx
such as an over-long input) follows ``on_error``: ``"raise"`` (the default) raises an
:class:`AlignDepthError` naming the endpoint, after the requests already in flight have
finished and been cached, so rerunning the command resumes for free; ``"record"``
records that pair as ``Verdict("error", "judge request failed: ...")``, which is never
cached, so a later run asks again. The default keeps transient outages out of measured
rates; ``"record"`` suits long unattended runs where a few gaps are acceptable (they are
labelled ``error``, apart from the judgements and from ``unparseable`` answers).

The API key comes from the ``api_key`` option or the environment (see each judge). It
is handed to the client and used to scrub error text; it is never part of
:meth:`describe`, the cache key, a record, a log line or an error message.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aligndepth.errors import AlignDepthError
from aligndepth.judges.base import Verdict
from aligndepth.judges.cache import JsonlCache, cache_key, default_cache_dir
from aligndepth.judges.retry import RetriesExhausted, RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

ON_ERROR = ("raise", "record")
#: HTTP statuses worth another try (besides every 5xx).
RETRY_STATUSES = frozenset({408, 409, 429})
#: Failure reasons start with this, so records show which verdicts are gaps.
FAILED_PREFIX = "judge request failed: "


class MalformedAnswer(Exception):
    """The endpoint answered, but not with the body we expected (retried)."""


class _Abandoned(Exception):
    """The batch failed elsewhere; this pair is not attempted again."""


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


def _openai() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise AlignDepthError("API judges need the openai package: pip install "
                              "'aligndepth[api]'") from exc
    return openai


class ApiJudge:
    """Base class: a judge answered by an OpenAI-compatible endpoint.

    Args:
        base_url: the endpoint's base URL (``.../v1``).
        model: the model name sent with each request.
        api_key: the key; ``None`` reads :attr:`key_envs` from the environment.
        timeout: seconds before one request counts as timed out.
        max_retries: retries per pair after the first attempt.
        backoff_base: seconds before the first retry (doubling after that).
        backoff_max: cap on one wait, in seconds.
        max_concurrency: requests in flight at once.
        cache: keep answers in a persistent cache (off: every call pays).
        cache_dir: where the cache lives; default ``$ALIGNDEPTH_CACHE/judges`` or the user
            cache directory's ``judges`` folder.
        on_error: ``"raise"`` or ``"record"`` (see the module docstring).
    """

    name = "api"
    #: Environment variables holding the key, most specific first.
    key_envs: tuple[str, ...] = ("OPENAI_API_KEY",)

    def __init__(self, *, base_url: str, model: str, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 6, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, max_concurrency: int = 8, cache: bool = True,
                 cache_dir: str | Path | None = None, on_error: str = "raise") -> None:
        if on_error not in ON_ERROR:
            hint = " (it was renamed 'record')" if on_error == "unparseable" else ""
            raise AlignDepthError(f"on_error must be one of {', '.join(ON_ERROR)}, "
                                  f"got '{on_error}'{hint}")
        if max_concurrency < 1:
            raise AlignDepthError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if timeout <= 0:
            raise AlignDepthError(f"timeout must be positive seconds, got {timeout}")
        if not urlsplit(base_url).scheme.startswith("http"):
            raise AlignDepthError(f"the {self.name} judge's base URL '{public_url(base_url)}' "
                                  "is not an http(s) URL: give one such as https://host/v1")
        key = from_env(api_key, self.key_envs)
        if not key:
            raise AlignDepthError(
                f"the '{self.name}' judge needs an API key: set "
                f"{' or '.join(self.key_envs)} (any non-empty string for a server without "
                "keys), or pass api_key=")
        self.base_url = base_url.rstrip("/")
        self.endpoint = public_url(base_url)
        self.model = model
        self.timeout = float(timeout)
        self.max_concurrency = int(max_concurrency)
        self.on_error = on_error
        self.policy = RetryPolicy(max_retries=max_retries, backoff_base=backoff_base,
                                  backoff_max=backoff_max)
        self._secret = key
        self._client = _openai().OpenAI(api_key=key, base_url=self.base_url, max_retries=0,
                                        timeout=self.timeout)
        self._cache: JsonlCache | None = None
        if cache:
            root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
            self._cache = JsonlCache(root / f"{self.name}.jsonl")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.endpoint!r}, model={self.model!r})"

    # -- what a subclass provides ----------------------------------------------------
    def answer_identity(self) -> dict[str, Any]:
        """Settings that shape the endpoint's answer (the cache key; never the key)."""
        return {"name": self.name, "endpoint": self.endpoint, "model": self.model}

    def request(self, client: Any, instruction: str, response: str) -> Any:
        """Ask the endpoint about one pair; return a JSON-able answer.

        Raise :class:`MalformedAnswer` when the body is not what was expected.
        """
        raise NotImplementedError

    def to_verdict(self, answer: Any) -> Verdict:
        """Turn a (possibly cached) answer into a verdict; never raises on odd answers."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Identity recorded in run manifests: what shapes the verdicts, never the key."""
        return self.answer_identity()

    def readable(self, answer: Any) -> bool:
        """Whether :meth:`to_verdict` can read ``answer`` (only readable ones are cached)."""
        return self.to_verdict(answer).label != "unparseable"

    # -- the engine ------------------------------------------------------------------
    @property
    def cache_path(self) -> Path | None:
        return self._cache.path if self._cache is not None else None

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
        openai = _openai()
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

    def _fatal(self, exc: BaseException) -> AlignDepthError | None:
        """A configuration error that no retry or skip can fix, else ``None``."""
        status = getattr(exc, "status_code", None)
        envs = " / ".join(self.key_envs)
        if status in (401, 403):
            return AlignDepthError(
                f"the {self.name} judge endpoint {self.endpoint} rejected the API key "
                f"(HTTP {status}): check {envs} or the api_key option")
        if status == 404:
            return AlignDepthError(
                f"the {self.name} judge endpoint {self.endpoint} answered 404 for model "
                f"'{self.model}': check the base URL (it usually ends in /v1) and the model")
        return None

    def _fetch(self, key: str, instruction: str, response: str,
               stop: threading.Event) -> tuple[bool, Any]:
        """(True, answer) or (False, failure reason); raises on fatal errors.

        Once ``stop`` is set (the batch is being abandoned) no new attempt starts.
        """

        def attempt() -> Any:
            if stop.is_set():
                raise _Abandoned
            return self.request(self._client, instruction, response)

        try:
            answer = call_with_retries(
                attempt, self.policy, self._retryable, self._suggested_wait,
                self._describe_error, sleep=stop.wait,
                what=f"{self.name} request to {self.endpoint}")
        except RetriesExhausted as exc:
            reason = (f"{exc.attempts} attempts to {self.endpoint} failed; last: "
                      f"{self._describe_error(exc.last)}")
            return self._failed(reason)
        except Exception as exc:
            fatal = self._fatal(exc)
            if fatal is not None:
                raise fatal from None
            if not isinstance(exc, _openai().OpenAIError):
                raise  # a bug, not the endpoint
            return self._failed(f"{self.endpoint}: {self._describe_error(exc)}")
        if self._cache is not None and self.readable(answer):
            self._cache.put(key, answer)
        return True, answer

    def _failed(self, reason: str) -> tuple[bool, Any]:
        if self.on_error == "raise":
            raise AlignDepthError(
                f"the {self.name} judge could not get an answer ({reason}): check the "
                "endpoint, then rerun to resume (answers so far are cached), or pass "
                "on_error='record' to record such failures") from None
        log.warning("%s judge: %s", self.name, reason)
        return False, reason

    def judge(self, instructions: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
        """One verdict per pair, in order (cached answers first, the rest concurrently)."""
        if len(instructions) != len(responses):
            raise ValueError("instructions and responses differ in length")
        identity = self.answer_identity()
        keys = [cache_key(identity, i, r) for i, r in zip(instructions, responses)]
        answers: dict[str, tuple[bool, Any]] = {}
        todo: dict[str, tuple[str, str]] = {}
        for key, ins, res in zip(keys, instructions, responses):
            cached = self._cache.get(key) if self._cache is not None else None
            if cached is not None and self.readable(cached):
                answers[key] = (True, cached)
            elif key not in todo:
                todo[key] = (ins, res)
        if todo:
            log.info("%s judge: %d request(s) to %s (%d of %d pairs cached)", self.name,
                     len(todo), self.endpoint, len(keys) - sum(k in todo for k in keys),
                     len(keys))
            answers.update(self._run_pool(todo))
        return [self.to_verdict(answers[k][1]) if answers[k][0]
                else Verdict("error", FAILED_PREFIX + str(answers[k][1]))
                for k in keys]

    def _run_pool(self, todo: Mapping[str, tuple[str, str]]) -> dict[str, tuple[bool, Any]]:
        out: dict[str, tuple[bool, Any]] = {}
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(todo)),
                                  thread_name_prefix=f"judge-{self.name}")
        try:
            futures: dict[Future[tuple[bool, Any]], str] = {
                pool.submit(self._fetch, key, ins, res, stop): key
                for key, (ins, res) in todo.items()}
            for fut in as_completed(futures):
                out[futures[fut]] = fut.result()
        except BaseException:
            # Drop what has not started, stop retrying, let requests in flight finish
            # (their answers reach the cache), then propagate.
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return out
