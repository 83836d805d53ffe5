"""Experiment: per-token KL profile KL(aligned ‖ base) on harmful pairs (SPEC §1.1).

Both models see the *same* ids: the instruction in one prompt format (the aligned
model's chat template by default, recorded in the manifest) followed by the harmful
response. Shallow alignment shows as large KL on the first few positions and ~0 after.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from aligndepth.analysis.kl import response_kl
from aligndepth.data.schemas import HarmfulPair
from aligndepth.experiment import Setup
from aligndepth.experiment_configs import LATE_FROM, KLConfig
from aligndepth.progress import progress_bar
from aligndepth.prompts import pad_token_id
from aligndepth.runs import Run, Unit, chunked

NAME = "kl"
FIRST = 5  # positions 1..5


def run_kl(setup: Setup, run: Run, pairs: Sequence[HarmfulPair], config: KLConfig
           ) -> dict[str, Any]:
    """Compute and record the KL profile; returns its summary."""
    pair = setup.pair
    fmt = pair.aligned_format if config.prompt_format == "aligned" else pair.base_format
    tok = pair.tokenizer
    units = [Unit(f"kl#{i}", [f"kl|{p.id}" for p in chunk], chunk)
             for i, chunk in enumerate(chunked(pairs, setup.batch_size))]
    todo = run.pending(NAME, units)
    with progress_bar("kl profile", len(todo), setup.show_progress) as advance:
        for unit in todo:
            chunk = unit.items
            prompts = [fmt.encode(tok, p.instruction) for p in chunk]
            responses = [tok(p.harmful_response, add_special_tokens=False).input_ids
                         [: config.max_positions] for p in chunk]
            kls = response_kl(pair.aligned.model, pair.base.model, prompts, responses,
                              pad_token_id(tok), batch_size=len(chunk))
            run.append(NAME, [{"key": f"kl|{p.id}", "id": p.id, "kl": k}
                              for p, k in zip(chunk, kls)])
            advance()
    return summarize_kl(run.records(NAME))


def summarize_kl(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-position mean, 95% interval half-width (1.96 x s.e.m.) and count."""
    if not records:
        return {}
    width = max(len(r["kl"]) for r in records)
    mean, ci, count = [], [], []
    for t in range(width):
        vals = [r["kl"][t] for r in records if len(r["kl"]) > t]
        m = sum(vals) / len(vals)
        var = sum((v - m) ** 2 for v in vals) / max(1, len(vals) - 1)
        mean.append(m)
        ci.append(1.96 * math.sqrt(var / len(vals)) if len(vals) > 1 else 0.0)
        count.append(len(vals))
    first = [v for r in records for v in r["kl"][:FIRST]]
    late = [v for r in records for v in r["kl"][LATE_FROM - 1:]]
    first_mean = sum(first) / len(first)
    late_mean = sum(late) / len(late) if late else float("nan")
    return {"n_pairs": len(records), "first5_mean": first_mean, "late_mean": late_mean,
            "first5_over_late": first_mean / late_mean if late and late_mean > 0 else None,
            "mean": mean, "ci95": ci, "count": count}
