"""What every experiment shares: the models, the judge, and decoding helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aligndepth.engine import (
    Completion,
    SamplingParams,
    StopRule,
    generate,
    generate_shared,
    model_stop_ids,
)
from aligndepth.judges.base import Judge, Verdict
from aligndepth.models import LoadedModel, ModelPair
from aligndepth.prompts import PromptFormat, pad_token_id, verbatim
from aligndepth.run_settings import RunSettings as RunSettings  # re-exported

#: New tokens per response on a real pair (the papers judge answers of up to 512 tokens).
REAL_MAX_NEW_TOKENS = 512
#: New tokens per response on the organism (its answers are short).
ORGANISM_MAX_NEW_TOKENS = 64


@dataclass
class Setup:
    """Models, judge and shared settings for a set of experiments.

    ``organism`` is the organism directory when running on the organism (it supplies the
    default data and the exact judge), else ``None``. ``stop_strings`` are added to every
    model's own stop rule (``--stop``).
    """

    pair: ModelPair
    judge: Judge
    organism: Path | None = None
    seed: int = 0
    batch_size: int = 32
    max_new_tokens: int = ORGANISM_MAX_NEW_TOKENS
    show_progress: bool = True
    stop_strings: tuple[str, ...] = ()
    #: ED's default (malicious, benign) system prompts; ``None``: the built-in ones
    ed_systems: tuple[str, str] | None = None
    #: the base model named (or the organism's) but not loaded: no experiment reads it
    unloaded_base: str | None = None

    def stop_rule(self, model: LoadedModel, fmt: PromptFormat) -> StopRule:
        """How ``model`` in ``fmt`` stops: its own stop ids, the format's default stop
        strings and the user's."""
        return stop_rule(model, fmt, self.stop_strings)

    def role(self, target: str) -> tuple[LoadedModel, PromptFormat]:
        """The model and prompt format of ``aligned`` or ``base`` (the base only when
        loaded: see :attr:`ModelPair.roles`)."""
        if target == "aligned":
            return self.pair.aligned, self.pair.aligned_format
        return self.pair.base, self.pair.base_format


def stop_rule(model: LoadedModel, fmt: PromptFormat, extra: Sequence[str] = ()) -> StopRule:
    """One model's stop ids (tokenizer EOS, generation config, chat template turn ends)
    with the format's default stop strings and ``extra``."""
    ids = frozenset(model_stop_ids(model.tokenizer, model.model))
    return StopRule(ids, tuple(dict.fromkeys((*fmt.stop_strings, *extra))))


def complete(setup: Setup, model: LoadedModel, fmt: PromptFormat,
             prompts: Sequence[Sequence[int]],
             params: SamplingParams | Sequence[SamplingParams], seeds: Sequence[int]
             ) -> list[Completion]:
    """Decode continuations of tokenised prompts, one seed per prompt (derive it from the
    record key, so outputs do not depend on batching)."""
    return generate_rows(model, prompts, params, seeds, max_new_tokens=setup.max_new_tokens,
                         stop=setup.stop_rule(model, fmt), batch_size=setup.batch_size)


def generate_rows(model: LoadedModel, prompts: Sequence[Sequence[int]],
                  params: SamplingParams | Sequence[SamplingParams], seeds: Sequence[int], *,
                  max_new_tokens: int, stop: StopRule, batch_size: int,
                  shared_prompt: bool = False) -> list[Completion]:
    """One completion per prompt, on the model's engine: the local decode loop, or the
    server it is served on (:mod:`aligndepth.engine.served`). ``shared_prompt``: every
    prompt is the same (the local engine then encodes it once)."""
    plist = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
    if model.served is not None:
        return list(model.served.complete(prompts, plist, seeds, max_new_tokens, stop))
    tok = model.tokenizer
    if shared_prompt:
        return generate_shared(model.model, prompts[0], plist, max_new_tokens=max_new_tokens,
                               stop=stop, pad_id=pad_token_id(tok), seeds=seeds,
                               batch_size=max(batch_size, len(plist)), tokenizer=tok)
    return generate(model.model, prompts, plist, max_new_tokens=max_new_tokens, stop=stop,
                    pad_id=pad_token_id(tok), seeds=seeds, batch_size=batch_size,
                    tokenizer=tok)



def prefixed_prompt(model: LoadedModel, fmt: PromptFormat, instruction: str, prefix: str
                    ) -> tuple[list[int], list[int]]:
    """Prompt ids continuing ``prefix`` in the response, and the ids of the prefix itself
    (empty when the template does not keep the prompt as a prefix of itself)."""
    ids = fmt.encode(model.tokenizer, instruction, prefix)
    if not prefix:
        return ids, []
    bare = fmt.encode(model.tokenizer, instruction)
    if ids[: len(bare)] == bare:
        return ids, ids[len(bare):]
    return ids, []


def decode(model: LoadedModel, ids: Sequence[int]) -> str:
    """The clean text of generated ids (special tokens dropped): what is judged."""
    return str(model.tokenizer.decode(list(ids), skip_special_tokens=True))


def decode_raw(model: LoadedModel, ids: Sequence[int]) -> str:
    """Generated ids with their special tokens (records' ``output_raw``): shows what
    :func:`decode` drops, such as the markers of a turn the model opened itself."""
    return verbatim(model.tokenizer, ids)


def judged(setup: Setup, instructions: Sequence[str], texts: Sequence[str]) -> list[Verdict]:
    return setup.judge.judge(instructions, texts)


def provenance(setup: Setup, instruction: str) -> dict[str, Any]:
    """What each model really sees and how it stops, for the run manifest: the prompt of
    ``instruction`` as fed (default system prompts and the BOS the tokenizer adds
    included), stop ids and strings."""
    out: dict[str, Any] = {}
    for role in setup.pair.roles:
        model, fmt = setup.role(role)
        rule = setup.stop_rule(model, fmt)
        out[role] = {"first_prompt": fmt.fed(model.tokenizer, instruction),
                     "stop_ids": sorted(rule.ids), "stop_strings": list(rule.strings),
                     "stop_tokens": [model.tokenizer.convert_ids_to_tokens(i)
                                     for i in sorted(rule.ids)]}
    return out
