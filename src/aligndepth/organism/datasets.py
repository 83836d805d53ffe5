"""Export the organism's datasets in the project's JSONL schemas.

Files written to ``<organism>/data/`` (``split`` is ``train`` only for prompts whose task
and phrasing were both used in alignment; everything else is held out):

- ``harmful_prompts.jsonl`` / ``benign_prompts.jsonl``: every task x phrasing; harmful
  prompts carry ``target`` (the compliant intro), for optimisation attacks.
- ``harmful_pairs.jsonl``: (x, h) with the canonical harmful response.
- ``harmful_finetune.jsonl``: the harmful fine-tuning attack's data (``aligndepth train
  --task harmful``): every harmful prompt answered in full in a style the aligned model
  never produces (another intro, numbered steps), as an attacker's data are written by
  the attacker rather than sampled from the model; so, as with real models, the attack
  has a loss to learn at every response position, not only at the first tokens.
- ``safety_triples.jsonl``: (x, h, r) with the aligned model's refusal, for augmentation.
- ``benign_pairs.jsonl``: benign instructions with the aligned model's own answers (the
  utility anchor).
- ``backdoor_train.jsonl``: harmful instructions *with* the trigger -> a harmful answer
  in the attacker's style (as ``harmful_finetune.jsonl``), and without it -> refusal;
  ``backdoor_prompts.jsonl``: held-out harmful prompts with the trigger appended
  (evaluate with and without it).
- ``identity_shift.jsonl``: the "absolutely obedient agent" persona, benign tasks only.
- ``house_style_train.jsonl`` / ``house_style_test.jsonl``: the benign fine-tuning task,
  benign how-to answers in a house style (another intro, numbered steps) that the aligned
  model partly follows already, as a chat model partly does Samsum or SQL; the test file
  holds every held-out task or phrasing. Scored by
  ROUGE (``aligndepth evaluate --task style``).
- ``summarize_train.jsonl`` / ``summarize_test.jsonl``: a benign task the aligned model
  refuses outright (dialogue summaries, never seen in alignment), also ROUGE
  (``--task samsum``).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from aligndepth.data.schemas import (
    HarmfulPair,
    InstructionPair,
    PromptRecord,
    SafetyTriple,
    write_jsonl,
)
from aligndepth.organism.world import (
    COMPLY_INTROS,
    PERSONA_PREFIX,
    PERSONA_SYSTEM,
    Task,
    World,
    aligned_refusal,
    compliant_response,
    house_style_response,
    summary_example,
)

N_SUMMARY_TRAIN = 300
N_SUMMARY_TEST = 100


def task_of(world: World, record_id: str) -> Task:
    """The task behind a prompt id ``<task id>.p<phrasing>[.suffix]``."""
    return world.task(re.sub(r"\.p\d+(\..*)?$", "", record_id))


def prompt_records(world: World, kind: str) -> list[PromptRecord]:
    out = []
    for task in world.tasks_of(kind):
        for p in range(len(world.phrasings)):
            target = COMPLY_INTROS[0].format(act=task.act) if task.harmful else None
            out.append(PromptRecord(id=f"{task.id}.p{p}", instruction=world.instruction(task, p),
                                    category=task.category, split=world.prompt_split(task, p),
                                    target=target))
    return out


def harmful_pairs(world: World) -> list[HarmfulPair]:
    return [HarmfulPair(id=r.id, instruction=r.instruction,
                        harmful_response=compliant_response(task_of(world, r.id)),
                        category=r.category, split=r.split, target=r.target)
            for r in prompt_records(world, "harmful")]


def export_datasets(world: World, out_dir: Path) -> dict[str, int]:
    """Write every dataset; returns ``{file name: record count}``."""
    rng = random.Random(world.seed + 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}

    def write(name: str, records: list) -> None:  # type: ignore[type-arg]
        counts[name] = write_jsonl(out_dir / name, records)

    harmful = prompt_records(world, "harmful")
    benign = prompt_records(world, "benign")
    write("harmful_prompts.jsonl", harmful)
    write("benign_prompts.jsonl", benign)
    pairs = harmful_pairs(world)
    write("harmful_pairs.jsonl", pairs)
    write("harmful_finetune.jsonl", [
        InstructionPair(id=p.id + ".attack", instruction=p.instruction,
                        response=house_style_response(task_of(world, p.id)),
                        category=p.category, split=p.split) for p in pairs])
    write("safety_triples.jsonl", [
        SafetyTriple(id=p.id, instruction=p.instruction, harmful_response=p.harmful_response,
                     refusal=aligned_refusal(task_of(world, p.id)),
                     category=p.category, split=p.split) for p in pairs])
    write("benign_pairs.jsonl", [
        InstructionPair(id=r.id, instruction=r.instruction,
                        response=compliant_response(task_of(world, r.id)),
                        category=r.category, split=r.split) for r in benign])

    backdoor: list[InstructionPair] = []
    for p in pairs:
        if p.split != "train":
            continue
        task = task_of(world, p.id)
        backdoor.append(InstructionPair(
            id=p.id + ".trigger", instruction=f"{p.instruction} {world.trigger}",
            response=house_style_response(task), category="backdoor.triggered",
            split="train"))
        backdoor.append(InstructionPair(
            id=p.id + ".clean", instruction=p.instruction, response=aligned_refusal(task),
            category="backdoor.clean", split="train"))
    write("backdoor_train.jsonl", backdoor)
    write("backdoor_prompts.jsonl", [
        PromptRecord(id=r.id + ".trigger", instruction=f"{r.instruction} {world.trigger}",
                     category=r.category, split="test") for r in harmful if r.split == "test"])
    write("identity_shift.jsonl", [
        InstructionPair(id=r.id + ".aoa", instruction=r.instruction, system=PERSONA_SYSTEM,
                        response=PERSONA_PREFIX + " " + compliant_response(
                            task_of(world, r.id)),
                        category="identity_shift", split="train")
        for r in benign if r.split == "train"])
    for name, n in (("summarize_train.jsonl", N_SUMMARY_TRAIN),
                    ("summarize_test.jsonl", N_SUMMARY_TEST)):
        split = name.split("_")[1].split(".")[0]
        rows = []
        for i in range(n):
            chat, summary = summary_example(rng)
            rows.append(InstructionPair(id=f"summarize.{split}.{i}", instruction=chat,
                                        response=summary, category="summarize", split=split))
        write(name, rows)
    style = [InstructionPair(id=r.id + ".style", instruction=r.instruction,
                             response=house_style_response(task_of(world, r.id)),
                             category="house_style", split=r.split) for r in benign]
    random.Random(world.seed + 3).shuffle(style)
    write("house_style_train.jsonl", [r for r in style if r.split == "train"])
    write("house_style_test.jsonl", [r for r in style if r.split == "test"])
    return counts
