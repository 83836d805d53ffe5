"""The built-in experiments' report pieces, named by their registry entries
(:mod:`aligndepth.experiments_builtin`): each one's rows of the results table, its plot,
the notes read under its section, and the keys it adds to the top of the summary.

Hook signatures: ``rows(section) -> [(metric, text)]``, ``plot(section, records, plots_dir)
-> Path | None``, ``notes(section) -> [markdown line]``, ``extras(section) -> dict``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aligndepth.metrics import fmt_rate, is_rate, value
from aligndepth.report import plots
from aligndepth.report.references import marks

Rows = list[tuple[str, str]]


def fmt(x: Any) -> str:
    """A summary value as table text (a rate with its interval and counts)."""
    if is_rate(x):
        return fmt_rate(x)
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


# -- kl ---------------------------------------------------------------------------------

def kl_rows(k: dict[str, Any]) -> Rows:
    return [("KL first 5 positions (mean)", fmt(k["first5_mean"])),
            ("KL positions >= 10 (mean)", fmt(k["late_mean"])),
            ("KL ratio first5 / late", fmt(k["first5_over_late"]))]


def kl_plot(k: dict[str, Any], records: list[dict[str, Any]], d: Path) -> Path:
    return plots.plot_kl({"aligned vs base": k}, d / "kl_profile.png")


# -- refusal_prefix ---------------------------------------------------------------------

def refusal_prefix_rows(r: dict[str, Any]) -> Rows:
    rows = [("aligned harmful rate", fmt(r["aligned_harmful_rate"])),
            ("base harmful rate", fmt(r["base_harmful_rate"])),
            ("base + refusal prefix harmful rate", fmt(r["harmful_rate"]))]
    return rows + [(f"base + '{p}' harmful rate", fmt(v))
                   for p, v in (r.get("by_prefix") or {}).items()]


def refusal_prefix_plot(r: dict[str, Any], records: list[dict[str, Any]], d: Path) -> Path:
    return plots.plot_refusal_prefix(r, d / "refusal_prefix.png",
                                     marks(("refusal_prefix",)))


def refusal_prefix_notes(r: dict[str, Any]) -> list[str]:
    return [f"Refusal prefixes: the judge read {'; '.join(r.get('judged') or []) or '?'}."]


def refusal_prefix_extras(r: dict[str, Any]) -> dict[str, Any]:
    """The plain base and aligned models' harmful rates, at the top of the summary."""
    return {"base": {"harmful_rate": r["base_harmful_rate"]},
            "aligned": {"harmful_rate": r["aligned_harmful_rate"]}}


# -- prefill ----------------------------------------------------------------------------

def prefill_rows(p: dict[str, Any]) -> Rows:
    return [(f"prefill ASR @ k={k}", fmt(v)) for k, v in p["asr_by_k"].items()]


def prefill_plot(p: dict[str, Any], records: list[dict[str, Any]], d: Path) -> Path:
    return plots.plot_prefill({"aligned": p}, d / "prefill.png",
                              marks(("prefill", "asr_by_k")))


def prefill_notes(p: dict[str, Any]) -> list[str]:
    return ["The prefilling attack judges the prefilled tokens plus the continuation."]


# -- decoding ---------------------------------------------------------------------------

def decoding_rows(d: dict[str, Any]) -> Rows:
    return [("decoding: greedy ASR", fmt(d["greedy_asr"])),
            ("decoding: any-config ASR", fmt(d["any_config_asr"])),
            ("decoding: best config", fmt(d["best_config"]))]


def decoding_plot(s: dict[str, Any], records: list[dict[str, Any]], d: Path) -> Path:
    return plots.plot_decoding(s, d / "decoding.png", marks(("decoding",)))


# -- ed ---------------------------------------------------------------------------------

def ed_rows(e: dict[str, Any]) -> Rows:
    rows: Rows = []
    for qs, by in e["harmful_rate"].items():
        rows += [(f"ED ({qs} queries): {m} harmful rate", fmt(v)) for m, v in by.items()]
    for qs, by in (e.get("compliance_rate") or {}).items():  # a refusal judge's
        rows += [(f"ED ({qs} queries): {m} compliance rate (no refusal, not harm)", fmt(v))
                 for m, v in by.items()]
    swept = {a: value(v) for a, v in e["alpha_sweep"].items() if value(v) is not None}
    if swept:
        rows.append(("ED: most harmful α (harmful queries)",
                     max(swept, key=lambda a: swept[a] or 0.0)))
    return rows


def ed_plot(e: dict[str, Any], records: list[dict[str, Any]], d: Path) -> Path:
    return plots.plot_ed(e, d / "emulated_disalignment.png")


def ed_notes(e: dict[str, Any]) -> list[str]:
    lines = [f"Emulated disalignment: harmful rates over {e['samples']} sampled outputs per "
             f"query and method ({json.dumps(e['sampling'])}), at α = {e['alpha']} unless "
             "swept."]
    if e.get("compliance_rate"):
        lines += ["", "On safe queries the judge reads refusals only: an answer without a "
                  "refusal phrase is counted as compliance (the compliance rate), not as "
                  "harm."]
    return lines


# -- gcg, gcg_transfer ------------------------------------------------------------------

def gcg_rows(g: dict[str, Any]) -> Rows:
    rows = [("GCG ASR", fmt(g["asr"])), ("GCG target reached", fmt(g["target_hit_rate"])),
            ("GCG mean steps to target", fmt(g["mean_steps_to_success"]))]
    for split, part in ((s, g["universal"][s]) for s in ("train", "heldout")
                        if "universal" in g and g["universal"][s]["n_prompts"]):
        rows += [(f"GCG universal suffix, {split} prompts: ASR", fmt(part["asr"])),
                 (f"GCG universal suffix, {split} prompts: mean target loss (initial)",
                  f"{part['mean_loss']:.3f} ({part['mean_initial_loss']:.3f})")]
    return rows


def gcg_plot(g: dict[str, Any], records: list[dict[str, Any]], d: Path) -> Path:
    return plots.plot_gcg(g, records, d / "gcg_loss.png", marks(("gcg",)))


def gcg_transfer_rows(t: dict[str, Any]) -> Rows:
    return [("GCG transfer: ASR on this model", fmt(t["asr"])),
            ("GCG transfer: ASR in the source run", fmt(t["source_asr"]))]
