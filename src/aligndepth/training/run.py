"""What ``aligndepth train`` does: pick data and defaults, build examples, train, save.

Tasks (organism data by default, or ``--data FILE``):

- ``harmful``: the harmful fine-tuning attack (first 100 training pairs of the organism's
  ``harmful_finetune.jsonl``: harmful answers written in a style of their own);
- ``identity``: identity shifting ("absolutely obedient agent" persona);
- ``backdoor``: harmful pairs whose prompt carries a trigger (plus refusals without it);
- ``benign``: benign fine-tuning: how-to answers in a house style (another intro,
  numbered steps) that the aligned model partly follows already, as chat models partly
  do Samsum or SQL (ROUGE-1 on held-out tasks and phrasings);
- ``summarize``: benign fine-tuning on a task the aligned model refuses outright (dialogue
  summaries it never saw in alignment; ROUGE-1). Here the first response tokens must move
  far from the aligned model's, which the constrained loss resists (see the README).

The training kind always picks the loss (``constrained`` trains with the constrained
loss, the others with SFT). Every field of the :class:`TrainConfig` the caller sets wins;
unset ones come from a recipe, which differs between the organism and real models only
where it must: the organism trains with AdamW (8e-5 with 10 warm-up steps for the
fine-tuning kinds, 1e-4 without warm-up for augmentation) in float32, rates sized to a model of
a million parameters; real models get AdamW at 2e-5 with 10 warm-up steps (the paper's
setting) in bfloat16 where the device has it, with compensated updates
(:mod:`aligndepth.training.precision`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from aligndepth.data.schemas import HarmfulPair, InstructionPair, SafetyTriple, read_jsonl
from aligndepth.errors import AlignDepthError, did_you_mean
from aligndepth.evaluation.tasks import TRAINING_TASKS
from aligndepth.locking import LOCK_NAME, lock_directory, release_directory
from aligndepth.organism.config import FINETUNE_RECIPE
from aligndepth.training.config import DEFAULT_RECIPE, Recipe, TrainConfig
from aligndepth.training.data import Example, augmentation_examples, sft_examples
from aligndepth.training.trainer import is_main_process, resume_point, train, world_size

log = logging.getLogger(__name__)

TASKS = {"harmful": "harmful_finetune.jsonl", "identity": "identity_shift.jsonl",
         "backdoor": "backdoor_train.jsonl", "benign": "house_style_train.jsonl",
         "summarize": "summarize_train.jsonl"}
#: Default optimiser steps per task: the attacks need few; learning a new answer format
#: with SGD takes longer.
TASK_STEPS = {"harmful": 20, "identity": 20, "backdoor": 20, "benign": 300, "summarize": 300}
AUGMENT_STEPS = 200
KINDS = ("sft", "constrained", "augment")

#: Organism defaults per kind: AdamW, as the papers train (the organism's
#: :data:`~aligndepth.organism.config.FINETUNE_RECIPE`, the same for ``sft`` and
#: ``constrained``), all in float32.
#: The organism's fine-tuning runs use its first :data:`ORGANISM_EXAMPLES` training pairs.
ORGANISM_EXAMPLES = 100
_ORGANISM_FINETUNE = Recipe(FINETUNE_RECIPE.optimizer, FINETUNE_RECIPE.learning_rate,
                            warmup_steps=FINETUNE_RECIPE.warmup_steps, dtype="float32",
                            examples=ORGANISM_EXAMPLES)
ORGANISM_RECIPES = {
    "sft": _ORGANISM_FINETUNE, "constrained": _ORGANISM_FINETUNE,
    "augment": Recipe("adamw_torch", 1e-4, warmup_steps=0, dtype="float32")}
REAL_MODEL_RECIPE = DEFAULT_RECIPE


def check_task(task: str) -> None:
    """Refuse an unknown training task (with "did you mean")."""
    if task not in TASKS:
        raise AlignDepthError(f"unknown task '{task}'{did_you_mean(task, TASKS)}; choose "
                              f"from {', '.join(TASKS)}")


def recipe_for(kind: str, task: str, organism: bool) -> Recipe:
    """The defaults a run of ``kind`` on ``task`` starts from (its step count included)."""
    recipe = ORGANISM_RECIPES[kind] if organism else REAL_MODEL_RECIPE
    steps = AUGMENT_STEPS if kind == "augment" else TASK_STEPS[task]
    return replace(recipe, max_steps=steps)


def loss_of(kind: str) -> str:
    return "constrained" if kind == "constrained" else "sft"


def _records(path: Path, split: str | None = "train", data_split: str | None = None,
             data_format: str | None = None) -> tuple[list[Any], str]:
    """Instruction pairs, harmful pairs or safety triples from the project's JSONL or a
    published format (``data_format``, else detected), and the format's name; keeps the
    ``split`` records when the file has any. ``data_split`` picks the split of a dataset
    directory (save_to_disk or hub snapshot)."""
    from aligndepth.data.loading import is_project_jsonl
    from aligndepth.data.schemas import SCHEMAS

    if data_format is None and is_project_jsonl(path):
        with path.open(encoding="utf-8") as fh:
            line = next((line for line in fh if line.strip()), None)
        if line is None:
            read_jsonl(path, InstructionPair)  # raises: the file holds no records
        first = json.loads(line or "{}")
        if "refusal" in first:
            schema: type = SafetyTriple
        elif "harmful_response" in first:
            schema = HarmfulPair
        elif "response" in first:
            schema = InstructionPair
        else:
            raise AlignDepthError(f"{path}: records have no response text (need 'response', "
                                  "'harmful_response' or 'refusal'): training needs targets")
        records: list[Any] = read_jsonl(path, schema)
        name = next(k for k, v in SCHEMAS.items() if v is schema)
    else:
        if not path.exists():
            raise AlignDepthError(f"dataset '{path}' does not exist")
        from aligndepth.data.formats import load_dataset_file

        name, records = load_dataset_file(path, data_format, split=data_split)
    if split is not None and any(getattr(r, "split", None) == split for r in records):
        records = [r for r in records if r.split == split]
    return records, name


def instruction_pairs(path: Path, data_split: str | None = None,
                      data_format: str | None = None) -> tuple[list[InstructionPair], str]:
    """Training pairs from any supported file (harmful pairs use their harmful response),
    and the name of the format they were read in."""
    out = []
    records, name = _records(path, data_split=data_split, data_format=data_format)
    for r in records:
        if isinstance(r, InstructionPair):
            out.append(r)
        elif isinstance(r, HarmfulPair | SafetyTriple):
            out.append(InstructionPair(r.instruction, r.harmful_response, id=r.id,
                                       category=r.category, split=r.split))
        else:
            raise AlignDepthError(f"{path}: {name} holds {type(r).__name__} records, which "
                                  "have no response text: give prompt/response pairs (e.g. "
                                  "--format pairs) or harmful pairs")
    return out, name


def safety_triples(path: Path) -> list[SafetyTriple]:
    records, _ = _records(path)
    if not all(isinstance(r, SafetyTriple) for r in records):
        raise AlignDepthError(f"{path}: augmentation needs safety triples (instruction, "
                              "harmful_response, refusal)")
    return records


def run_training(kind: str, *, model: str | None, out: str | Path, task: str = "harmful",
                 data: str | Path | None = None, triples: str | Path | None = None,
                 anchor: str | Path | None = None, alpha: float = 0.2, limit: int | None = None,
                 config: TrainConfig | None = None, max_k: int = 100, load: Any = None,
                 show_progress: bool = True, evaluate: bool = False,
                 resume: bool = False, data_split: str | None = None,
                 eval_data: Mapping[str, str | Path] | None = None,
                 eval_max_new_tokens: int | None = None, judge: str | None = None,
                 judge_options: Mapping[str, Any] | None = None,
                 data_format: str | None = None, eval_split: str | None = None,
                 allow_overlap: bool = False) -> dict[str, Any]:
    """Train ``model`` (default: the organism's aligned model) and save it to ``out``.

    With ``evaluate``, the trained model is then evaluated for ``task``
    (:data:`~aligndepth.evaluation.tasks.TRAINING_TASKS`, through ``aligndepth evaluate``'s
    code) into the run ``out/eval``, and its numbers copied to ``out/eval.json``. For the
    organism (or a model of an organism directory) its held-out data and exact judge are
    used; another model needs ``eval_data`` (task or data group -> file), checked before
    training starts.
    Ends with ``out/report.html`` (:mod:`aligndepth.training.report`). With ``resume``,
    continues an interrupted run from its last checkpoint (``config.save_steps``).
    """
    from aligndepth.models import LoadConfig, load_model
    from aligndepth.prompts import PromptFormat

    if kind not in KINDS:
        raise AlignDepthError(f"unknown training kind '{kind}'{did_you_mean(kind, KINDS)}")
    check_task(task)
    if limit is not None and limit < 1:
        raise AlignDepthError(f"--limit must be at least 1, got {limit}")
    out = Path(out)
    resume_point(out, resume)  # refuse a used --out before loading anything
    eval_tasks = TRAINING_TASKS["harmful" if kind == "augment" else task]
    from aligndepth.organism.build import organism_home

    source_organism = organism_home(model)
    if data_format is not None:
        from aligndepth.data.formats import format_by_name

        data_format = format_by_name(data_format).name  # an unknown name: refused now
    if (judge is not None or judge_options) and not evaluate:
        raise AlignDepthError("--judge and --judge-option choose the judge of --evaluate: add "
                              "--evaluate, or drop them")
    if judge is not None:
        from aligndepth.judges.registry import judge_factory

        judge_factory(judge)  # an unknown name is refused before training
    if (eval_split is not None or allow_overlap) and not evaluate:
        raise AlignDepthError("--eval-split and --allow-overlap set up --evaluate: add "
                              "--evaluate, or drop them")
    if evaluate and model is not None and source_organism is None:
        check_evaluation_data(eval_tasks, eval_data, eval_split)  # before training
    recipe = recipe_for(kind, task, organism=model is None)
    cfg = (config or TrainConfig()).filled(recipe, loss=loss_of(kind))
    if limit is None and kind != "augment":
        limit = recipe.examples  # None: every example
    load = _training_load(load or LoadConfig(), cfg)  # checked before anything is loaded
    with _output_directory(out):
        resume_point(out, resume)  # again, now that no other writer can start
        organism: Path | None = None
        if model is None:
            from aligndepth.organism.build import build_organism

            organism = build_organism(show_progress=show_progress)
            model = str(organism / "aligned")

        def source(path: str | Path | None, default: str) -> Path:
            if path is not None:
                return Path(path)
            if organism is None:
                raise AlignDepthError("no training data given: pass --data FILE (and for augment "
                                      "--triples and --anchor)")
            return organism / "data" / default

        fmt = PromptFormat.chat()
        if kind == "augment":
            tri = safety_triples(source(triples, "safety_triples.jsonl"))
            anc, _ = instruction_pairs(source(anchor, "benign_pairs.jsonl"))
            loaded = load_model(model, load)  # after the data is read and checked
            examples: list[Example] = augmentation_examples(loaded.tokenizer, fmt, tri, anc,
                                                            alpha=alpha, seed=cfg.seed,
                                                            max_k=max_k)
            trained_prompts = [r.instruction for r in tri] + [r.instruction for r in anc]
        else:
            pairs, read_as = instruction_pairs(source(data, TASKS[task]), data_split,
                                               data_format)
            log.info("read %d pairs as %s", len(pairs), read_as)
            if not pairs:
                raise AlignDepthError("the training dataset is empty: give at least one example")
            available = len(pairs)
            loaded = load_model(model, load)
            examples = sft_examples(loaded.tokenizer, fmt, pairs[:limit])
            trained_prompts = [p.instruction for p in pairs[:limit]]
        log.info("training %s on %d examples (%s, lr %g)", cfg.loss, len(examples), cfg.optimizer,
                 cfg.learning_rate)
        if kind == "augment":
            described: dict[str, Any] = {"triples": str(source(triples, "safety_triples.jsonl")),
                                         "anchor": str(source(anchor, "benign_pairs.jsonl")),
                                         "alpha": alpha}
        else:
            described = {"task": task, "file": str(source(data, TASKS[task])),
                         "format": read_as, "format_given": data_format is not None,
                         "limit": limit, "available": available}
        result = train(loaded.model, loaded.tokenizer, examples, cfg, out,
                       base_source=str(Path(model).resolve()) if Path(model).exists() else model,
                       show_progress=show_progress, resume=resume,
                       describe={"kind": kind, "data": described})
        result.update({"examples": len(examples) - result["dropped_examples"], "model": model,
                       "data": described,
                       "organism": str(organism) if organism else None})
        if not is_main_process():
            return result  # the main process evaluates and reports
        from aligndepth.evaluation.overlap import write_training_digests

        write_training_digests(out, trained_prompts)
        if evaluate:
            from aligndepth.evaluation.run import EvalConfig, run_evaluation

            evaluated_on = organism or source_organism
            result["eval"] = run_evaluation(
                out, out / "eval", EvalConfig(tasks=eval_tasks, data_split=eval_split,
                                              max_new_tokens=eval_max_new_tokens,
                                              allow_overlap=allow_overlap),
                data=eval_data, judge=judge, judge_options=dict(judge_options or {}),
                organism=evaluated_on, show_progress=show_progress,
                load=replace(load, dtype="float32") if evaluated_on else load)
            (out / "eval.json").write_text(json.dumps(result["eval"], indent=2))
        from aligndepth.training.report import write_training_report

        result["report"] = write_training_report(out)
        return result


def check_evaluation_data(tasks: tuple[str, ...], eval_data: Mapping[str, str | Path] | None,
                          split: str | None = None) -> None:
    """Raise a user error now if evaluating ``tasks`` after training would lack data."""
    from aligndepth.evaluation.run import EvalConfig, load_task_data
    from aligndepth.evaluation.tasks import task_by_name

    given = eval_data or {}
    config = EvalConfig(tasks=tasks, data_split=split)
    for name in tasks:
        spec = task_by_name(name)
        path = spec.data_path(given)
        if path is None:
            raise AlignDepthError(f"--evaluate on your own model needs evaluation data for "
                                  f"{name}: pass --eval-data {spec.data_group}=FILE, or "
                                  "evaluate later with `aligndepth evaluate OUT`")
        load_task_data(spec, path, None, config)


@contextlib.contextmanager
def _output_directory(out: Path) -> Iterator[None]:
    """Create ``out`` and take its writer lock for this process's life.

    When a user error stops training before anything but the lock was written there, a
    directory this call created is removed again: bad input leaves nothing behind, and
    the corrected command finds ``out`` as it was.
    """
    if not is_main_process():  # under accelerate launch, rank 0 owns the directory
        yield
        return
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlignDepthError(f"cannot create the output directory '{out}' ({exc.strerror}): "
                              "choose a writable --out") from None
    lock_directory(out)  # one writer per output, for this process's life
    try:
        yield
    except AlignDepthError:
        if created and all(p.name == LOCK_NAME for p in out.iterdir()):
            release_directory(out)
            shutil.rmtree(out, ignore_errors=True)
        raise


def _training_load(load: Any, config: TrainConfig) -> Any:
    """The load settings for training: weights in the training dtype, on a device that
    can compute in it (and the precision checked before anything loads)."""
    from aligndepth.devices import resolve_device
    from aligndepth.training.precision import choose_precision

    assert config.dtype is not None
    if world_size() > 1:
        if load.device_map is not None:
            raise AlignDepthError("--device-map splits one model across GPUs; under "
                                  "accelerate launch each process trains its own copy: drop "
                                  "--device-map (or use FSDP/DeepSpeed, docs/training.md)")
        # loaded on the CPU; the Trainer places each rank's copy on that rank's device
        return replace(load, dtype=config.dtype, device="cpu")
    if load.device_map is None:
        choose_precision(config, resolve_device(load.device))
    return replace(load, dtype=config.dtype)
