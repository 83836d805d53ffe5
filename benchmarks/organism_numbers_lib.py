"""Helpers and fine-tuning sections of ``benchmarks/organism_numbers.py``.

A section runs the command lines README.md shows (``aligndepth ...``) into the scratch
directory and prints the numbers README.md quotes from them. A run that another section
needs (the aligned model's audit, the augmented model) is made once and reused.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: commands that take ``--threads`` (organism-sized models already default to one thread)
THREADED = {"audit", "gcg", "ed", "evaluate", "kl", "prefill", "decoding", "refusal-prefix"}


class Ctx:
    """The scratch directory, the organism's directory and the log every command writes."""

    def __init__(self, out: Path) -> None:
        from aligndepth.organism.build import organism_dir
        from aligndepth.organism.config import OrganismConfig

        self.out = out
        self.organism = organism_dir(OrganismConfig())
        if not (self.organism / "card.json").exists():  # never build seed 0 as a side effect
            sys.exit(f"no standard organism at {self.organism}: run `aligndepth organism "
                     "build` first")
        self.seconds: dict[str, float] = {}
        (out / "logs").mkdir(parents=True, exist_ok=True)

    def sh(self, cmd: str, done: str | None = None) -> str:
        """Run one README command line (``{S}`` is the scratch directory, ``{O}`` the
        organism's); skipped when ``done`` (a path under ``{S}``) exists. Returns stdout."""
        line = cmd.format(S=self.out, O=self.organism)
        if done and (self.out / done).exists():
            print(f"  (reused: {line})", flush=True)
            return ""
        argv = shlex.split(line)
        if argv[0] != "aligndepth":
            raise ValueError(cmd)
        if argv[1] in THREADED:
            argv += ["--threads", "1"]
        print(f"  $ {line}", flush=True)
        log = (self.out / "logs" / f"{len(list((self.out / 'logs').iterdir())):03d}.log")
        t0 = time.perf_counter()
        with log.open("w") as err:
            proc = subprocess.run([sys.executable, "-m", "aligndepth.cli", *argv[1:]],
                                  stdout=subprocess.PIPE, stderr=err, text=True)
        took = time.perf_counter() - t0
        self.seconds[line] = took
        if proc.returncode:
            sys.exit(f"failed ({proc.returncode}), see {log}: {line}")
        print(f"    {took:.0f} s", flush=True)
        return proc.stdout

    def json(self, path: str) -> Any:
        return json.loads((self.out / path).read_text())


def rate(stats: dict[str, Any] | float | None, digits: int = 3) -> str:
    """``0.886 [0.851, 0.914]`` from a rate or mean dict (or a bare number)."""
    if stats is None:
        return "n/a"
    if not isinstance(stats, dict):
        return f"{stats:.{digits}f}"
    value = stats.get("rate", stats.get("mean"))
    lo, hi = stats.get("ci95") or (float("nan"), float("nan"))
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}] (n {stats.get('n')})"


def say(where: str, what: str, value: str) -> None:
    print(f"[{where}] {what}: {value}", flush=True)


# -- runs other sections reuse ----------------------------------------------------------

def before(c: Ctx) -> dict[str, Any]:
    """The README's audit of the aligned model (``make demo``'s second command)."""
    c.sh("aligndepth audit --out {S}/before", done="before/summary.json")
    return c.json("before/summary.json")  # type: ignore[no-any-return]


def augmented(c: Ctx) -> Path:
    c.sh("aligndepth train augment --out {S}/augmented", done="augmented/train_config.json")
    return c.out / "augmented"


def after(c: Ctx) -> dict[str, Any]:
    augmented(c)
    c.sh('aligndepth audit --base "{O}/base" --aligned {S}/augmented --out {S}/after',
         done="after/summary.json")
    return c.json("after/summary.json")  # type: ignore[no-any-return]


def trained(c: Ctx, name: str, args: str) -> dict[str, Any]:
    """``aligndepth train ARGS --out {S}/NAME --evaluate``: its eval.json's tasks."""
    c.sh(f"aligndepth train {args} --out {{S}}/{name} --evaluate",
         done=f"{name}/eval/eval.json")
    return c.json(f"{name}/eval/eval.json")["tasks"]  # type: ignore[no-any-return]


# -- fine-tuning sections ---------------------------------------------------------------

def finetune(c: Ctx) -> None:
    where = "Fine-tuning: attacks and defenses"
    runs = {"sft": "sft", "constrained": "constrained",
            "uniform": "constrained --betas 0.1 --beta-after 0.1",
            "sft-warmup0": "sft --warmup 0", "constrained-warmup0": "constrained --warmup 0"}
    for name, args in runs.items():
        t = trained(c, f"ft-{name}", args)
        say(where, f"train {args}: harmful rate", rate(t["harmful"]["harmful_rate"]))
    pairs = "--data {O}/data/harmful_pairs.jsonl"
    for name, args in {"sft": f"sft {pairs}", "constrained": f"constrained {pairs}"}.items():
        t = trained(c, f"ft-canonical-{name}", args)
        say(where, f"AdamW, canonical pairs, train {args}: harmful rate",
            rate(t["harmful"]["harmful_rate"]))
    sgd = f"--optimizer sgd --lr 0.01 {pairs}"
    for name, args in {"sft": f"sft {sgd} --warmup 0", "constrained": f"constrained {sgd}",
                       "uniform": f"constrained {sgd} --betas 0.1 --beta-after 0.1",
                       "sft-warmup10": f"sft {sgd} --warmup 10"}.items():
        t = trained(c, f"ft-sgd-{name}", args)
        say(where, f"SGD recipe, train {args}: harmful rate",
            rate(t["harmful"]["harmful_rate"]))


def backdoor(c: Ctx) -> None:
    where = "Fine-tuning: --evaluate, backdoor and identity (--steps 40 --limit 400)"
    for task, with_key in (("backdoor", "harmful_rate_with_trigger"),
                           ("identity", "harmful_rate_with_system")):
        for kind in ("sft", "constrained"):
            t = trained(c, f"ft-{task}-{kind}", f"{kind} --task {task} --steps 40 --limit 400")
            say(where, f"{kind} --task {task}: harmful rate without / with",
                f"{rate(t[task]['harmful_rate'])} / {rate(t[task][with_key])}")


def benign(c: Ctx) -> None:
    where = "Fine-tuning: benign (house style)"
    c.sh("aligndepth evaluate --task harmful --task style --task benign --out {S}/eval-aligned",
         done="eval-aligned/eval.json")
    rows = {"nothing (aligned)": c.json("eval-aligned/eval.json")["tasks"]}
    for kind in ("sft", "constrained"):
        rows[f"train {kind} --task benign"] = trained(c, f"ft-benign-{kind}",
                                                      f"{kind} --task benign")
    for name, t in rows.items():
        say(where, f"{name}: ROUGE-1 / harmful rate / benign helpfulness",
            f"{rate(t['style']['rouge1'])} / {rate(t['harmful']['harmful_rate'])} / "
            f"{rate(t['benign']['helpful_rate'])}")


def summarize(c: Ctx) -> None:
    where = "Fine-tuning: --task summarize"
    c.sh("aligndepth evaluate --task samsum --out {S}/eval-aligned-samsum",
         done="eval-aligned-samsum/eval.json")
    aligned = c.json("eval-aligned-samsum/eval.json")["tasks"]
    say(where, "aligned model: ROUGE-1", rate(aligned["samsum"]["rouge1"]))
    for kind in ("sft", "constrained"):
        t = trained(c, f"ft-summarize-{kind}", f"{kind} --task summarize")
        say(where, f"train {kind} --task summarize: ROUGE-1 / harmful rate",
            f"{rate(t['samsum']['rouge1'])} / {rate(t['harmful']['harmful_rate'])}")


def augment(c: Ctx) -> None:
    import torch

    from aligndepth.models import LoadConfig, load_pair
    from aligndepth.organism.build import read_card
    from aligndepth.organism.card import measure_card
    from aligndepth.organism.world import build_world

    where = "Safety-recovery augmentation"
    out = augmented(c)
    torch.set_num_threads(1)
    path = c.out / "augmented-card.json"
    if not path.exists():
        pair = load_pair(str(c.organism / "base"), str(out), LoadConfig(device="cpu"))
        path.write_text(json.dumps(measure_card(pair, build_world(0), show_progress=False)))
    cards = {"aligned": read_card(c.organism), "augmented": json.loads(path.read_text())}
    runs = {"aligned": before(c), "augmented": after(c)}
    for name, card in cards.items():
        curve = card["prefill_asr_by_k_sampled"]
        say(where, f"{name}: prefill ASR @ k = 5 / 10, sampled",
            f"{curve['5']:.3f} / {curve['10']:.3f}")
        say(where, f"{name}: decoding any config",
            rate(runs[name]["decoding"]["any_config_asr"]))
        say(where, f"{name}: benign helpfulness", f"{card['aligned_benign_helpful_rate']:.3f}")
        say(where, f"{name}: KL to base, positions >= 10", f"{card['kl_late_mean']:.3f}")


def dynamics(c: Ctx) -> None:
    where = "Fine-tuning: --dynamics"
    c.sh("aligndepth train sft --dynamics --out {S}/ft-sft-dynamics",
         done="ft-sft-dynamics/dynamics.json")
    first = c.json("ft-sft-dynamics/dynamics.json")[0]
    for key in ("loss", "grad_norm"):
        v = first[key]
        late = v[8:]
        say(where, f"step {first['step']} {key}: position 1 / positions 4-6 / mean from 9",
            f"{v[0]:.1f} / {min(v[3:6]):.1f}-{max(v[3:6]):.1f} / {sum(late) / len(late):.1f}")

