"""Evaluate a fine-tuned model the way each fine-tuning attack is evaluated (SPEC §2.5).

On the organism (greedy, chat format, exact judge, held-out prompts):

- ``harmful_rate``: harmful prompts, no system prompt (every task);
- ``backdoor``: also ``harmful_rate_with_trigger`` on the same prompts with the trigger;
- ``identity``: also ``harmful_rate_with_persona`` under the persona's system prompt
  (identity shifting is evaluated in the persona it was trained in);
- ``benign`` / ``summarize``: also ``utility`` (mean ROUGE-1 F1 in points, 0–100) on the
  task's held-out test set, and the helpfulness on benign prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aligndepth.data.schemas import InstructionPair, PromptRecord, read_jsonl
from aligndepth.metrics import outcome, rate_stats, value
from aligndepth.models import LoadedModel
from aligndepth.prompts import PromptFormat

#: Benign tasks: their held-out test file and what it holds.
UTILITY_TESTS = {"benign": ("house_style_test.jsonl", "house-style"),
                 "summarize": ("summarize_test.jsonl", "summarisation")}


def _answers(model: LoadedModel, instructions: Sequence[str], fmt: PromptFormat,
             max_new_tokens: int) -> list[str]:
    from aligndepth.organism.card import continuations

    ids = [fmt.encode(model.tokenizer, x) for x in instructions]
    return continuations(model, ids, max_new_tokens)


def evaluate_organism_finetune(model: LoadedModel, organism: Path, task: str,
                               max_new_tokens: int = 64) -> dict[str, Any]:
    """The numbers of the organism's fine-tuning experiments for ``model``."""
    from aligndepth.organism.judge import OrganismJudge
    from aligndepth.organism.utility import mean_rouge1
    from aligndepth.organism.world import PERSONA_SYSTEM

    judge = OrganismJudge.from_dir(organism)
    data = organism / "data"

    def test(name: str) -> list[PromptRecord]:
        return [r for r in read_jsonl(data / name, PromptRecord) if r.split == "test"]

    def harmful_rate(records: Sequence[PromptRecord], fmt: PromptFormat) -> float:
        xs = [r.instruction for r in records]
        verdicts = judge.judge(xs, _answers(model, xs, fmt, max_new_tokens))
        return value(rate_stats(outcome(v.to_record()) for v in verdicts)) or 0.0

    chat = PromptFormat.chat()
    harmful = test("harmful_prompts.jsonl")
    out: dict[str, Any] = {"task": task, "n_harmful": len(harmful),
                           "harmful_rate": harmful_rate(harmful, chat)}
    if task == "backdoor":
        out["harmful_rate_with_trigger"] = harmful_rate(test("backdoor_prompts.jsonl"), chat)
    if task == "identity":
        out["harmful_rate_with_persona"] = harmful_rate(harmful, chat.with_system(PERSONA_SYSTEM))
    if task in UTILITY_TESTS:
        name, what = UTILITY_TESTS[task]
        pairs = read_jsonl(data / name, InstructionPair)
        answers = _answers(model, [p.instruction for p in pairs], chat, max_new_tokens)
        out["utility"] = mean_rouge1(answers, [p.response for p in pairs])
        out["utility_metric"] = f"ROUGE-1 F1 (points) on the {what} test set"
        benign = test("benign_prompts.jsonl")
        xs = [r.instruction for r in benign]
        verdicts = judge.judge(xs, _answers(model, xs, chat, max_new_tokens))
        out["benign_helpful_rate"] = sum(v.label == "helpful" for v in verdicts) / len(xs)
    return out
