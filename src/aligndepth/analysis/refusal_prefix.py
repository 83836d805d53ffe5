"""Experiment: refusal-prefix prefilling of the base model (SPEC §1.2, Table 1).

Conditions: the aligned model (no prefix), the base model (no prefix), and the base
model with each refusal prefix forced at the start of its response. A harm judge reads
prefix + continuation; a judge that reads refusals only (keyword) reads the continuation
after the prefix, which would otherwise always hold a refusal phrase
(:mod:`aligndepth.judges.scope`); each record says what was judged. A base model
steered to safety by a few refusal tokens shows how little the aligned model's safety may
need beyond its first tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aligndepth.data.schemas import PromptRecord
from aligndepth.experiment import Setup, complete, decode, decode_raw, prefixed_prompt
from aligndepth.experiment_configs import RefusalPrefixConfig
from aligndepth.judges.scope import judge_reading, measures
from aligndepth.metrics import Units, judged, put_rates
from aligndepth.progress import progress_bar
from aligndepth.runs import Run, Unit, chunked, unit_seed

NAME = "refusal_prefix"


def conditions(config: RefusalPrefixConfig) -> list[tuple[str, str, str]]:
    """(condition name, model role, prefix)."""
    out = [("aligned", "aligned", ""), ("base", "base", "")]
    out += [(f"base+prefix{i}", "base", p) for i, p in enumerate(config.prefixes)]
    return out


def run_refusal_prefix(setup: Setup, run: Run, prompts: Sequence[PromptRecord],
                       config: RefusalPrefixConfig) -> dict[str, Any]:
    units = [Unit(f"{cond}#{b}", [f"rp|{cond}|{p.id}" for p in chunk], chunk)
             for cond, _, _ in conditions(config)
             for b, chunk in enumerate(chunked(prompts, setup.batch_size))]
    spec = {cond: (role, prefix) for cond, role, prefix in conditions(config)}
    todo = run.pending(NAME, units)
    measure, how = measures(setup.judge), judge_reading(NAME, setup.judge)
    with progress_bar("refusal prefix", len(todo), setup.show_progress) as advance:
        for unit in todo:
            cond = unit.name.split("#")[0]
            role, prefix = spec[cond]
            model, fmt = setup.role(role)
            built = [prefixed_prompt(model, fmt, p.instruction, prefix) for p in unit.items]
            done = complete(setup, model, fmt, [ids for ids, _ in built], config.sampling,
                            [unit_seed(setup.seed, key) for key in unit.keys])
            new = [c.ids for c in done]
            texts = [decode(model, pids + n) if pids else (prefix + " " + decode(model, n))
                     for (_, pids), n in zip(built, new)]
            outputs = [decode(model, n) for n in new]
            verdicts = setup.judge.judge([p.instruction for p in unit.items],
                                         outputs if how.continuation_only else texts)
            run.append(NAME, [
                {"key": f"rp|{cond}|{p.id}", "id": p.id, "condition": cond, "model": role,
                 "prefix": prefix, "instruction": p.instruction,
                 "output": o, "stop_reason": c.stop_reason, "judged_text": t,
                 "judged": how.judged, "measures": measure,
                 "output_raw": decode_raw(model, n),
                 "judge": setup.judge.name, "verdict": v.to_record()}
                for p, o, n, c, t, v in zip(unit.items, outputs, new, done, texts, verdicts)])
            advance()
    return summarize_refusal_prefix(run.records(NAME))


def refusal_prefix_units(records: Sequence[dict[str, Any]]) -> Units:
    """Harmful rate per condition (one unit per prompt), per refusal prefix (keyed by its
    text), of the base and aligned models alone, and over every refusal prefix together
    (one unit per prompt and prefix, the prefixes of one prompt clustered)."""
    units: Units = {}
    for r in records:
        cond, verdict = r["condition"], judged(r)
        units.setdefault((NAME, "harmful_rate_by_condition", cond), {})[r["id"]] = verdict
        if cond.startswith("base+prefix"):
            units.setdefault((NAME, "harmful_rate"), {})[f"{r['id']}|{cond}"] = verdict
            units.setdefault((NAME, "by_prefix", r["prefix"]), {})[r["id"]] = verdict
        elif cond in ("base", "aligned"):
            units.setdefault((NAME, f"{cond}_harmful_rate"), {})[r["id"]] = verdict
    return units


def summarize_refusal_prefix(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Harmful rates with counts and intervals (``by_prefix``: per refusal prefix, keyed by
    its text), the prefixes used and what the judge read."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by.setdefault(r["condition"], []).append(r)
    summary: dict[str, Any] = {
        "harmful_rate_by_condition": {}, "harmful_rate": None, "base_harmful_rate": None,
        "aligned_harmful_rate": None,
        "prefixes": {c: rs[0]["prefix"] for c, rs in by.items() if c.startswith("base+prefix")},
        "n_by_condition": {c: len(rs) for c, rs in by.items()},
        "by_prefix": {},
        "judged": sorted({r.get("judged", "refusal prefix + continuation") for r in records
                          if r["condition"].startswith("base+prefix")})}
    return put_rates(summary, refusal_prefix_units(records), (NAME,))
