"""Step time and peak memory of real-model training settings, side by side.

A random Llama of ~60 M parameters (hidden 640, 8 layers, vocabulary 32,000) trains the
``constrained`` loss on random token sequences under each setting: float32, bfloat16,
bfloat16 + gradient checkpointing, and float32 + gradient checkpointing. Each setting
runs in a fresh process (allocator caches never carry over). Reports seconds per step
(median after the first), the one-off reference pass (the constrained loss's
log-probs of the initial model, computed before training) in steps' worth, and peak
memory while training: ``torch.cuda.max_memory_allocated`` on a GPU, else the growth of
the process's peak resident set (Linux ``VmHWM``) over its size before training.

Usage: python benchmarks/bench_train_memory.py [--device cpu|cuda] [--steps 4]
       [--batch-size 4] [--length 256] [--hidden 640 --layers 8]
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
from typing import Any

import torch
from bench_train import PeakMemory  # the same peak-memory reading

from aligndepth.training.data import Example
from aligndepth.training.trainer import TrainConfig, train

SETTINGS = {"float32": ("float32", False), "bfloat16": ("bfloat16", False),
            "bfloat16 + ckpt": ("bfloat16", True), "float32 + ckpt": ("float32", True)}


def _model(args: argparse.Namespace) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=args.hidden, num_hidden_layers=args.layers,
                      num_attention_heads=args.hidden // 64, num_key_value_heads=args.hidden // 64,
                      intermediate_size=int(args.hidden * 2.7), max_position_embeddings=2048,
                      tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).to(args.device)


def _examples(n: int, length: int) -> list[Example]:
    gen = torch.Generator().manual_seed(1)
    prompt = length // 4
    return [Example(torch.randint(3, 32000, (length,), generator=gen).tolist(),
                    [0] * prompt + [1] * (length - prompt)) for _ in range(n)]


class _TokenIdsOnly:
    """The data are token ids already; the trained model is saved without a tokenizer."""

    def save_pretrained(self, path: str) -> None:
        pass


class _StepClock:
    """Trainer callback: wall time of each optimiser step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t = 0.0

    def callback(self) -> Any:
        from transformers import TrainerCallback

        clock = self

        class Clock(TrainerCallback):  # type: ignore[misc]
            def on_step_begin(self, *a: Any, **k: Any) -> None:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                clock._t = time.perf_counter()

            def on_step_end(self, *a: Any, **k: Any) -> None:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                clock.times.append(time.perf_counter() - clock._t)

        return Clock()


def _child(args: argparse.Namespace) -> dict[str, Any]:
    import transformers

    dtype, ckpt = SETTINGS[args.child]
    model = _model(args)
    params = sum(p.numel() for p in model.parameters())
    examples = _examples(args.batch_size * args.steps, args.length)
    config = TrainConfig(loss="constrained", max_steps=args.steps, batch_size=args.batch_size,
                         learning_rate=2e-5, warmup_steps=0, dtype=dtype,
                         gradient_checkpointing=ckpt)
    clock = _StepClock()
    original = transformers.Trainer.__init__

    def with_clock(self: Any, *a: Any, **k: Any) -> None:
        original(self, *a, **k)
        self.add_callback(clock.callback())

    transformers.Trainer.__init__ = with_clock  # type: ignore[method-assign]
    memory = PeakMemory(args.device)
    with tempfile.TemporaryDirectory() as out:
        result = train(model, _TokenIdsOnly(), examples, config, f"{out}/model",
                       show_progress=False, pad_id=0)
    peak = memory.grown()
    steps = clock.times[1:] or clock.times
    return {"params": params, "step": statistics.median(steps),
            "reference": result["reference_seconds"], "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=640)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args)))
        return
    results = {}
    for name in SETTINGS:
        cmd = [sys.executable, __file__, "--child", name, "--device", args.device,
               "--steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--length", str(args.length), "--hidden", str(args.hidden),
               "--layers", str(args.layers)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    first = results["float32"]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"CPU {platform.machine()}, torch threads {torch.get_num_threads()}"
    print(f"constrained training step, random Llama {first['params'] / 1e6:.0f} M parameters, "
          f"batch {args.batch_size} x {args.length} tokens, {args.steps} steps, {device}; "
          "each setting in a fresh process")
    memory = "GPU allocated" if args.device.startswith("cuda") else "CPU RSS growth"
    print(f"{'setting':<18} {'s/step':>8} {'x fp32':>7} {'peak MiB':>9} {'x fp32':>7} "
          f"{'reference pass':>15}")
    for name, r in results.items():
        print(f"{name:<18} {r['step']:8.3f} {r['step'] / first['step']:7.2f} "
              f"{r['peak_mib']:9.0f} {r['peak_mib'] / max(first['peak_mib'], 1e-9):7.2f} "
              f"{r['reference']:8.2f} s = {r['reference'] / r['step']:.2f} steps")
    print(f"peak memory: {memory} while training (weights, gradients, optimizer state, "
          "activations)")


if __name__ == "__main__":
    main()
