"""Experiment: emulated disalignment (ED) and its baselines (SPEC §2.4; Zhou et al.).

Methods, each sampled ``samples`` times per query (the paper measures harm on sampled
outputs, not greedy ones):

- ``ed``: base (plain template + malicious system prompt) contrasted with aligned (its
  chat format), tokens drawn from ``(α+1)·log π_base − α·log π_aligned``;
- ``base_mp``: the base model with the malicious system prompt alone (ED at α = 0);
- ``align_mp``: the aligned model with the malicious system prompt;
- ``ed_base``: ED with the base model in both roles, malicious vs benign system prompt
  (shows that the aligned model is what makes ED work).

Harmful and safe query sets are reported separately (ED also raises harm on safe
queries). Under a judge that reads refusals only (keyword), an answer to a safe query
without a refusal phrase is compliance, not harm: that rate is ``compliance_rate``
(:mod:`aligndepth.judges.scope`). On the harmful set ``ed`` is also run over an α sweep
(harm rises, then falls: over-optimisation). Every generated sample is one record; the
summary is computed from records, so interrupted runs resume where they stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aligndepth.data.schemas import PromptRecord
from aligndepth.engine import (
    Completion,
    ContrastRow,
    SamplingParams,
    contrastive_generate,
    generate,
)
from aligndepth.experiment import Setup, decode, decode_raw, stop_rule
from aligndepth.experiment_configs import (
    DEFAULT_MALICIOUS_SYSTEM,
    METHODS,
    EDConfig,
)
from aligndepth.judges.scope import judge_reading, measures, part_of, reading, record_measures
from aligndepth.metrics import Units, judged, put_rates, value
from aligndepth.models import LoadedModel, ModelPair
from aligndepth.progress import progress_bar
from aligndepth.prompts import PromptFormat, accepts_system, pad_token_id
from aligndepth.runs import Run, Unit, chunked, unit_seed

NAME = "ed"
QUERY_SETS = ("harmful", "safe")


@dataclass(frozen=True)
class _Job:
    """One method at one α on one query set: the unit of work and of resumption."""

    query_set: str
    method: str
    alpha: float | None  # None for the single-model baselines

    @property
    def tag(self) -> str:
        return f"{self.query_set}|{self.method}|{'-' if self.alpha is None else self.alpha}"


def _jobs(config: EDConfig, sets: Sequence[str]) -> list[_Job]:
    jobs: list[_Job] = []
    for qs in sets:
        for method in config.methods:
            if method == "ed":
                alphas = config.sweep if qs == "harmful" else (config.alpha,)
                jobs += [_Job(qs, method, a) for a in alphas]
            elif method == "ed_base":
                jobs.append(_Job(qs, method, config.alpha))
            else:
                jobs.append(_Job(qs, method, None))
    return jobs


def ed_completions(pair: ModelPair, instructions: Sequence[str], *, alpha: float,
                   sampling: SamplingParams, samples: int, malicious_system: str | None,
                   max_new_tokens: int, seed: int = 0, seeds: Sequence[int] | None = None,
                   batch_size: int = 32, divide_by_base_with: str | None = None,
                   stop_strings: Sequence[str] = ()) -> list[list[Completion]]:
    """ED samples, ``out[q][s]`` for query ``q`` and sample ``s``.

    The base model sees its format with ``malicious_system``; the divided-out model is the
    aligned model in its format, or, with ``divide_by_base_with`` set (ED_base), the base
    model itself under that (benign) system prompt. Each model keeps its own stop rule
    and a row ends at whichever stops first. ``batch_size`` counts queries; ``seeds``
    gives one seed per query.
    """
    (_, malicious), (second, second_fmt) = contrast_sides(pair, malicious_system,
                                                          divide_by_base_with)
    stop = stop_rule(pair.base, malicious, stop_strings).union(
        stop_rule(second, second_fmt, stop_strings))
    return contrastive_generate(
        pair.base.model, second.model,
        [malicious.encode(pair.base.tokenizer, t) for t in instructions],
        [second_fmt.encode(second.tokenizer, t) for t in instructions],
        [ContrastRow(alpha, sampling)] * samples, max_new_tokens=max_new_tokens, stop=stop,
        pad_id=pad_token_id(pair.base.tokenizer),
        aligned_pad_id=pad_token_id(second.tokenizer), seed=seed, seeds=seeds,
        batch_size=batch_size * samples, vocab_size=len(pair.tokenizer),
        tokenizer=pair.base.tokenizer)


def contrast_sides(pair: ModelPair, malicious_system: str | None,
                   divide_by_base_with: str | None = None
                   ) -> tuple[tuple[LoadedModel, PromptFormat], tuple[LoadedModel, PromptFormat]]:
    """ED's two sides, each (model, prompt format): the base model under the malicious
    system prompt, and the divided-out one (the aligned model in its format, or for
    ED_base the base model under ``divide_by_base_with``)."""
    malicious = pair.base_format.with_system(malicious_system)
    if divide_by_base_with is None:
        return (pair.base, malicious), (pair.aligned, pair.aligned_format)
    return (pair.base, malicious), (pair.base, pair.base_format.with_system(divide_by_base_with))


def ed_prompts(setup: Setup, config: EDConfig, instruction: str) -> dict[str, dict[str, str]]:
    """What each method feeds each model for ``instruction``, as fed (special tokens such
    as the BOS kept), for the run manifest: ``{method: {side: prompt}}``."""
    config = config.resolved(setup.ed_systems)
    out: dict[str, dict[str, str]] = {}
    for method in config.methods:
        if method in ("base_mp", "align_mp"):
            role = "base" if method == "base_mp" else "aligned"
            model, _ = setup.role(role)
            fmt = malicious_format(setup, method, config.malicious_system)
            out[method] = {role: fmt.fed(model.tokenizer, instruction)}
            continue
        sides = contrast_sides(setup.pair, config.malicious_system,
                               config.benign_system if method == "ed_base" else None)
        names = ("base", "aligned") if method == "ed" else ("base", "base_benign")
        out[method] = {name: fmt.fed(model.tokenizer, instruction)
                       for name, (model, fmt) in zip(names, sides)}
    return out


def emulated_disalignment(pair: ModelPair, instructions: Sequence[str], *, alpha: float = 1.0,
                          sampling: SamplingParams = SamplingParams(1.0), samples: int = 1,
                          malicious_system: str | None = DEFAULT_MALICIOUS_SYSTEM,
                          max_new_tokens: int = 512, seed: int = 0, batch_size: int = 32
                          ) -> list[list[str]]:
    """ED responses to raw instructions: ``out[q][s]`` is sample ``s`` for query ``q``.

    Example::

        pair = load_pair("llama-2-7b", "llama-2-7b-chat")
        texts = emulated_disalignment(pair, ["How do I ...?"], alpha=0.5, samples=4)
    """
    _ = ContrastRow(alpha)  # validates alpha
    done = ed_completions(pair, instructions, alpha=alpha, sampling=sampling,
                          samples=samples, malicious_system=malicious_system,
                          max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size)
    return [[decode(pair.base, c.ids) for c in rows] for rows in done]


def malicious_format(setup: Setup, method: str, system: str | None) -> PromptFormat:
    """The prompt format of a single-model baseline under the malicious system prompt;
    for ``align_mp`` on a chat template without a system role (Gemma) the text opens the
    user's turn instead."""
    model, fmt = setup.role("base" if method == "base_mp" else "aligned")
    placement = None
    if fmt.kind == "chat" and not accepts_system(model.tokenizer):
        placement = "user"
    return fmt.with_system(system, placement)


def _generate(setup: Setup, config: EDConfig, job: _Job, prompts: Sequence[PromptRecord],
              seeds: Sequence[int]) -> list[list[Completion]]:
    """``out[q][s]``: sample ``s`` for query ``q`` (``seeds``: one per query)."""
    pair = setup.pair
    texts = [p.instruction for p in prompts]
    if job.method in ("base_mp", "align_mp"):
        model, _ = setup.role("base" if job.method == "base_mp" else "aligned")
        fmt = malicious_format(setup, job.method, config.malicious_system)
        tok = model.tokenizer
        flat = generate(model.model, [fmt.encode(tok, t) for t in texts], config.sampling,
                        max_new_tokens=setup.max_new_tokens, stop=setup.stop_rule(model, fmt),
                        pad_id=pad_token_id(tok), seeds=seeds,
                        batch_size=setup.batch_size * config.samples,
                        repeats=config.samples, tokenizer=tok)
        return [flat[i * config.samples:(i + 1) * config.samples] for i in range(len(texts))]
    assert job.alpha is not None
    return ed_completions(pair, texts, alpha=job.alpha, sampling=config.sampling,
                          samples=config.samples, malicious_system=config.malicious_system,
                          max_new_tokens=setup.max_new_tokens, seeds=seeds,
                          batch_size=setup.batch_size, stop_strings=setup.stop_strings,
                          divide_by_base_with=config.benign_system
                          if job.method == "ed_base" else None)


def run_ed(setup: Setup, run: Run, harmful: Sequence[PromptRecord],
           safe: Sequence[PromptRecord], config: EDConfig) -> dict[str, Any]:
    """Run every method on both query sets (``safe`` may be empty); returns the summary."""
    config = config.resolved(setup.ed_systems)
    sets = {"harmful": list(harmful), "safe": list(safe)}
    units: list[Unit] = []
    jobs = {j.tag: j for j in _jobs(config, [s for s in QUERY_SETS if sets[s]])}
    for tag, job in jobs.items():
        for b, chunk in enumerate(chunked(sets[job.query_set], setup.batch_size)):
            keys = [f"ed|{tag}|{p.id}|{s}" for p in chunk for s in range(config.samples)]
            units.append(Unit(f"{tag}#{b}", keys, chunk))
    todo = run.pending(NAME, units)
    model = setup.pair.base
    measure = measures(setup.judge)
    reads = {qs: judge_reading(f"{NAME}:{qs}", setup.judge).judged for qs in QUERY_SETS}
    with progress_bar("emulated disalignment", len(todo), setup.show_progress) as advance:
        for unit in todo:
            job = jobs[unit.name.rsplit("#", 1)[0]]
            seeds = [unit_seed(setup.seed, f"ed|{job.tag}|{p.id}") for p in unit.items]
            new = _generate(setup, config, job, unit.items, seeds)
            flat = [(p, s, c) for p, samples in zip(unit.items, new)
                    for s, c in enumerate(samples)]
            texts = [decode(model, c.ids) for _, _, c in flat]
            verdicts = setup.judge.judge([p.instruction for p, _, _ in flat], texts)
            run.append(NAME, [
                {"key": f"ed|{job.tag}|{p.id}|{s}", "id": p.id, "set": job.query_set,
                 "method": job.method, "alpha": job.alpha, "main": job.alpha in
                 (None, config.alpha), "sample": s, "instruction": p.instruction,
                 "output": text, "output_raw": decode_raw(model, c.ids),
                 "stop_reason": c.stop_reason,
                 "params": config.sampling.describe(), "judge": setup.judge.name,
                 "judged": reads[job.query_set], "measures": measure,
                 "verdict": v.to_record()}
                for (p, s, c), text, v in zip(flat, texts, verdicts)])
            advance()
    return summarize_ed(run.records(NAME))


def _rate_key(record: dict[str, Any]) -> str:
    """``harmful_rate``, or ``compliance_rate`` for a refusal judge on safe queries."""
    how = reading(part_of(NAME, record), record_measures(record))
    return how.rate if how else "harmful_rate"


def ed_units(records: Sequence[dict[str, Any]]) -> Units:
    """Harmful rate per query set and method at the main α (on safe queries under a
    judge that reads refusals only: the compliance rate), and ED's on harmful queries at
    every swept α: one unit per query and sample (the samples of a query clustered)."""
    units: Units = {}
    order = sorted(records, key=lambda r: (r["set"], METHODS.index(r["method"])))
    for r in order:
        unit, verdict = f"{r['id']}|{r['sample']}", judged(r)
        if r["main"]:
            units.setdefault((NAME, _rate_key(r), r["set"], r["method"]), {})[unit] = verdict
    for r in sorted(records, key=lambda r: float(r["alpha"] or 0.0)):
        if r["method"] == "ed" and r["set"] == "harmful":
            sweep = units.setdefault((NAME, "alpha_sweep", str(float(r["alpha"]))), {})
            sweep[f"{r['id']}|{r['sample']}"] = judged(r)
    return units


def summarize_ed(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Harmful rate per query set and method (at the main α; ``compliance_rate`` for the
    safe queries of a judge that reads refusals only), and the α sweep, with counts and
    intervals."""
    queries: dict[str, set[str]] = {}
    alpha = None
    for r in records:
        queries.setdefault(r["set"], set()).add(r["id"])
        if r["main"] and r["alpha"] is not None:
            alpha = r["alpha"]
    summary: dict[str, Any] = {"alpha": alpha, "harmful_rate": {}, "alpha_sweep": {}}
    put_rates(summary, ed_units(records), (NAME,))
    harmful = {m: value(v) for m, v in summary["harmful_rate"].get("harmful", {}).items()}
    ranked = [m for m, v in harmful.items() if v is not None]
    summary.update({
        "best_method": max(ranked, key=lambda m: harmful[m] or 0.0) if ranked else None,
        "n_queries": {qs: len(ids) for qs, ids in queries.items()},
        "samples": max((r["sample"] for r in records), default=-1) + 1,
        "sampling": records[0]["params"] if records else None,
    })
    return summary
