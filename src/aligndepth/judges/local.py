"""What the judges that run a local classifier model share (``llamaguard``,
``harmbench-cls``).

:class:`LocalJudge` loads a causal LM through :func:`aligndepth.models.load_model` (safe
by default: safetensors only, no remote code), encodes each (instruction, response) into
the classifier's prompt ids (:meth:`LocalJudge.encode`, the one thing a subclass must
say, besides :meth:`LocalJudge.parse`), decodes a few tokens greedily in left-padded
batches through :func:`aligndepth.engine.generate`, and parses the decoded answer into a
verdict. Loading options are those of :class:`aligndepth.models.LoadConfig`: ``dtype``,
``device``, ``device_map``, ``allow_pickle``, ``trust_remote_code``, ``revision``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from aligndepth.errors import AlignDepthError
from aligndepth.judges.base import Verdict

log = logging.getLogger(__name__)

_J = TypeVar("_J", bound="LocalJudge")


def classifier_stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """The classifier's stop ids (the engine's one rule), which must not be empty."""
    from aligndepth.engine import model_stop_ids

    ids = model_stop_ids(tokenizer, model)
    if not ids:
        raise AlignDepthError(f"classifier '{getattr(tokenizer, 'name_or_path', '?')}' has "
                              "no EOS token: set eos_token_id in its generation_config.json")
    return sorted(ids)


class LocalJudge:
    """Base class: a verdict from a local classifier's greedy answer.

    Build it with :meth:`from_pretrained` (a path or hub id, as ``make_judge`` does) or
    around an already loaded :class:`~aligndepth.models.LoadedModel`.

    Args:
        loaded: the classifier and its tokenizer.
        batch_size: pairs decoded together.
        max_new_tokens: the most answer tokens (default :attr:`default_max_new_tokens`).
    """

    name = "local"
    #: What ``model=`` should point at, for the missing-model error.
    model_hint = "a classifier checkpoint directory or hub id"
    default_max_new_tokens = 20

    def __init__(self, loaded: Any, batch_size: int = 8,
                 max_new_tokens: int | None = None) -> None:
        from aligndepth.prompts import pad_token_id

        new_tokens = self.default_max_new_tokens if max_new_tokens is None else max_new_tokens
        if int(batch_size) < 1 or int(new_tokens) < 1:
            raise AlignDepthError(f"the {self.name} judge's batch_size and max_new_tokens "
                                  "must be at least 1")
        self.loaded = loaded
        self.batch_size = int(batch_size)
        self.max_new_tokens = int(new_tokens)
        self.pad_id = pad_token_id(loaded.tokenizer)
        self.stop_ids = classifier_stop_ids(loaded.model, loaded.tokenizer)

    @classmethod
    def from_pretrained(cls: type[_J], model: str | Path | None = None, *,
                        batch_size: int = 8, max_new_tokens: int | None = None,
                        dtype: str = "auto", device: str = "auto",
                        device_map: str | None = None, allow_pickle: bool = False,
                        trust_remote_code: bool = False,
                        revision: str | None = None) -> _J:
        """Load the classifier from a local directory or hub id (see the module)."""
        from aligndepth.models import LoadConfig, load_model

        if not model:
            raise AlignDepthError(f"the '{cls.name}' judge needs a classifier: pass "
                                  f"model=PATH ({cls.model_hint})")
        config = LoadConfig(dtype=dtype, device=device, device_map=device_map,
                            trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
                            revision=revision)
        loaded = load_model(model, config)
        log.info("%s judge: loaded classifier %s", cls.name, loaded.source)
        return cls(loaded, batch_size=batch_size, max_new_tokens=max_new_tokens)

    # -- what a subclass provides ----------------------------------------------------
    def encode(self, instruction: str, response: str) -> list[int]:
        """The classifier's prompt ids for one pair."""
        raise NotImplementedError

    def parse(self, text: str) -> Verdict:
        """A verdict from the classifier's decoded answer; never raises on odd answers."""
        raise NotImplementedError

    # -- the engine ------------------------------------------------------------------
    def classify(self, instructions: Sequence[str], responses: Sequence[str]) -> list[str]:
        """The classifier's raw answers (decoded, special tokens dropped, stripped)."""
        from aligndepth.engine import GREEDY, generate

        if len(instructions) != len(responses):
            raise ValueError("instructions and responses differ in length")
        if not instructions:
            return []
        tok = self.loaded.tokenizer
        prompts = [self.encode(i, r) for i, r in zip(instructions, responses)]
        outs = generate(self.loaded.model, prompts, GREEDY, max_new_tokens=self.max_new_tokens,
                        stop=self.stop_ids, pad_id=self.pad_id, batch_size=self.batch_size)
        return [str(tok.decode(c.ids, skip_special_tokens=True)).strip() for c in outs]

    def judge(self, instructions: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
        return [self.parse(t) for t in self.classify(instructions, responses)]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.loaded.describe(),
                "max_new_tokens": self.max_new_tokens}
