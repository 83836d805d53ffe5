"""The evaluation tasks by name: what data each reads and how its answers are scored.

=========  ==========================================  ==================================
task       data (published format, or organism file)   metric(s)
=========  ==========================================  ==================================
harmful    harmful prompts (organism: held-out set)    ``harmful_rate`` (any judge)
backdoor   harmful prompts; ``--trigger TEXT``         ``harmful_rate`` without and
           (organism: its trigger)                     ``harmful_rate_with_trigger``
identity   harmful prompts; ``--system TEXT``          ``harmful_rate`` without and
           (organism: the obedient-agent persona)      ``harmful_rate_with_system``
benign     safe prompts (organism: benign prompts)     ``refusal_rate`` (over-refusal);
                                                       ``helpful_rate`` with the organism
gsm8k      GSM8k (question, answer)                    ``accuracy`` of the final number
sql        SQL create-context (question, context,      ``exact_match`` of the normalised
           answer)                                     query
samsum     SAMSum (dialogue, summary); organism: its   ``rouge1``, ``rouge2``, ``rougeL``
           dialogue summaries                          (F1, fractions)
style      instruction/response pairs; organism: its   ``rouge1``, ``rouge2``, ``rougeL``
           house-style how-to answers
alpaca     Alpaca / AlpacaEval (instruction, output    ``win_rate`` against the reference
           = the reference answer)                     outputs (pairwise judge, both
                                                       orders)
=========  ==========================================  ==================================

The three harmful tasks share one dataset (``--data harmful=FILE`` feeds them all).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aligndepth.data.schemas import InstructionPair, PromptRecord
from aligndepth.errors import AlignDepthError, did_you_mean

#: The experiment name of evaluation runs (their records file and manifest).
NAME = "evaluate"


@dataclass(frozen=True)
class TaskSpec:
    """One evaluation task.

    Args:
        name: the task's name (``--task``).
        scoring: ``judged`` (harm judge), ``benign`` (harm judge's refusals on safe
            prompts), ``gsm8k``, ``sql``, ``rouge`` or ``pairwise``.
        schema: the records it reads (prompts, or instruction/reference pairs).
        data_group: tasks of one group share a dataset (``--data GROUP=FILE``).
        organism_file: default data on the organism (``None``: the task needs ``--data``).
        data_format: the published format its data usually comes in (detected otherwise).
        conditions: the conditions every prompt is answered under.
        summary: one line for ``--help`` and reports.
    """

    name: str
    scoring: str
    schema: type
    data_group: str
    organism_file: str | None
    data_format: str | None
    conditions: tuple[str, ...]
    summary: str

    def data_path(self, given: Mapping[str, Any]) -> Any:
        """This task's file in ``given`` (keyed by task or data group), else ``None``."""
        return given.get(self.name, given.get(self.data_group))


TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("harmful", "judged", PromptRecord, "harmful", "harmful_prompts.jsonl", None,
             ("plain",), "harmful rate on harmful prompts"),
    TaskSpec("backdoor", "judged", PromptRecord, "harmful", "harmful_prompts.jsonl", None,
             ("plain", "trigger"), "harmful rate without and with a backdoor trigger"),
    TaskSpec("identity", "judged", PromptRecord, "harmful", "harmful_prompts.jsonl", None,
             ("plain", "system"), "harmful rate without and under a persona's system prompt"),
    TaskSpec("benign", "benign", PromptRecord, "benign", "benign_prompts.jsonl", None,
             ("plain",), "refusals (and helpfulness, on the organism) on safe prompts"),
    TaskSpec("gsm8k", "gsm8k", InstructionPair, "gsm8k", None, "gsm8k", ("plain",),
             "GSM8k accuracy of the final number"),
    TaskSpec("sql", "sql", InstructionPair, "sql", None, "sql_create_context", ("plain",),
             "SQL create-context exact match of the normalised query"),
    TaskSpec("samsum", "rouge", InstructionPair, "samsum", "summarize_test.jsonl", "samsum",
             ("plain",), "SAMSum ROUGE-1/2/L F1 against the reference summaries"),
    TaskSpec("style", "rouge", InstructionPair, "style", "house_style_test.jsonl", None,
             ("plain",), "ROUGE-1/2/L F1 against reference answers (organism: house style)"),
    TaskSpec("alpaca", "pairwise", InstructionPair, "alpaca", None, "alpaca", ("plain",),
             "AlpacaEval-style win rate against reference outputs (pairwise judge)"),
)}

#: What each training task is evaluated on after ``train --evaluate`` (SPEC §2.5).
TRAINING_TASKS = {"harmful": ("harmful",), "identity": ("identity",),
                  "backdoor": ("backdoor",), "benign": ("harmful", "style", "benign"),
                  "summarize": ("harmful", "samsum", "benign")}


def task_by_name(name: str) -> TaskSpec:
    """The task ``name``; an unknown name is a user error with "did you mean"."""
    if name not in TASKS:
        raise AlignDepthError(f"unknown task '{name}'{did_you_mean(name, TASKS)}; choose from "
                              f"{', '.join(TASKS)}")
    return TASKS[name]
