"""What the judges that prompt a chat model share (``rubric``, ``gpt4-rubric``,
``strongreject``).

:class:`ChatJudge` renders one prompt per (instruction, response) from a template with
``{instruction}`` and ``{response}`` placeholders, sends it as a single user message to
``/chat/completions`` of any OpenAI-compatible endpoint, and keeps the completion text
(and its ``finish_reason``) as the answer. A subclass names its default prompt and turns
the text into a verdict (:meth:`ChatJudge.to_verdict`); retries, concurrency, the answer
cache and ``on_error`` are those of :mod:`aligndepth.judges.api`.

Settings, each an option or an environment variable (one set for all chat judges):

- ``base_url`` / ``ALIGNDEPTH_JUDGE_BASE_URL`` (required), e.g. ``https://api.openai.com/v1``
- ``model`` / ``ALIGNDEPTH_JUDGE_MODEL`` (required), e.g. ``gpt-4o``
- ``api_key`` / ``ALIGNDEPTH_JUDGE_API_KEY``, then ``OPENAI_API_KEY`` (required; any
  non-empty string for a server without keys)

``temperature`` (default 0) and ``max_tokens`` are sent with each request; ``None``
omits them (some reasoning models refuse both).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from aligndepth.errors import AlignDepthError
from aligndepth.judges.api import ApiJudge, MalformedAnswer, from_env

BASE_URL_ENV = "ALIGNDEPTH_JUDGE_BASE_URL"
MODEL_ENV = "ALIGNDEPTH_JUDGE_MODEL"
KEY_ENVS = ("ALIGNDEPTH_JUDGE_API_KEY", "OPENAI_API_KEY")



def resolve_endpoint(judge: str, base_url: str | None, model: str | None) -> tuple[str, str]:
    """``(base_url, model)`` from the options or the environment; raises naming the fix."""
    url = from_env(base_url, (BASE_URL_ENV,))
    if not url:
        raise AlignDepthError(
            f"the '{judge}' judge needs an endpoint: set {BASE_URL_ENV} to an "
            "OpenAI-compatible base URL (e.g. https://api.openai.com/v1), or pass base_url=")
    name = from_env(model, (MODEL_ENV,))
    if not name:
        raise AlignDepthError(f"the '{judge}' judge needs a model: set {MODEL_ENV} "
                              "(e.g. gpt-4o), or pass model=")
    return url, name


def check_prompt(judge: str, template: str,
                 fields: tuple[str, ...] = ("instruction", "response")) -> str:
    """``template`` if it has every ``{field}`` placeholder, else an error naming the
    missing one."""
    for field in fields:
        if "{" + field + "}" not in template:
            raise AlignDepthError(f"the {judge} prompt has no '{{{field}}}' placeholder: add it")
    return template


def fill(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``{name}`` of ``values`` replaced, in one pass (a value that
    itself contains a placeholder is left as it is)."""
    pattern = re.compile(r"\{(" + "|".join(map(re.escape, values)) + r")\}")
    return pattern.sub(lambda m: values[m.group(1)], template)


def shown(text: Any, limit: int = 200) -> str:
    """Judge output on one line, cut to ``limit`` characters (for verdict reasons)."""
    return " ".join(str(text or "").split())[:limit]


class ChatJudge(ApiJudge):
    """Base class: one templated prompt per pair, answered by a chat model.

    Args:
        base_url, model, api_key: the endpoint (options or environment; see the module).
        temperature: sent with each request; ``None`` omits it.
        max_tokens: cap on the judge's answer; ``None`` omits it.
        prompt: a custom template with ``{instruction}`` and ``{response}`` placeholders
            (default: the judge's own, :attr:`default_prompt`).
        **engine: ``timeout``, ``max_retries``, ``backoff_base``, ``backoff_max``,
            ``max_concurrency``, ``cache``, ``cache_dir``, ``on_error``
            (:class:`~aligndepth.judges.api.ApiJudge`).
    """

    name = "chat"
    key_envs = KEY_ENVS
    #: The prompt template used when no ``prompt`` option is given.
    default_prompt = "{instruction}\n{response}"
    #: The placeholders every template of this judge must hold.
    fields: tuple[str, ...] = ("instruction", "response")

    def __init__(self, base_url: str | None = None, model: str | None = None,
                 api_key: str | None = None, *, temperature: float | None = 0.0,
                 max_tokens: int | None = 512, prompt: str | None = None,
                 timeout: float = 60.0, max_retries: int = 6, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, max_concurrency: int = 8, cache: bool = True,
                 cache_dir: str | Path | None = None, on_error: str = "raise") -> None:
        url, name = resolve_endpoint(self.name, base_url, model)
        if max_tokens is not None and int(max_tokens) < 1:
            raise AlignDepthError(f"the {self.name} judge's max_tokens must be at least 1 "
                                  f"(or None to omit it), got {max_tokens}")
        self.prompt = check_prompt(self.name,
                                   prompt if prompt is not None else self.default_prompt,
                                   self.fields)
        self.temperature = temperature
        self.max_tokens = int(max_tokens) if max_tokens is not None else None
        super().__init__(base_url=url, model=name, api_key=api_key, timeout=timeout,
                         max_retries=max_retries, backoff_base=backoff_base,
                         backoff_max=backoff_max, max_concurrency=max_concurrency,
                         cache=cache, cache_dir=cache_dir, on_error=on_error)

    def render(self, instruction: str, response: str) -> str:
        """The judge's prompt for one pair (placeholders filled in one pass)."""
        return fill(self.prompt, {"instruction": instruction, "response": response})

    def answer_identity(self) -> dict[str, Any]:
        return {**super().answer_identity(),
                "prompt_sha256": hashlib.sha256(self.prompt.encode()).hexdigest()[:16],
                "temperature": self.temperature, "max_tokens": self.max_tokens}

    def describe(self) -> dict[str, Any]:
        return {**self.answer_identity(), "custom_prompt": self.prompt != self.default_prompt}

    def request(self, client: Any, instruction: str, response: str) -> Any:
        kwargs: dict[str, Any] = {}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        reply = client.chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": self.render(instruction, response)}],
            **kwargs)
        try:
            choice = reply.choices[0]
            text = choice.message.content
            finish = getattr(choice, "finish_reason", None)
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise MalformedAnswer(f"no choices[0].message in the reply ({type(exc).__name__})"
                                  ) from None
        if text is not None and not isinstance(text, str):
            raise MalformedAnswer("choices[0].message.content is not text")
        return {"text": text, "finish_reason": finish if isinstance(finish, str) else None}

    @staticmethod
    def answer_text(answer: Any) -> tuple[str | None, str | None]:
        """``(text, finish_reason)`` of a (possibly cached) answer; ``None`` where absent."""
        if not isinstance(answer, dict):
            return None, None
        text, finish = answer.get("text"), answer.get("finish_reason")
        return (text if isinstance(text, str) else None,
                finish if isinstance(finish, str) else None)

    @staticmethod
    def why_unreadable(what: str, text: str | None, finish: str | None) -> str:
        """An unparseable verdict's reason: what was missing, the finish reason, the text."""
        why = what
        if finish and finish != "stop":
            why += f" (finish_reason {finish})"
        return f"{why}: {shown(text)!r}"
