"""Cost of a ``constrained`` training step vs an ``sft`` step, and of the reference pass.

Same model, data, batch and steps; the only difference is the loss (the constrained loss
reads per-token reference log-probs computed once before training). Each measurement
runs in a fresh process, so allocator caches never carry over. Reports seconds per step
(best of ``--repeats``), the one-off reference pass, and peak memory of training:
on a GPU ``torch.cuda.max_memory_allocated``; on CPU the growth of the process's peak
resident set (Linux ``VmHWM``, reset just before training) over its size then.

Usage: python benchmarks/bench_train.py [--steps 30] [--batch-size 10] [--device cpu]
       [--model DIR] [--lora]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from aligndepth.data.schemas import HarmfulPair, InstructionPair, read_jsonl
from aligndepth.models import LoadConfig, load_model
from aligndepth.organism.build import build_organism
from aligndepth.prompts import PromptFormat
from aligndepth.training.data import sft_examples
from aligndepth.training.trainer import LoraSettings, TrainConfig, train

STATUS = Path("/proc/self/status")


def _rss_mib(field: str) -> float | None:
    """``VmRSS`` or ``VmHWM`` (peak) of this process in MiB; None off Linux."""
    if not STATUS.is_file():
        return None
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory growth (MiB) from construction to :meth:`grown`: the CUDA allocator's
    peak on a GPU, else the process's peak resident set (Linux)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before: float | None = torch.cuda.memory_allocated() / 2**20
        else:
            self.before = _rss_mib("VmRSS") if _reset_peak_rss() else None

    def grown(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**20 - (self.before or 0.0)
        return (_rss_mib("VmHWM") or 0.0) - (self.before or 0.0)


def _child(args: argparse.Namespace) -> dict[str, Any]:
    """One training run with ``args.child``'s loss; returns times and peak memory."""
    root = build_organism(show_progress=False)
    pairs = [InstructionPair(p.instruction, p.harmful_response)
             for p in read_jsonl(root / "data" / "harmful_pairs.jsonl", HarmfulPair)
             if p.split == "train"][:100]
    m = load_model(args.model or str(root / "aligned"),
                   LoadConfig(device=args.device, dtype="float32"))
    examples = sft_examples(m.tokenizer, PromptFormat.chat(), pairs)
    config = TrainConfig(loss=args.child, max_steps=args.steps, batch_size=args.batch_size,
                         learning_rate=0.01, optimizer="sgd",
                         lora=LoraSettings() if args.lora else None)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = _rss_mib("VmRSS") if _reset_peak_rss() else None
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        result = train(m.model, m.tokenizer, examples, config, f"{out}/model",
                       show_progress=False)
        total = time.perf_counter() - t0
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20 - before
    else:
        hwm = _rss_mib("VmHWM")
        peak = hwm - before if hwm is not None and before is not None else None
    runtime = next(h["train_runtime"] for h in result["log"] if "train_runtime" in h)
    return {"step": runtime / args.steps, "reference": result["reference_seconds"],
            "total": total, "peak_mib": peak, "memory": "GPU allocated" if cuda else "CPU RSS"}


def _measure(loss: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", loss, "--steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--device", args.device]
    cmd += ["--model", args.model] if args.model else []
    cmd += ["--lora"] if args.lora else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None, help="model directory (default: the "
                        "organism's aligned model); its tokenizer must read the data")
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args)))
        return
    runs: dict[str, list[dict[str, Any]]] = {"sft": [], "constrained": []}
    for _ in range(args.repeats):
        for loss in runs:  # interleaved, so drift in machine load hits both alike
            runs[loss].append(_measure(loss, args))
    print(f"training step cost, {args.model or 'organism aligned model'}"
          f"{' (LoRA)' if args.lora else ''}, 100 examples, batch {args.batch_size}, "
          f"{args.steps} steps, device {args.device}, {platform.machine()}, "
          f"torch threads {torch.get_num_threads()}; each run in a fresh process")
    best, peak = {}, {}
    for loss, rs in runs.items():
        best[loss] = min(rs, key=lambda r: r["step"])
        peaks = [r["peak_mib"] for r in rs if r["peak_mib"] is not None]
        peak[loss] = statistics.median(peaks) if peaks else None
        memory = (f", peak {rs[0]['memory']} +{peak[loss]:.1f} MiB (median)"
                  if peak[loss] is not None else "")
        print(f"{loss:<12} {best[loss]['step'] * 1000:7.1f} ms/step; reference pass "
              f"{best[loss]['reference']:.2f} s{memory}")
    ratio = best["constrained"]["step"] / best["sft"]["step"]
    print(f"constrained / sft time per step: {ratio:.3f} (target <= 1.1)")
    if peak["sft"] and peak["constrained"] is not None:
        print(f"constrained / sft peak memory: {peak['constrained'] / peak['sft']:.3f} "
              f"(target <= 1.1); difference {peak['constrained'] - peak['sft']:+.1f} MiB")


if __name__ == "__main__":
    main()
