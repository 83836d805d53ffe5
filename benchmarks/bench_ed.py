"""Emulated disalignment: lockstep batched decoding vs the naive reference, and vs the two
models decoded alone.

- ``ed``: ``contrastive_generate`` (both caches in lockstep, all queries in one batch).
- ``naive``: ``reference_contrastive_greedy`` (one query at a time, no cache, both full
  sequences recomputed every step), the plain definition.
- ``base alone`` / ``aligned alone``: ``generate`` on each model's own prompts, batched
  the same way; ``ed / (base + aligned)`` is what the combination itself costs.

Every row decodes exactly ``--max-new-tokens`` tokens (no stop tokens), greedy, α = 1.
Usage: python benchmarks/bench_ed.py [--queries 64] [--max-new-tokens 64]
       [--pair organism|random] [--hidden 2048 --layers 16 --vocab 32000] [--device cuda]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

import torch

from aligndepth.engine import (
    GREEDY,
    ContrastRow,
    contrastive_generate,
    generate,
    reference_contrastive_greedy,
)


def _organism(n: int) -> tuple[Any, Any, list[list[int]], list[list[int]], str]:
    from aligndepth.data.schemas import PromptRecord, read_jsonl
    from aligndepth.organism.build import build_organism, load_organism_pair
    from aligndepth.organism.world import MALICIOUS_SYSTEM

    root = build_organism(show_progress=False)
    pair = load_organism_pair(show_progress=False)
    tok = pair.tokenizer
    records = read_jsonl(root / "data" / "harmful_prompts.jsonl", PromptRecord)[:n]
    bfmt = pair.base_format.with_system(MALICIOUS_SYSTEM)
    base = [bfmt.encode(tok, r.instruction) for r in records]
    aligned = [pair.aligned_format.encode(tok, r.instruction) for r in records]
    return pair.base.model, pair.aligned.model, base, aligned, "organism (0.93 M params)"


def _random(n: int, hidden: int, layers: int, vocab: int, device: str
            ) -> tuple[Any, Any, list[list[int]], list[list[int]], str]:
    from transformers import LlamaConfig, LlamaForCausalLM

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                      num_hidden_layers=layers, num_attention_heads=max(1, hidden // 128),
                      num_key_value_heads=max(1, hidden // 128), max_position_embeddings=4096)
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        models.append(LlamaForCausalLM(cfg).to(device=device, dtype=dtype).eval())
    gen = torch.Generator().manual_seed(0)
    base = [torch.randint(3, vocab, (60 + i % 40,), generator=gen).tolist() for i in range(n)]
    aligned = [torch.randint(3, vocab, (30 + i % 25,), generator=gen).tolist() for i in range(n)]
    params = sum(p.numel() for p in models[0].parameters()) / 1e6
    return models[0], models[1], base, aligned, f"random Llama ({params:.0f} M params, {dtype})"


def _timed(fn: Callable[[], Any], device: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--pair", choices=("organism", "random"), default="organism")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--naive-queries", type=int, default=None,
                        help="time the naive reference on this many queries (default: all)")
    args = parser.parse_args()
    if args.pair == "organism":
        base, aligned, bp, ap, what = _organism(args.queries)
        base, aligned = base.to(args.device), aligned.to(args.device)
    else:
        base, aligned, bp, ap, what = _random(args.queries, args.hidden, args.layers,
                                              args.vocab, args.device)
    n, new = len(bp), args.max_new_tokens
    kw: dict[str, Any] = dict(max_new_tokens=new, stop=[], pad_id=0, batch_size=n)

    def ed() -> Any:
        return contrastive_generate(base, aligned, bp, ap, [ContrastRow(1.0)], **kw)

    def base_alone() -> Any:
        return generate(base, bp, GREEDY, **kw)

    def aligned_alone() -> Any:
        return generate(aligned, ap, GREEDY, **kw)

    n_naive = args.naive_queries or n

    def naive() -> Any:
        return [reference_contrastive_greedy(base, aligned, bp[i], ap[i], 1.0,
                                             max_new_tokens=new, stop_ids=[])
                for i in range(n_naive)]

    ed()  # warm-up
    seconds = {"ed": _timed(ed, args.device, 3), "base alone": _timed(base_alone, args.device, 3),
               "aligned alone": _timed(aligned_alone, args.device, 3),
               "naive": _timed(naive, args.device, 1)}
    tokens = {name: n * new for name in seconds}
    tokens["naive"] = n_naive * new
    print(f"ED decoding, {what}, {n} queries x {new} new tokens, device {args.device}, "
          f"{platform.machine()}, torch threads {torch.get_num_threads()}")
    print(f"{'method':<15}{'seconds':>10}{'tokens':>10}{'tokens/s':>12}")
    for name, sec in seconds.items():
        print(f"{name:<15}{sec:>10.2f}{tokens[name]:>10}{tokens[name] / sec:>12.0f}")
    speedup = (tokens["ed"] / seconds["ed"]) / (tokens["naive"] / seconds["naive"])
    overhead = seconds["ed"] / (seconds["base alone"] + seconds["aligned alone"])
    print(f"ED tokens/s over naive reference: {speedup:.1f}x (target >= 10x)")
    print(f"ED time / (base alone + aligned alone): {overhead:.3f} (target <= 1.25)")


if __name__ == "__main__":
    main()
