"""What every judge behind an OpenAI-compatible HTTP API shares.

:class:`ApiJudge` owns the client, the retry loop, the answer cache and a bounded thread
pool; a subclass (``rubric``, ``moderation``) says only how one (instruction, response)
becomes a request (:meth:`ApiJudge.request`, returning a JSON-able *answer*) and how an
answer becomes a :class:`Verdict` (:meth:`ApiJudge.to_verdict`).

Behaviour, in order, for a batch:

1. Every pair gets a cache key (sha256 of the judge's answer identity, the instruction
   and the response; see :mod:`aligndepth.remote.cache`). Cached answers cost nothing;
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
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError
from aligndepth.judges.base import Verdict
from aligndepth.remote.cache import JsonlCache, cache_key, default_cache_dir
from aligndepth.remote.endpoint import (
    EndpointClient,
    MalformedAnswer,
    from_env,
    openai_module,
    public_url,
)
from aligndepth.remote.retry import RetriesExhausted

__all__ = ["FAILED_PREFIX", "ON_ERROR", "ApiJudge", "MalformedAnswer", "from_env",
           "public_url"]

log = logging.getLogger(__name__)

ON_ERROR = ("raise", "record")
#: Failure reasons start with this, so records show which verdicts are gaps.
FAILED_PREFIX = "judge request failed: "


class ApiJudge(EndpointClient):
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
        key = from_env(api_key, self.key_envs)
        if not key:
            raise AlignDepthError(
                f"the '{self.name}' judge needs an API key: set "
                f"{' or '.join(self.key_envs)} (any non-empty string for a server without "
                "keys), or pass api_key=")
        super().__init__(f"the {self.name} judge", base_url, key, timeout=timeout,
                         max_retries=max_retries, backoff_base=backoff_base,
                         backoff_max=backoff_max, max_concurrency=max_concurrency)
        self.model = model
        self.on_error = on_error
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

    def _fetch(self, key: str, pair: tuple[str, str],
               stop: threading.Event) -> tuple[bool, Any]:
        """(True, answer) or (False, failure reason); raises on fatal errors.

        Once ``stop`` is set (the batch is being abandoned) no new attempt starts.
        """
        instruction, response = pair
        try:
            answer = self.with_retries(
                lambda: self.request(self._client, instruction, response), stop,
                f"{self.name} request to {self.endpoint}")
        except RetriesExhausted as exc:
            reason = (f"{exc.attempts} attempts to {self.endpoint} failed; last: "
                      f"{self._describe_error(exc.last)}")
            return self._failed(reason)
        except Exception as exc:
            fatal = self.fatal(exc, f"{' / '.join(self.key_envs)} or the api_key option",
                               self.model)
            if fatal is not None:
                raise fatal from None
            if not isinstance(exc, openai_module().OpenAIError):
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
            answers.update(self.run_pool(todo, self._fetch, f"judge-{self.name}"))
        return [self.to_verdict(answers[k][1]) if answers[k][0]
                else Verdict("error", FAILED_PREFIX + str(answers[k][1]))
                for k in keys]
