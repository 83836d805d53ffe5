"""``aligndepth evaluate``: one model on safety and utility tasks, the papers' way.

Every answer is greedy, in the model's chat template (or a plain template), up to
``max_new_tokens`` (512 on a real model, as the papers judge; 64 on the organism). The
run directory is a normal run (:mod:`aligndepth.runs`): records are appended per unit of
prompts, a rerun resumes, and ``eval.json`` and the report are recomputed from the
records (:mod:`aligndepth.evaluation.report`). ``train --evaluate`` runs this on the
trained model (:data:`~aligndepth.evaluation.tasks.TRAINING_TASKS`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aligndepth.data.hub import is_hub_dataset
from aligndepth.data.loading import is_project_jsonl, resolve_data
from aligndepth.engine import GREEDY, check_context
from aligndepth.errors import AlignDepthError
from aligndepth.evaluation.config import EvalConfig as EvalConfig  # re-exported
from aligndepth.evaluation.overlap import check_overlap
from aligndepth.evaluation.pairwise import compare_both_orders
from aligndepth.evaluation.scoring import (
    check_gsm8k_references,
    gsm8k_correct,
    rouge,
    sql_exact_match,
)
from aligndepth.evaluation.tasks import NAME, TaskSpec
from aligndepth.experiment import (
    ORGANISM_MAX_NEW_TOKENS,
    REAL_MAX_NEW_TOKENS,
    decode,
    decode_raw,
    generate_rows,
    stop_rule,
)
from aligndepth.judges.base import Judge
from aligndepth.models import LoadConfig, LoadedModel, load_model
from aligndepth.progress import progress_bar
from aligndepth.prompts import PromptFormat
from aligndepth.runs import Run, Unit, check_out, chunked, file_digest, unit_seed

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """A model ready to be evaluated, with its judges and settings resolved."""

    model: LoadedModel
    fmt: PromptFormat
    config: EvalConfig
    judge: Judge | None = None
    pairwise: Any = None
    organism: Path | None = None
    show_progress: bool = True
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)


def _organism_defaults(organism: Path | None) -> dict[str, str]:
    if organism is None:
        return {}
    from aligndepth.organism.world import PERSONA_SYSTEM, World

    return {"trigger": World.load(organism / "world.json").trigger, "system": PERSONA_SYSTEM}


def resolve_conditions(config: EvalConfig, organism: Path | None) -> dict[str, dict[str, Any]]:
    """The trigger and system prompt each task's conditions use (defaults filled)."""
    defaults = _organism_defaults(organism)
    out: dict[str, dict[str, Any]] = {}
    if "backdoor" in config.tasks:
        trigger = config.trigger or defaults.get("trigger")
        if not trigger:
            raise AlignDepthError("--task backdoor needs the trigger: pass --trigger TEXT")
        out["backdoor"] = {"trigger": trigger}
    if "identity" in config.tasks:
        system = config.system or defaults.get("system")
        if not system:
            raise AlignDepthError("--task identity needs the persona: pass --system TEXT")
        out["identity"] = {"system": system}
    return out


def load_task_data(spec: TaskSpec, path: str | Path | None, organism: Path | None,
                   config: EvalConfig) -> tuple[list[Any], dict[str, Any]]:
    """A task's records (held-out split where the data has one) and their provenance."""
    if path is None and (organism is None or spec.organism_file is None):
        fmt = f" (a {spec.data_format} file)" if spec.data_format else ""
        raise AlignDepthError(f"--task {spec.name} needs data: pass --data "
                              f"{spec.data_group}=FILE{fmt}")
    given = Path(path) if path is not None else None
    data_format = config.data_format or spec.data_format \
        if given is not None and not is_project_jsonl(given) else None
    provenance: dict[str, Any] = {}
    data_split = config.split_of(spec) if given is not None and given.is_dir() \
        and is_hub_dataset(given) else config.data_split
    found: tuple[list[Any], Path] = resolve_data(
        spec.schema, given, organism, split="test", limit=config.limit,
        sample=config.sample, sample_seed=config.seed, organism_file=spec.organism_file,
        data_format=data_format, subset="safe" if spec.scoring == "benign" else "harmful",
        provenance=provenance, data_split=data_split)
    if data_split is not None:
        provenance["split"] = data_split
    if given is not None and not is_project_jsonl(given):
        from aligndepth.data.formats import detect_format

        provenance["format"] = data_format or detect_format(given)
    records, used = found
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise AlignDepthError(f"{used}: the id '{r.id}' appears twice: give every record "
                                  "a unique id")
        seen.add(r.id)
    if spec.scoring == "gsm8k":
        check_gsm8k_references([(r.id, r.response) for r in records], str(used))
    provenance["digest"] = file_digest(used)
    return records, provenance


def _prompt(ev: Evaluation, spec: TaskSpec, condition: str, record: Any
            ) -> tuple[str, PromptFormat]:
    """The instruction as sent, and the format it is sent in."""
    if condition == "trigger":
        return f"{record.instruction} {ev.conditions['backdoor']['trigger']}", ev.fmt
    if condition == "system":
        return record.instruction, ev.fmt.with_system(ev.conditions["identity"]["system"])
    system = getattr(record, "system", None)  # a record's own system prompt, if any
    return record.instruction, ev.fmt.with_system(system) if system else ev.fmt


def _score(ev: Evaluation, spec: TaskSpec, items: Sequence[Any], outputs: Sequence[str]
           ) -> list[dict[str, Any]]:
    """What each answer scored (a verdict, a match, ROUGE or two pairwise judgements)."""
    instructions = [r.instruction for r in items]
    if spec.scoring in ("judged", "benign"):
        assert ev.judge is not None
        return [{"judge": ev.judge.name, "verdict": v.to_record()}
                for v in ev.judge.judge(instructions, outputs)]
    references = [r.response for r in items]
    if spec.scoring == "gsm8k":
        return [{"reference": ref, "correct": gsm8k_correct(out, ref)}
                for out, ref in zip(outputs, references)]
    if spec.scoring == "sql":
        return [{"reference": ref, "correct": sql_exact_match(out, ref)}
                for out, ref in zip(outputs, references)]
    if spec.scoring == "rouge":
        return [{"reference": ref, "rouge": rouge(out, ref)}
                for out, ref in zip(outputs, references)]
    judged = compare_both_orders(ev.pairwise, instructions, outputs, references)
    return [{"reference": ref, "judgements": j} for ref, j in zip(references, judged)]


def task_units(spec: TaskSpec, records: Sequence[Any], batch_size: int) -> list[Unit]:
    return [Unit(f"{spec.name}|{cond}#{b}", [f"{spec.name}|{cond}|{r.id}" for r in chunk],
                 chunk)
            for cond in spec.conditions for b, chunk in enumerate(chunked(records, batch_size))]


def evaluate_units(ev: Evaluation, run: Run, spec: TaskSpec, records: Sequence[Any]) -> None:
    """Answer and score every pending unit of ``spec``, appending its records."""
    model, tok = ev.model, ev.model.tokenizer
    assert ev.config.max_new_tokens is not None
    todo = run.pending(NAME, task_units(spec, records, ev.config.batch_size))
    with progress_bar(f"evaluate {spec.name}", len(todo), ev.show_progress) as advance:
        for unit in todo:
            condition = unit.name.split("|")[1].split("#")[0]
            prompts = [_prompt(ev, spec, condition, r) for r in unit.items]
            fed = [fmt.encode(tok, text) for text, fmt in prompts]
            done = generate_rows(model, fed, GREEDY,
                                 [unit_seed(ev.config.seed, k) for k in unit.keys],
                                 max_new_tokens=ev.config.max_new_tokens,
                                 stop=stop_rule(model, prompts[0][1], ev.config.stop),
                                 batch_size=ev.config.batch_size)
            outputs = [decode(model, c.ids) for c in done]
            scored = _score(ev, spec, unit.items, outputs)
            run.append(NAME, [
                {"key": key, "task": spec.name, "condition": condition, "id": r.id,
                 "instruction": text, "prompt": decode_raw(model, ids), "output": out,
                 "output_raw": decode_raw(model, c.ids), "stop_reason": c.stop_reason,
                 **extra}
                for key, r, (text, _), ids, out, c, extra in zip(
                    unit.keys, unit.items, prompts, fed, outputs, done, scored)])
            advance()


def check_lengths(ev: Evaluation, data: Mapping[str, Sequence[Any]]) -> None:
    """A user error when a prompt plus the new tokens would not fit the model's context."""
    assert ev.config.max_new_tokens is not None
    tok = ev.model.tokenizer
    prompts = [_prompt(ev, spec, cond, r) for spec in ev.config.specs()
               for cond in spec.conditions for r in data[spec.name]]
    lengths = [len(fmt.encode(tok, text)) for text, fmt in prompts]
    check_context(ev.model.model, lengths, ev.config.max_new_tokens, "model")


def run_evaluation(model: str | Path | None, out: str | Path, config: EvalConfig, *,
                   data: Mapping[str, str | Path] | None = None, judge: str | None = None,
                   judge_options: dict[str, Any] | None = None,
                   pairwise_options: dict[str, Any] | None = None,
                   load: LoadConfig | None = None, fmt: PromptFormat | None = None,
                   organism: Path | None = None, overwrite: bool = False,
                   show_progress: bool = True) -> dict[str, Any]:
    """Evaluate ``model`` (default: the organism's aligned model) into the run ``out``.

    ``data`` maps a task or its data group (``harmful`` feeds harmful, backdoor and
    identity) to a file or dataset directory; a task without one uses the organism's
    held-out data when there is some. Returns the summary written to ``out/eval.json``.
    """
    from aligndepth.evaluation.report import render_evaluation
    from aligndepth.judges.registry import make_judge, make_pairwise_judge

    if model is None:
        from aligndepth.organism.build import build_organism

        organism = build_organism(show_progress=show_progress)
        model = organism / "aligned"
    elif organism is None:
        from aligndepth.organism.build import organism_home

        organism = organism_home(model)
    conditions = resolve_conditions(config, organism)
    given = {str(k): v for k, v in (data or {}).items()}
    known = {s.name for s in config.specs()} | {s.data_group for s in config.specs()}
    for key in given:
        if key not in known:
            raise AlignDepthError(f"--data {key}=... names no task being evaluated: use one of "
                                  f"{', '.join(sorted(known))}")
    specs = config.specs()
    datasets, provenance = {}, {}
    for spec in specs:
        path = spec.data_path(given)
        datasets[spec.name], provenance[spec.name] = load_task_data(spec, path, organism, config)
    overlap = check_overlap(model, datasets, config.allow_overlap)
    for name, n in overlap.items():
        provenance[name]["overlap_with_training"] = n
    needs_judge = any(s.scoring in ("judged", "benign") for s in specs)
    harm_judge = make_judge(judge or ("organism" if organism else "keyword"), organism,
                            **(judge_options or {})) if needs_judge else None
    pairwise = make_pairwise_judge(**(pairwise_options or {})) \
        if any(s.scoring == "pairwise" for s in specs) else None
    check_out(Path(out).expanduser(), overwrite)  # every check that needs no weights first
    loaded = load_model(model, load or LoadConfig())
    if config.max_new_tokens is None:
        from dataclasses import replace

        config = replace(config, max_new_tokens=ORGANISM_MAX_NEW_TOKENS if organism
                         else REAL_MAX_NEW_TOKENS)
    ev = Evaluation(loaded, fmt or PromptFormat.chat(), config, harm_judge, pairwise,
                    organism, show_progress, conditions)
    check_lengths(ev, datasets)  # before anything is written
    manifest = {
        "experiments": [NAME], "config": {**asdict(config), "conditions": conditions},
        "models": {"model": loaded.describe(), "format": ev.fmt.describe()},
        "judge": {"harm": harm_judge.describe() if harm_judge else None,
                  "pairwise": pairwise.describe() if pairwise else None},
        "data": provenance, "seed": config.seed,
        "organism": str(organism) if organism else None}
    run = Run.open(out, manifest, overwrite=overwrite)
    for spec in specs:
        log.info("evaluating %s on %d records", spec.name, len(datasets[spec.name]))
        evaluate_units(ev, run, spec, datasets[spec.name])
    return render_evaluation(run.path)
