"""Decoding grid on the organism: batched per-row decoding vs the naive loop.

Naive: one ``transformers`` ``generate`` call per configuration per prompt.
Batched: ``generate_shared`` (the prompt encoded once, 49 configurations as rows).
Same prompts, same configurations, same number of samples and tokens budget.
Usage: python benchmarks/bench_decoding_grid.py [--prompts 8] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from aligndepth.attacks.decoding import decoding_grid
from aligndepth.engine import generate_shared, model_stop_ids
from aligndepth.organism.build import load_organism_pair
from aligndepth.prompts import pad_token_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    pair = load_organism_pair(show_progress=False)
    model, tok = pair.aligned.model, pair.tokenizer
    root = pair.aligned.source.rsplit("/", 1)[0]
    from aligndepth.data.schemas import PromptRecord, read_jsonl

    prompts = [r for r in read_jsonl(f"{root}/data/harmful_prompts.jsonl", PromptRecord)
               if r.split == "test"][: args.prompts]
    ids = [pair.aligned_format.encode(tok, p.instruction) for p in prompts]
    grid = [params for _, params in decoding_grid()]
    stops, pad = sorted(model_stop_ids(tok, model)), pad_token_id(tok)

    def batched() -> int:
        n = 0
        for i, prompt in enumerate(ids):
            rows = generate_shared(model, prompt, grid, max_new_tokens=args.max_new_tokens,
                                   stop=stops, pad_id=pad, seed=i, batch_size=len(grid))
            n += sum(len(c.ids) for c in rows)
        return n

    @torch.no_grad()
    def naive() -> int:
        n = 0
        for prompt in ids:
            x = torch.tensor([prompt])
            for params in grid:
                out = model.generate(x, do_sample=True, temperature=params.temperature,
                                     top_k=params.top_k or None, top_p=params.top_p,
                                     max_new_tokens=args.max_new_tokens, eos_token_id=stops,
                                     pad_token_id=pad)
                n += out.shape[1] - x.shape[1]
        return n

    batched()  # warm-up
    results = {}
    for name, fn in (("batched", batched), ("naive", naive)):
        t0 = time.perf_counter()
        tokens = fn()
        results[name] = (time.perf_counter() - t0, tokens)
    print(f"decoding grid, organism aligned model, {len(ids)} prompts x {len(grid)} configs, "
          f"max {args.max_new_tokens} new tokens, {platform.machine()}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'method':<10}{'seconds':>10}{'tokens':>10}")
    for name, (sec, tokens) in results.items():
        print(f"{name:<10}{sec:>10.2f}{tokens:>10}")
    print(f"ratio batched/naive wall time: {results['batched'][0] / results['naive'][0]:.3f}")


if __name__ == "__main__":
    main()
