"""KL profile on the organism: batched (padding masked) vs one example at a time.

Prints a table; the ratio (batched / loop wall time) is what to compare across machines.
Usage: python benchmarks/bench_kl.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from aligndepth.analysis.kl import response_kl
from aligndepth.organism.build import load_organism_pair
from aligndepth.organism.datasets import harmful_pairs
from aligndepth.organism.world import World
from aligndepth.prompts import pad_token_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pair = load_organism_pair(show_progress=False)
    root = pair.base.source.rsplit("/", 1)[0]
    world = World.load(__import__("pathlib").Path(root) / "world.json")
    tok = pair.tokenizer
    pairs = harmful_pairs(world)
    prompts = [pair.aligned_format.encode(tok, p.instruction) for p in pairs]
    responses = [tok(p.harmful_response, add_special_tokens=False).input_ids for p in pairs]
    pad = pad_token_id(tok)

    def batched() -> list[list[float]]:
        return response_kl(pair.aligned.model, pair.base.model, prompts, responses, pad, 64)

    def loop() -> list[list[float]]:
        return [response_kl(pair.aligned.model, pair.base.model, [p], [r], pad)[0]
                for p, r in zip(prompts, responses)]

    a, b = batched(), loop()  # warm-up, and check they agree
    diff = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    times = {}
    for name, fn in (("batched", batched), ("loop", loop)):
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        times[name] = best
    n_tok = sum(map(len, responses))
    print(f"KL profile, organism, {len(pairs)} harmful pairs, {n_tok} response tokens, "
          f"{platform.processor() or platform.machine()}, torch threads "
          f"{torch.get_num_threads()}")
    print(f"{'method':<10}{'seconds':>10}{'tokens/s':>12}")
    for name, sec in times.items():
        print(f"{name:<10}{sec:>10.3f}{n_tok / sec:>12.0f}")
    print(f"ratio batched/loop: {times['batched'] / times['loop']:.3f}   "
          f"max |difference|: {diff:.2e}")


if __name__ == "__main__":
    main()
