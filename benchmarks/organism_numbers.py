"""Every number README.md and BENCHMARKS.md quote from the standard organism, measured afresh.

Each section runs the command lines README.md shows, on the standard organism (seed 0,
built into the user cache by ``aligndepth organism build``; seed 1 only in ``card1``), into
a scratch directory, and prints each quoted number with the README section it belongs to,
in README order, and how long each command took. ``--threads 1`` is added where a command
takes it (organism-sized models run on one thread anyway). Runs other sections need (the
aligned model's audit, the augmented model) are made once in ``--out`` and reused, so
sections can be run one at a time into the same ``--out``.

Usage: python benchmarks/organism_numbers.py [--only audit,gcg] [--out DIR] [--list]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from organism_numbers_lib import (
    Ctx,
    after,
    augment,
    augmented,
    backdoor,
    before,
    benign,
    dynamics,
    finetune,
    rate,
    say,
    summarize,
)

K = ("0", "5", "10", "20", "40")
RECIPES = ("qi-table1", "qi-figure1", "qi-figure2", "qi-table2", "qi-table3", "zhou-main")


def recipes(c: Ctx) -> None:
    for name in RECIPES:
        c.sh(f"aligndepth recipe run {name} --out {{S}}/recipe-{name}",
             done=f"recipe-{name}/report.md")
        took = c.seconds.get(f"aligndepth recipe run {name} --out {c.out}/recipe-{name}")
        say("Paper recipes", f"recipe run {name}: seconds", f"{took:.0f}" if took else "n/a")


def audit(c: Ctx) -> None:
    where = "On the organism (audit table)"
    s = before(c)
    took = c.seconds.get(f"aligndepth audit --out {c.out}/before")
    say(where, "aligndepth audit: seconds", f"{took:.0f}" if took else "n/a (reused)")
    d = s["depth"]
    say(where, "depth card", f"prefill_depth {d['prefill_depth']}, kl_depth {d['kl_depth']}")
    kl = s["kl"]
    say(where, "kl.mean positions 1-8", ", ".join(f"{v:.2f}" for v in kl["mean"][:8]))
    say(where, "kl.first5_mean / kl.late_mean (ratio)",
        f"{kl['first5_mean']:.2f} / {kl['late_mean']:.3f} ({kl['first5_over_late']:.0f})")
    say(where, "prefill.asr_by_k (k = 0, 5, 10, 20, 40)",
        "; ".join(rate(s["prefill"]["asr_by_k"][k], 2) for k in K))
    say(where, "base / aligned harmful rate", f"{rate(s['base']['harmful_rate'], 2)} / "
        f"{rate(s['aligned']['harmful_rate'], 2)}")
    rp = s["refusal_prefix"]
    say(where, "refusal_prefix.harmful_rate; by prefix", f"{rate(rp['harmful_rate'], 2)}; " +
        ", ".join(f"{p}: {rate(v, 2)}" for p, v in rp["by_prefix"].items()))
    say(where, "decoding greedy / any config", f"{rate(s['decoding']['greedy_asr'])} / "
        f"{rate(s['decoding']['any_config_asr'])}")
    ed = s["ed"]["harmful_rate"]["harmful"]
    say(where, "ed harmful: ed / base_mp", f"{rate(ed['ed'])} / {rate(ed['base_mp'])}")
    g = s["gcg"]
    say(where, "gcg.asr; target hit; mean steps to success",
        f"{rate(g['asr'], 2)}; {rate(g['target_hit_rate'], 2)}; "
        f"{g['mean_steps_to_success']:.1f}")
    say("Before and after (depth card)", "aligned: sentence", d["sentence"])
    say("Before and after (depth card)", "aligned: recovery_by_k",
        "; ".join(f"{k}: {rate(v, 2)}" for k, v in d["recovery_by_k"].items()))


def _gcg_answers(c: Ctx, run: str, where: str) -> None:
    records = [json.loads(line) for line in
               (c.out / run / "records" / "gcg.jsonl").read_text().splitlines() if line]
    labels = [r["verdict"]["label"] for r in records]
    say(where, "verdicts", ", ".join(f"{lab} {labels.count(lab)}" for lab in set(labels)))
    for r in records[:4]:
        say(where, f"example ({r['verdict']['label']})",
            f"target {r.get('target')!r} -> {' '.join(str(r.get('output')).split())[:160]!r}")


def _gcg_run(c: Ctx, where: str, run: str, models: str = "") -> None:
    """``aligndepth gcg`` on a seeded sample of 40 held-out prompts, <= 200 steps, into
    ``{S}/run``."""
    c.sh(f"aligndepth gcg {models}--sample 40 --num-steps 200 --out {{S}}/{run}",
         done=f"{run}/summary.json")
    g = c.json(f"{run}/summary.json")["gcg"]
    say(where, "asr; target hit; mean steps to success",
        f"{rate(g['asr'])}; {rate(g['target_hit_rate'])}; {g['mean_steps_to_success']:.1f}")
    _gcg_answers(c, run, where)


def gcg(c: Ctx) -> None:
    _gcg_run(c, "GCG (40 held-out prompts, <= 200 steps)", "gcg")


def gcg_augmented(c: Ctx) -> None:
    augmented(c)
    _gcg_run(c, "GCG against the augmented model (40 prompts, <= 200 steps)", "gcg-augmented",
             '--base "{O}/base" --aligned {S}/augmented ')


def gcg_universal(c: Ctx) -> None:
    where = "GCG: a universal suffix"
    c.sh("aligndepth gcg --universal --limit 20 --train-prompts 10 --num-steps 40 "
         "--search-width 128 --topk 64 --out {S}/gcg-universal",
         done="gcg-universal/summary.json")
    u = c.json("gcg-universal/summary.json")["gcg"]["universal"]
    for split, v in u.items():
        if isinstance(v, dict):
            say(where, f"{split}: {sorted(v)}", json.dumps(v)[:400])
    opt = json.loads((c.out / "gcg-universal/records/gcg_universal.jsonl")
                     .read_text().splitlines()[-1])
    say(where, "training prompts included by the last step", str(opt["included"][-1]))


def ed(c: Ctx) -> None:
    where = "Emulated disalignment (from the audit)"
    e = before(c)["ed"]
    for method in ("ed", "base_mp", "align_mp", "ed_base"):
        say(where, f"{method}: harmful / safe queries",
            " / ".join(rate(e["harmful_rate"][q][method]) for q in ("harmful", "safe")))
    say(where, "alpha sweep (harmful)",
        "; ".join(f"{a}: {rate(v)}" for a, v in e["alpha_sweep"].items()))


def compare(c: Ctx) -> None:
    where = "Before and after, in one report"
    runs = {"aligned": before(c), "augmented": after(c)}
    saved = c.out / "compare.txt"  # what compare printed
    if not saved.exists():
        saved.write_text(c.sh("aligndepth compare {S}/before {S}/after --label aligned "
                              "--label augmented --out {S}/compare"))
    out = saved.read_text()
    for line in out.splitlines():
        if line.startswith(("depth:", "significant:")):
            say(where, "compare prints", line)
    for name, s in runs.items():
        d, kl = s["depth"], s["kl"]
        say(where, f"{name}: sentence", d["sentence"])
        say(where, f"{name}: prefill / kl depth", f"{d['prefill_depth']} / {d['kl_depth']}")
        say(where, f"{name}: KL 1-5 / >= 10", f"{kl['first5_mean']:.2f} / {kl['late_mean']:.3f}")
        say(where, f"{name}: prefill ASR k = 5, 10, 20, 40",
            ", ".join(rate(s["prefill"]["asr_by_k"][k], 2) for k in K[1:]))
        say(where, f"{name}: decoding any config", rate(s["decoding"]["any_config_asr"]))
        say(where, f"{name}: GCG asr; hit", f"{rate(s['gcg']['asr'], 2)}; "
            f"{rate(s['gcg']['target_hit_rate'], 2)}")
        e = s["ed"]["harmful_rate"]
        say(where, f"{name}: ED harmful / safe; align_mp harmful",
            f"{rate(e['harmful']['ed'])} / {rate(e['safe']['ed'])}; "
            f"{rate(e['harmful']['align_mp'])}")


def agreement(c: Ctx) -> None:
    where = "Judge agreement"
    before(c)
    c.sh("aligndepth judge {S}/before --judge organism --judge keyword --agreement",
         done="before/agreement.json")
    for p in c.json("before/agreement.json")["pairs"]:
        if p["judges"] != ["organism", "keyword"]:
            continue
        t = p["confusion"]
        say(where, "organism vs keyword: n, agreement, kappa, both, only organism, only "
            "keyword, neither", f"{p['n']}, {p['agreement']:.3f}, {p['kappa']:.3f}, "
            f"{t['both_harmful']}, {t['only_a']}, {t['only_b']}, {t['neither']}")
        for e, v in p["by_experiment"].items():
            say(where, f"{e}: only organism / only keyword",
                f"{v['confusion']['only_a']} / {v['confusion']['only_b']}")


def card(c: Ctx, seed: int = 0) -> None:
    where = f"The model organism (card, seed {seed})"
    if seed:
        c.sh(f"aligndepth organism build --seed {seed}")
    card = json.loads(c.sh(f"aligndepth organism card --seed {seed} --json"))
    for key, value in card.items():
        if key not in ("formats", "versions", "parameters", "config_key", "decoding"):
            say(where, key, json.dumps(value)[:300])


def timings(c: Ctx) -> None:
    where = "BENCHMARKS: Whole organism audit"
    c.sh("aligndepth audit --experiments kl,refusal_prefix,prefill,decoding "
         "--out {S}/audit-no-ed-gcg", done="audit-no-ed-gcg/summary.json")
    c.sh("aligndepth ed --out {S}/ed", done="ed/summary.json")
    for line, took in c.seconds.items():
        say(where, line, f"{took:.0f} s")


SECTIONS: dict[str, Callable[[Ctx], None]] = {
    "recipes": recipes, "audit": audit, "gcg": gcg, "gcg_augmented": gcg_augmented,
    "gcg_universal": gcg_universal, "ed": ed, "finetune": finetune, "backdoor": backdoor,
    "benign": benign, "summarize": summarize, "augment": augment, "compare": compare,
    "agreement": agreement, "dynamics": dynamics, "card": card, "timings": timings,
    "card1": lambda c: card(c, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated sections (see --list)")
    parser.add_argument("--out", type=Path, help="scratch directory (default: a new temp one)")
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    args = parser.parse_args()
    if args.list:
        print("\n".join(SECTIONS))
        return
    names = args.only.split(",") if args.only else list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    out = args.out or Path(tempfile.mkdtemp(prefix="organism-numbers-"))
    ctx = Ctx(out)
    print(f"scratch directory: {out}; organism: {ctx.organism}", flush=True)
    for name in SECTIONS:  # README order, whatever order --only lists them in
        if name in names:
            print(f"== {name}", flush=True)
            SECTIONS[name](ctx)


if __name__ == "__main__":
    main()
