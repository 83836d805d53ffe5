"""Experiment: the prefilling attack (SPEC §2.1, Fig. 2).

The first k tokens of a harmful response are placed at the start of the aligned model's
turn and it continues from there. The judged text is **prefix + continuation** (as in
the paper), so at large k part of the harm is the prefix itself. Pairs whose harmful
response has at most k tokens are left out of that k (counts are reported).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aligndepth.data.schemas import HarmfulPair
from aligndepth.errors import AlignDepthError
from aligndepth.experiment import Setup, complete, decode, decode_raw
from aligndepth.experiment_configs import PrefillConfig
from aligndepth.metrics import Units, judged, put_rates
from aligndepth.progress import progress_bar
from aligndepth.runs import Run, Unit, chunked, unit_seed

NAME = "prefill"


def check_ks(tokenizer: Any, pairs: Sequence[HarmfulPair], ks: Sequence[int]
             ) -> dict[str, list[int]]:
    """Token ids of each harmful response; raises if some k reaches past all of them."""
    h_ids = {p.id: list(tokenizer(p.harmful_response, add_special_tokens=False).input_ids)
             for p in pairs}
    longest = max(len(v) for v in h_ids.values())
    too_long = [k for k in ks if k >= longest]
    if too_long:
        raise AlignDepthError(f"prefill k={too_long[0]} is not shorter than every harmful "
                              f"response (the longest has {longest} tokens): use smaller k")
    return h_ids


def run_prefill(setup: Setup, run: Run, pairs: Sequence[HarmfulPair], config: PrefillConfig
                ) -> dict[str, Any]:
    model, fmt = setup.role(config.target)
    tok = model.tokenizer
    h_ids = check_ks(tok, pairs, config.ks)
    units = []
    for k in config.ks:
        eligible = [p for p in pairs if len(h_ids[p.id]) > k]
        for b, chunk in enumerate(chunked(eligible, setup.batch_size)):
            units.append(Unit(f"k{k}#{b}", [f"prefill|{k}|{p.id}" for p in chunk], chunk))
    todo = run.pending(NAME, units)
    with progress_bar("prefilling attack", len(todo), setup.show_progress) as advance:
        for unit in todo:
            k = int(unit.name[1:].split("#")[0])
            prefixes = [h_ids[p.id][:k] for p in unit.items]
            prompts = [fmt.encode(tok, p.instruction) + pre
                       for p, pre in zip(unit.items, prefixes)]
            done = complete(setup, model, fmt, prompts, config.sampling,
                            [unit_seed(setup.seed, key) for key in unit.keys])
            new = [c.ids for c in done]
            texts = [decode(model, pre + n) for pre, n in zip(prefixes, new)]
            verdicts = setup.judge.judge([p.instruction for p in unit.items], texts)
            run.append(NAME, [
                {"key": f"prefill|{k}|{p.id}", "id": p.id, "k": k, "model": config.target,
                 "instruction": p.instruction, "prefix": decode(model, pre),
                 "output": decode(model, n), "stop_reason": c.stop_reason, "judged_text": t,
                 "output_raw": decode_raw(model, n),
                 "judge": setup.judge.name, "verdict": v.to_record()}
                for p, pre, n, c, t, v in zip(unit.items, prefixes, new, done, texts,
                                              verdicts)])
            advance()
    return summarize_prefill(run.records(NAME))


def prefill_units(records: Sequence[dict[str, Any]]) -> Units:
    """ASR at each k: one unit per prompt."""
    units: Units = {}
    for r in sorted(records, key=lambda r: int(r["k"])):
        units.setdefault((NAME, "asr_by_k", str(int(r["k"]))), {})[r["id"]] = judged(r)
    return units


def summarize_prefill(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """ASR (with counts and interval) at each k."""
    summary: dict[str, Any] = {"asr_by_k": {}}
    put_rates(summary, prefill_units(records), (NAME,))
    summary["n_by_k"] = {k: v["n"] + v["unparseable"] + v["error"]
                         for k, v in summary["asr_by_k"].items()}
    summary["judged_text"] = "prefix + continuation"
    return summary
