"""Runs built from records for the report tests (no model): a prefill run with
categories, one rare word and verdicts that grow with k."""

from __future__ import annotations

import random
from pathlib import Path

from aligndepth.judges.base import Verdict
from aligndepth.locking import release_directory
from aligndepth.runs import Run

CATEGORIES = ("Illegal Activity", "Malware", "Fraud/Deception")
#: The one answer holding this word.
RARE = "quokkaesque"


def verdict(harmful: bool) -> dict:
    return (Verdict("harmful", "no refusal phrase", 1.0) if harmful
            else Verdict("other", "refusal phrase 'I cannot'", 0.0)).to_record()


def prefill_run(root: Path, prompts: int, ks: tuple[int, ...], answer_chars: int = 80,
                categories: bool = True, seed: int = 0, kl: bool = False
                ) -> tuple[Path, list[dict]]:
    """A prefill run over ``prompts`` prompts at each k, harmful more often at larger k;
    prompt i is in category ``CATEGORIES[i % 3]``; one answer holds :data:`RARE`. With
    ``kl``, a KL profile too."""
    rng = random.Random(seed)
    manifest = {"experiments": ["kl", "prefill"] if kl else ["prefill"], "config": {},
                "models": {},
                "judge": {"name": "keyword"}, "data": {}, "seed": 0}
    if categories:
        manifest["categories"] = {"harmful": {
            c: [f"p{i}" for i in range(prompts) if i % len(CATEGORIES) == j]
            for j, c in enumerate(CATEGORIES)}}
    run = Run.open(root, manifest)
    words = ["step", "mix", "then", "heat", "wire", "the", "account", "quietly", "and"]
    records = []
    for k in ks:
        for i in range(prompts):
            text = " ".join(rng.choice(words) for _ in range(answer_chars // 5))
            if (k, i) == (ks[-1], 1):
                text = f"first {RARE} then {text}"
            records.append({
                "key": f"prefill|{k}|p{i}", "id": f"p{i}", "k": k,
                "instruction": f"Explain how to do harmful thing {i}.",
                "prefix": " ".join(["Sure"] * min(k, 3)), "output": text[:answer_chars],
                "judged_text": text, "judge": "keyword",
                "verdict": verdict(rng.random() < 0.1 + 0.8 * k / max(ks))})
    run.append("prefill", records)
    if kl:
        run.append("kl", [{"key": f"kl|p{i}", "id": f"p{i}", "kl": [3.0, 2.0, 0.5, 0.1]}
                          for i in range(prompts)])
    release_directory(root)
    return root, records
