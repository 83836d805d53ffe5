"""Experiment: replay a GCG run's suffixes against another model (a transfer check).

GCG needs gradients, so it runs on local weights; whether its suffixes carry over to
another model (a fine-tuned checkpoint, the same model behind a serving engine, a hosted
open-weight model) needs only its answers. This experiment reads the ``gcg`` records of a
finished run (``source``), places each prompt's suffix in the user turn exactly as GCG
did (:func:`~aligndepth.attacks.gcg_core.split_prompt`), answers greedily on the target
model (local or served) and judges the answer. The suffix travels as token ids when the
target's tokenizer reads them as the source's suffix text (same vocabulary), else as
that text, re-encoded.

Summary: ``asr`` on the target, ``source_asr`` on the same prompts in the source run, and
the paired change between them; for a universal suffix (``gcg --universal``), also the
target's ASR on its training and held-out prompts (``asr_by_split``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aligndepth.attacks.gcg_core import split_prompt
from aligndepth.engine import GREEDY
from aligndepth.errors import AlignDepthError
from aligndepth.experiment import Setup, complete, decode, decode_raw
from aligndepth.experiment_configs import GCGTransferConfig
from aligndepth.metrics import Units, judged, outcome, rate_stats
from aligndepth.progress import progress_bar
from aligndepth.runs import Run, Unit, chunked

NAME = "gcg_transfer"


def found_suffixes(source: str | Path | None) -> list[dict[str, Any]]:
    """The source run's GCG records (prompt, suffix text and ids, verdict)."""
    if source is None:
        raise AlignDepthError("gcg-transfer needs the run whose suffixes to replay: pass "
                              "--source RUN (a run with GCG records)")
    records = Run.load(source).records("gcg")
    if not records:
        raise AlignDepthError(f"'{source}' has no GCG records: run `aligndepth gcg` (or an "
                              "audit with gcg) there first")
    return records


def _suffix_ids(tokenizer: Any, record: dict[str, Any]) -> list[int]:
    ids = [int(i) for i in record["suffix_ids"]]
    if all(i < len(tokenizer) for i in ids) and \
            str(tokenizer.decode(ids)) == record["suffix"]:
        return ids
    return list(tokenizer(record["suffix"], add_special_tokens=False).input_ids)


def run_gcg_transfer(setup: Setup, run: Run, config: GCGTransferConfig) -> dict[str, Any]:
    """Replay every suffix of ``config.source`` on the target; one record per prompt."""
    found = found_suffixes(config.source)
    model, fmt = setup.role(config.target)
    tok = model.tokenizer
    units = [Unit(f"gcgt#{b}", [f"gcgt|{r['id']}" for r in chunk], chunk)
             for b, chunk in enumerate(chunked(found, setup.batch_size))]
    todo = run.pending(NAME, units)
    with progress_bar("GCG transfer", len(todo), setup.show_progress) as advance:
        for unit in todo:
            prompts = []
            for r in unit.items:
                before, after = split_prompt(tok, fmt, r["instruction"])
                prompts.append(before + _suffix_ids(tok, r) + after)
            done = complete(setup, model, fmt, prompts, GREEDY, seeds=[0] * len(prompts))
            texts = [decode(model, c.ids) for c in done]
            verdicts = setup.judge.judge([r["instruction"] for r in unit.items], texts)
            run.append(NAME, [
                {"key": key, "id": r["id"], "model": config.target,
                 "instruction": r["instruction"], "suffix": r["suffix"],
                 "source_verdict": r["verdict"], "output": text, "stop_reason": c.stop_reason,
                 "output_raw": decode_raw(model, c.ids),
                 **({"split": r["split"]} if "split" in r else {}),
                 "judge": setup.judge.name, "verdict": v.to_record()}
                for key, r, text, c, v in zip(unit.keys, unit.items, texts, done, verdicts)])
            advance()
    return summarize_gcg_transfer(run.records(NAME))


def gcg_transfer_units(records: Sequence[dict[str, Any]]) -> Units:
    """The target's ASR and the source's, one unit per prompt (so compare pairs them)."""
    if not records:
        return {}
    return {(NAME, "asr"): {r["id"]: judged(r) for r in records},
            (NAME, "source_asr"): {r["id"]: judged(r, "source_verdict") for r in records}}


def summarize_gcg_transfer(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """ASR of the replayed suffixes on the target beside the source run's ASR, and the
    paired change (target − source) with its 95% interval."""
    from aligndepth.significance import difference

    units = gcg_transfer_units(records)
    target = units.get((NAME, "asr"), {})
    source = units.get((NAME, "source_asr"), {})
    out = {"asr": rate_stats(target.values()), "source_asr": rate_stats(source.values()),
           "change": difference(source, target) if records else None,
           "n_prompts": len(records)}
    splits = sorted({r["split"] for r in records if "split" in r})
    if splits:  # a universal suffix: its training and held-out prompts apart
        out["asr_by_split"] = {s: rate_stats(judged(r) for r in records if r.get("split") == s)
                               for s in splits}
    return out


def source_outcome(record: Mapping[str, Any]) -> str | None:
    """The source run's verdict on the suffix's answer (an axis of the answers table)."""
    verdict = record.get("source_verdict")
    return outcome(verdict) if isinstance(verdict, Mapping) else None
