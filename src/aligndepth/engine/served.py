"""A model behind an OpenAI-compatible completions endpoint (vLLM, SGLang, llama.cpp, TGI).

The experiments that need only sampled text (refusal prefix, prefill, decoding, the
audit's harmful rates, ``evaluate``) can run on a serving engine instead of the local
decode loop: ``--engine openai --engine-url URL``. The model's tokenizer and config stay
local (the ``--base``/``--aligned`` directory), so prompts are rendered and encoded here.

- **Prompts as token ids** (vLLM and SGLang accept a list of ids as ``prompt``), so the
  rendered template and a prefilled prefix are token for token those of the local
  engine. ``prompt_as="text"`` sends the text instead, for servers that take text only
  (llama.cpp's server).
- **One request per row**: ``n = 1`` and the row's own ``seed`` (derived from the run
  seed and the record key, as locally), with the row's temperature, ``top_p`` and
  ``top_k`` (``-1`` or ``0`` for none, as the server wants: vLLM and SGLang take -1,
  llama.cpp 0), ``max_tokens``, the stop strings and the stop token ids.
- **The same stops as locally**: the server's token ids (``choices[i].token_ids`` with
  ``return_token_ids``; vLLM's ``logprobs.tokens`` as ``token_id:N``; else the text
  re-encoded) are cut by the local stop rule, so a served row ends where a local row
  would and says why (``eos``, ``stop_string``, ``length``).
- **Checks**: the server must be reachable (a bounded wait, then a one-line error) and
  serve the model asked for (``/v1/models``). Every answer must be one choice for the
  prompt sent: its ``usage.prompt_tokens`` equal to the token count sent (a server that
  cut or replaced the prompt answered another question); else it is retried like a
  malformed body, and once retries are spent the run stops with a one-line error naming
  the server and what was wrong. Such an answer is never cached nor recorded. A server
  that reports no usage is trusted, and the log says so once. Every answer's text must be
  what the local tokenizer makes of its token ids, else the server's tokenizer differs
  and the run stops with a one-line error.
- **Retries, concurrency and an answer cache** as for the API judges
  (:mod:`aligndepth.remote`). A served name says nothing about the weights behind it, and
  vLLM, SGLang and llama.cpp report nothing that does (their ``/v1/models`` ``created`` is
  the time of the listing), so answers are kept across runs only under an identity the
  user gives (``revision``: a checkpoint hash, a tag); without one they are reused within
  the process only. The run directory resumes as with the local engine either way: what
  a run has recorded is never requested again.

The key comes from the environment only: ``ALIGNDEPTH_ENGINE_API_KEY``, else
``OPENAI_API_KEY``, else ``EMPTY`` (what vLLM expects when it runs without keys).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aligndepth.engine.stopping import EOS, LENGTH, STOP_STRING, Completion, StopRule, StopStrings
from aligndepth.errors import AlignDepthError
from aligndepth.remote.cache import JsonlCache, default_cache_dir, digest
from aligndepth.remote.endpoint import EndpointClient, MalformedAnswer, from_env, openai_module
from aligndepth.remote.retry import RetriesExhausted
from aligndepth.run_settings import SamplingParams

log = logging.getLogger(__name__)

KEY_ENVS = ("ALIGNDEPTH_ENGINE_API_KEY", "OPENAI_API_KEY")
PROMPT_AS = ("ids", "text")
_TOKEN_ID = re.compile(r"^token_id:(\d+)$")


@dataclass(frozen=True)
class ServedConfig:
    """Where a model is served and how to talk to it.

    Args:
        url: the server's base URL (``http://host:8000/v1``).
        model: the served model's name (default: the server's only model).
        prompt_as: ``ids`` (token-id prompts: vLLM, SGLang) or ``text``.
        no_top_k: the ``top_k`` value that means "no top-k" on this server (default: -1
            for vLLM and SGLang, 0 for others, from ``/v1/models``'s ``owned_by``).
        max_concurrency: requests in flight at once.
        timeout: seconds before one request counts as timed out.
        connect_timeout: seconds to wait for the server to answer ``/v1/models``.
        max_retries, backoff_base, backoff_max: the retry policy.
        cache: reuse answers to identical requests (within the process; across runs
            only with ``revision``).
        cache_dir: another directory for the answer cache (default
            ``$ALIGNDEPTH_CACHE/engines``).
        revision: what identifies the served weights (a checkpoint hash or tag; change it
            when the weights change): answers are kept on disk under it and reused by later
            runs that give the same revision; without it nothing is kept across runs.
    """

    url: str
    model: str | None = None
    prompt_as: str = "ids"
    no_top_k: int | None = None
    max_concurrency: int = 16
    timeout: float = 600.0
    connect_timeout: float = 10.0
    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    cache: bool = True
    cache_dir: str | None = None
    revision: str | None = None

    def __post_init__(self) -> None:
        if self.revision is not None:  # a numeric --engine-option value is still a name
            object.__setattr__(self, "revision", str(self.revision))
        if self.prompt_as not in PROMPT_AS:
            raise AlignDepthError(f"prompt_as must be one of {', '.join(PROMPT_AS)}, got "
                                  f"'{self.prompt_as}'")

    def connect(self, tokenizer: Any, role: str = "model") -> ServedModel:
        """The served model (checked reachable), with its local tokenizer."""
        return ServedModel(self, tokenizer, role)


def _field(obj: Any, name: str) -> Any:
    """A response field, whether the client parsed it or kept it as an extra."""
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None) or {}
        value = extra.get(name)
    return value


class WrongAnswer(MalformedAnswer):
    """The server answered, but not the request sent: another prompt (its reported prompt
    length is not the one sent) or another number of choices (retried)."""


def answer_problem(answer: dict[str, Any], sent: int) -> str | None:
    """What is wrong with a stored ``answer`` to a prompt of ``sent`` tokens, or ``None``
    (an answer without ``prompt_tokens``: the server reported no usage)."""
    counted = answer.get("prompt_tokens")
    if counted is not None and counted != sent:
        return (f"answered a prompt of {counted} tokens (usage.prompt_tokens) where {sent} "
                "were sent")
    return None


class ServedModel(EndpointClient):
    """One model on an OpenAI-compatible server, with its local tokenizer.

    Args:
        config: where and how (:class:`ServedConfig`).
        tokenizer: the model's tokenizer (local; renders and encodes prompts, decodes).
        role: how errors name this model ("base", "aligned", "model").
    """

    def __init__(self, config: ServedConfig, tokenizer: Any, role: str = "model") -> None:
        named = "the model's engine" if role == "model" else f"the {role} model's engine"
        super().__init__(named, config.url,
                         from_env(None, KEY_ENVS) or "EMPTY", timeout=config.timeout,
                         max_retries=config.max_retries, backoff_base=config.backoff_base,
                         backoff_max=config.backoff_max,
                         max_concurrency=config.max_concurrency)
        self.config = config
        self.role = role
        self.tokenizer = tokenizer
        self.server_model = self._served_model()
        self.model = str(self.server_model["id"])
        owner = str(self.server_model.get("owned_by", "")).lower()
        self.no_top_k = config.no_top_k if config.no_top_k is not None else (
            -1 if owner in ("vllm", "sglang") else 0)
        self._usage_noted = threading.Event()
        self._cache: JsonlCache | None = None
        if config.cache and config.revision is not None:
            root = Path(config.cache_dir).expanduser() if config.cache_dir \
                else default_cache_dir("engines")
            self._cache = JsonlCache(root / "completions.jsonl")
        elif config.cache:  # no identity of the weights: nothing outlives this process
            log.info("%s: no revision given, so answers are not kept across runs",
                     self.what)
            self._cache = JsonlCache(None)

    # -- the server ------------------------------------------------------------------
    def _served_model(self) -> dict[str, Any]:
        """The served model's ``/v1/models`` entry; a bounded wait, then a clear error."""
        try:
            listing = self._client.with_options(
                timeout=self.config.connect_timeout, max_retries=1).models.list()
        except Exception as exc:
            fatal = self.fatal(exc, "ALIGNDEPTH_ENGINE_API_KEY / OPENAI_API_KEY",
                               self.config.model or "?")
            if fatal is not None:
                raise fatal from None
            raise AlignDepthError(
                f"cannot reach {self.what} at {self.endpoint} within "
                f"{self.config.connect_timeout:g} s ({self._describe_error(exc)}): start the "
                "server, or check --engine-url") from None
        models = [m.model_dump() if hasattr(m, "model_dump") else dict(m)
                  for m in getattr(listing, "data", [])]
        names = [str(m.get("id")) for m in models]
        if self.config.model is None:
            if len(models) != 1:
                raise AlignDepthError(f"{self.endpoint} serves {len(models)} models "
                                      f"({', '.join(names) or 'none'}): name one with "
                                      "--engine-model")
            return models[0]
        if self.config.model not in names:
            raise AlignDepthError(f"{self.endpoint} does not serve '{self.config.model}' "
                                  f"(it serves {', '.join(names) or 'nothing'}): check "
                                  "--engine-model")
        return models[names.index(self.config.model)]

    def describe(self) -> dict[str, Any]:
        """The engine as run manifests record it (never the key)."""
        reported = {k: self.server_model[k] for k in ("id", "owned_by", "root",
                                                      "max_model_len")
                    if self.server_model.get(k) is not None}
        out: dict[str, Any] = {"engine": "openai", "url": self.endpoint, "model": self.model,
                               "prompt_as": self.config.prompt_as,
                               "no_top_k": self.no_top_k, "server_model": reported}
        if self.config.revision is not None:
            out["revision"] = self.config.revision
        return out

    # -- requests --------------------------------------------------------------------
    def body(self, prompt: Sequence[int], params: SamplingParams, seed: int,
             max_new_tokens: int, stop: StopRule) -> dict[str, Any]:
        """The JSON body of one row's completion request."""
        body: dict[str, Any] = {
            "model": self.model, "max_tokens": max_new_tokens, "n": 1,
            "temperature": params.temperature, "top_p": params.top_p,
            "top_k": params.top_k or self.no_top_k, "seed": seed % (1 << 63)}
        if stop.strings:
            body["stop"] = list(stop.strings)
        if self.config.prompt_as == "ids":
            body.update(prompt=list(prompt), stop_token_ids=sorted(stop.ids),
                        return_token_ids=True, skip_special_tokens=True)
        else:
            body["prompt"] = str(self.tokenizer.decode(list(prompt)))
        return body

    def _request(self, body: dict[str, Any], sent: int) -> dict[str, Any]:
        """One row's answer to ``body`` (a prompt of ``sent`` tokens), verified to answer
        it: one choice, the prompt length sent (:class:`WrongAnswer` otherwise)."""
        extra = {k: v for k, v in body.items()
                 if k not in ("model", "prompt", "max_tokens", "n", "temperature", "top_p",
                              "seed", "stop")}
        standard = {k: v for k, v in body.items() if k not in extra}
        reply = self._client.completions.create(**standard, extra_body=extra or None)
        choices = getattr(reply, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise MalformedAnswer("no choices[0] in the reply")
        if len(choices) != 1:
            raise WrongAnswer(f"returned {len(choices)} choices where 1 was asked (n = 1)")
        choice = choices[0]
        text = getattr(choice, "text", None)
        if not isinstance(text, str):
            raise MalformedAnswer("choices[0].text is not text")
        counted = getattr(getattr(reply, "usage", None), "prompt_tokens", None)
        answer = {"text": text, "token_ids": self._token_ids(choice),
                  "finish_reason": getattr(choice, "finish_reason", None),
                  "prompt_tokens": counted if isinstance(counted, int) else None}
        problem = answer_problem(answer, sent)
        if problem is not None:
            raise WrongAnswer(problem)
        self._check_tokenizer(answer)
        if answer["prompt_tokens"] is None and not self._usage_noted.is_set():
            self._usage_noted.set()
            log.warning("%s at %s reports no usage.prompt_tokens, so its answers cannot be "
                        "checked against the prompts sent; they are trusted", self.what,
                        self.endpoint)
        return answer

    @staticmethod
    def _token_ids(choice: Any) -> list[int] | None:
        ids = _field(choice, "token_ids")
        if isinstance(ids, list) and all(isinstance(i, int) for i in ids):
            return ids
        tokens = getattr(getattr(choice, "logprobs", None), "tokens", None) or []
        found = [_TOKEN_ID.match(str(t)) for t in tokens]
        if tokens and all(found):
            return [int(m.group(1)) for m in found if m]
        return None

    def _fetch(self, key: str, item: tuple[dict[str, Any], int],
               stop: threading.Event) -> dict[str, Any]:
        body, sent = item
        try:
            answer = self.with_retries(lambda: self._request(body, sent), stop,
                                       f"completion request to {self.endpoint}")
        except RetriesExhausted as exc:
            if isinstance(exc.last, WrongAnswer):
                raise AlignDepthError(
                    f"{self.what} at {self.endpoint} {exc.last} in all {exc.attempts} "
                    "attempts, so that row was not recorded: check the server (serve the "
                    "model of the local directory, with a context that fits the prompts), "
                    "then rerun the same command to resume") from None
            raise AlignDepthError(
                f"{self.what} at {self.endpoint} failed {exc.attempts} times "
                f"({self._describe_error(exc.last)}): check the server, then rerun the same "
                "command to resume") from None
        except Exception as exc:
            fatal = self.fatal(exc, "ALIGNDEPTH_ENGINE_API_KEY / OPENAI_API_KEY", self.model)
            if fatal is not None:
                raise fatal from None
            if not isinstance(exc, openai_module().OpenAIError):
                raise
            raise AlignDepthError(f"{self.what} at {self.endpoint} refused a request "
                                  f"({self._describe_error(exc)})") from None
        if self._cache is not None:
            self._cache.put(key, answer)
        return answer

    # -- rows ------------------------------------------------------------------------
    def complete(self, prompts: Sequence[Sequence[int]], params: Sequence[SamplingParams],
                 seeds: Sequence[int], max_new_tokens: int, stop: StopRule
                 ) -> list[Completion]:
        """One completion per prompt, cut by ``stop`` exactly as the local engine cuts."""
        bodies = [self.body(p, q, s, max_new_tokens, stop)
                  for p, q, s in zip(prompts, params, seeds, strict=True)]
        identity = {"url": self.endpoint, "model": self.model,
                    "revision": self.config.revision}
        keys = [digest({"engine": identity, "body": b}) for b in bodies]
        answers: dict[str, dict[str, Any]] = {}
        todo: dict[str, tuple[dict[str, Any], int]] = {}
        for key, body, prompt in zip(keys, bodies, prompts):
            cached = self._cache.get(key) if self._cache is not None else None
            if cached is not None and answer_problem(cached, len(prompt)) is None:
                self._check_tokenizer(cached)
                answers[key] = cached
            elif key not in todo:
                todo[key] = (body, len(prompt))
        if todo:
            answers.update(self.run_pool(todo, self._fetch, f"engine-{self.role}"))
        return [self._finish(answers[key], max_new_tokens, stop) for key in keys]

    def _finish(self, answer: dict[str, Any], max_new_tokens: int,
                stop: StopRule) -> Completion:
        ids = answer.get("token_ids")
        if ids is None:
            ids = list(self.tokenizer(answer["text"], add_special_tokens=False).input_ids)
        return cut(list(ids), stop, self.tokenizer, max_new_tokens,
                   stopped=answer.get("finish_reason") == "stop")

    def _check_tokenizer(self, answer: dict[str, Any]) -> None:
        ids = answer.get("token_ids")
        if ids is None or not answer["text"].strip():
            return
        local = "".join(str(self.tokenizer.decode(ids, skip_special_tokens=True)).split())
        if not local.startswith("".join(answer["text"].split())):  # spacing may differ
            raise AlignDepthError(
                f"{self.what} at {self.endpoint} returned text {answer['text'][:40]!r} for "
                f"token ids the local tokenizer reads as {local[:40]!r}: the server's "
                "tokenizer differs; serve the same model as the local directory")


def cut(ids: list[int], stop: StopRule, tokenizer: Any, max_new_tokens: int,
        stopped: bool = False) -> Completion:
    """A row's ids cut by ``stop`` as the local engine cuts them: before the first stop id
    (``eos``), or from the token in which a stop string begins (``stop_string``); else
    ``length``, or ``eos`` when the server stopped (``stopped``) at a stop of its own."""
    strings = StopStrings(tokenizer, stop.strings)
    for i, token in enumerate(ids[:max_new_tokens]):
        if token in stop.ids:
            return Completion(ids[:i], EOS)
        if strings:
            keep = strings.check(ids[:i + 1])
            if keep is not None:
                return Completion(ids[:keep], STOP_STRING)
    ids = ids[:max_new_tokens]
    return Completion(ids, EOS if stopped and len(ids) < max_new_tokens else LENGTH)


def served_config(url: str, model: str | None = None, **options: Any) -> ServedConfig:
    """A :class:`ServedConfig` from an URL, a model name and ``--engine-option`` settings
    (unknown options are a user error naming the known ones)."""
    from aligndepth.errors import did_you_mean

    known = [f for f in asdict(ServedConfig(url="http://x")) if f not in ("url", "model")]
    for name in options:
        if name not in known:
            raise AlignDepthError(f"unknown --engine-option '{name}'"
                                  f"{did_you_mean(name, known)}; known: {', '.join(known)}")
    return ServedConfig(url=url, model=model, **options)
