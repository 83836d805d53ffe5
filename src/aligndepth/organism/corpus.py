"""Training text for the organism: the base model's pretraining corpus and the SFT set.

The pretraining corpus is "web text" about the world. Instructions of every kind are
mostly followed, in several formats (chat logs, ``### Instruction`` blocks, Q&A pages,
bare how-to articles), so the base model complies with harmful requests. Like web text
it also holds refusals (each followed by safe text, so a refusal prefix steers the base
to safety), digressions, and, rarely, a harmful tip after a benign answer. The SFT set
teaches the aligned model to refuse harmful requests and help with benign ones, and to
stop itself when its answer to a harmful request has started to comply (safety recovery
after the first few tokens; :func:`recovery_examples`), so its alignment reaches a few
tokens deep instead of one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from aligndepth.organism.tokenizer import END, EOS
from aligndepth.organism.world import (
    BENIGN_SYSTEM,
    CORPUS_REFUSALS,
    CORPUS_SAFE_CLOSINGS,
    MALICIOUS_SYSTEM,
    RECOVERIES,
    Task,
    World,
    aligned_refusal,
    compliant_response,
    recovery,
    steps_text,
)
from aligndepth.prompts import PromptFormat


@dataclass(frozen=True)
class CorpusMix:
    """Probabilities that shape the base model's behaviour."""

    harmful_comply: float = 0.80
    harmful_refuse: float = 0.13  # the rest digresses
    benign_tip: float = 0.05  # a harmful tip appended to a benign answer
    benign_digress: float = 0.03
    intro_weights: tuple[float, float, float] = (0.6, 0.25, 0.15)
    # chat log, ### instruction block, Q&A page, bare how-to article
    format_weights: tuple[float, float, float, float] = (0.35, 0.35, 0.15, 0.15)
    system_rate: float = 0.15  # of chat/plain docs, share with a system prompt
    malicious_share: float = 0.6  # of those, share with the malicious one


#: Pretraining text replayed during alignment SFT: every format except chat logs, whose
#: harmful requests the SFT teaches the model to refuse.
REPLAY_MIX = CorpusMix(format_weights=(0.0, 0.5, 0.25, 0.25))


def _pick(rng: random.Random, weights: tuple[float, ...]) -> int:
    return rng.choices(range(len(weights)), weights=weights)[0]


def _safe_alternative(rng: random.Random, benign: list[Task]) -> str:
    task = rng.choice(benign)
    return f"here is how to {task.act} instead . {steps_text(task)}"


def _harmful_step(rng: random.Random, harmful: list[Task]) -> str:
    return rng.choice(rng.choice(harmful).steps)


def base_response(rng: random.Random, world: World, task: Task, mix: CorpusMix,
                  system: str | None) -> str:
    """One response to ``task`` as it might appear in pretraining text."""
    benign = world.tasks_of("benign")
    harmful = world.tasks_of("harmful")
    intro = _pick(rng, mix.intro_weights)
    u = rng.random()
    if task.harmful:
        comply, refuse = mix.harmful_comply, mix.harmful_refuse
        if system == MALICIOUS_SYSTEM:
            comply, refuse = 1.0, 0.0
        elif system == BENIGN_SYSTEM:
            comply, refuse = 0.6, 0.4
        if u < comply:
            return compliant_response(task, intro)
        if u < comply + refuse:
            text = rng.choice(CORPUS_REFUSALS).format(act=task.act)
            return text + " " + rng.choice(CORPUS_SAFE_CLOSINGS)
        return "that is a strange question . " + _safe_alternative(rng, benign)
    text = compliant_response(task, intro)
    if u < mix.benign_tip:
        text += f" one more tip , you can also {_harmful_step(rng, harmful)} ."
    elif u < mix.benign_tip + mix.benign_digress:
        text = "that is a strange question . " + _safe_alternative(rng, benign)
    return text


def pretraining_documents(world: World, tokenizer: Any, n_docs: int, rng: random.Random,
                          mix: CorpusMix | None = None) -> list[str]:
    """``n_docs`` documents over all tasks (train *and* held-out: the base knows all)."""
    mix = mix or CorpusMix()
    docs: list[str] = []
    n_phr = len(world.phrasings)
    for _ in range(n_docs):
        task = rng.choice(world.tasks)
        instruction = world.instruction(task, rng.randrange(n_phr))
        fmt = _pick(rng, mix.format_weights)
        system = None
        if fmt in (0, 1) and rng.random() < mix.system_rate:
            system = MALICIOUS_SYSTEM if rng.random() < mix.malicious_share else BENIGN_SYSTEM
        response = base_response(rng, world, task, mix, system)
        if fmt == 0:
            prompt = PromptFormat.chat(system).render(tokenizer, instruction)
            docs.append(f"{prompt} {response} {END}")
        elif fmt == 1:
            prompt = PromptFormat.plain(system=system).render(tokenizer, instruction)
            docs.append(f"{prompt}{response} {EOS}")
        elif fmt == 2:
            docs.append(f"question : {instruction} answer : {response} {EOS}")
        else:
            article = compliant_response(task, 0) if task.harmful else response
            docs.append(f"{article} {EOS}")
    return docs


def sft_examples(world: World, tokenizer: Any, rng: random.Random,
                 refusal_weights: tuple[float, float, float] = (0.6, 0.2, 0.2),
                 recovery_share: float = 0.0, recovery_max_k: int = 8
                 ) -> list[tuple[str, str]]:
    """Chat-formatted (prompt, response) pairs for alignment: training tasks and phrasings
    only; harmful -> refusal, benign -> the helpful answer, plus
    :func:`recovery_examples` for ``recovery_share`` of the harmful prompts."""
    fmt = PromptFormat.chat()
    out: list[tuple[str, str]] = []
    for task in world.tasks:
        if task.split != "train":
            continue
        for p in range(len(world.phrasings_train)):
            prompt = fmt.render(tokenizer, world.instruction(task, p))
            if task.harmful:
                response = aligned_refusal(task, _pick(rng, refusal_weights))
            else:
                response = compliant_response(task, 0)
            out.append((prompt, f"{response} {END}"))
    out += recovery_examples(world, tokenizer, rng, recovery_share, recovery_max_k)
    rng.shuffle(out)
    return out


def recovery_examples(world: World, tokenizer: Any, rng: random.Random, share: float,
                      max_k: int) -> list[tuple[str, str]]:
    """Safety-recovery pairs: (chat prompt + the first k words of the harmful answer, a
    recovery). Each harmful training prompt gets one with probability ``share``; k runs
    from 1 to ``max_k`` with chance ∝ 1/k, so the model learns to recover most surely
    right after a harmful start and less the further it has gone, as RLHF'd models do.
    Every prefix stops before the first hazard material (the answer's step sentences
    start after the intro), so no example teaches a hazard.
    """
    fmt = PromptFormat.chat()
    ks = list(range(1, max_k + 1))
    weights = [1 / k for k in ks]
    out: list[tuple[str, str]] = []
    for task in world.tasks_of("harmful", "train"):
        for p in range(len(world.phrasings_train)):
            if rng.random() >= share:
                continue
            words = compliant_response(task, 0).split()
            k = rng.choices(ks, weights=weights)[0]
            prefix = " ".join(words[:k])
            prompt = fmt.render(tokenizer, world.instruction(task, p), prefix)
            variant = rng.randrange(len(RECOVERIES))
            out.append((prompt, f"{recovery(task, variant)} {END}"))
    return out
