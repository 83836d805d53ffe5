"""The decoding engine against ``transformers`` ``model.generate`` on the same prompts.

A random Llama (default ~45 M parameters, vocabulary 32,000), a batch of left-padded
prompts of mixed lengths, greedy and sampled (temperature 1, no top-k, no top-p) decoding.
Stop ids are chosen so that rows finish at different steps (``--stop-share``: the share
of the vocabulary that ends a row; 0 means every row runs to ``--max-new-tokens``).
Both sides stop at the same ids; ``generate`` keeps finished rows in the batch (padding
them) while the engine drops them, so the engine should be at least as fast with no early
stops and faster when rows finish early. Tokens/s counts each row's tokens up to its stop.

    python benchmarks/bench_engine.py                       # CPU, ~45 M parameters
    python benchmarks/bench_engine.py --device cuda --hidden 2048 --layers 16 --batch 64
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

import torch


def _model(args: argparse.Namespace) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden,
                      intermediate_size=int(args.hidden * 2.6875), num_hidden_layers=args.layers,
                      num_attention_heads=max(1, args.hidden // 64),
                      num_key_value_heads=max(1, args.hidden // 256),
                      max_position_embeddings=1024, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).to(args.device, dtype=getattr(torch, args.dtype)).eval()
    model.generation_config.pad_token_id = 0
    return model


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _hf(model: Any, prompts: list[list[int]], stops: list[int], sample: bool,
        args: argparse.Namespace) -> tuple[float, int]:
    from aligndepth.prompts import left_pad

    ids, mask = left_pad(prompts, 0)
    ids, mask = ids.to(args.device), mask.to(args.device)
    kw: dict[str, Any] = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} \
        if sample else {"do_sample": False}
    _sync(args.device)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, max_new_tokens=args.max_new_tokens,
                             eos_token_id=stops or None, pad_token_id=0, min_new_tokens=0,
                             **kw)
    _sync(args.device)
    seconds = time.perf_counter() - start
    tokens = 0
    for row in out[:, ids.shape[1]:].tolist():
        cut = next((i for i, t in enumerate(row) if t in set(stops)), len(row))
        tokens += cut
    return seconds, tokens


def _engine(model: Any, prompts: list[list[int]], stops: list[int], sample: bool,
            args: argparse.Namespace) -> tuple[float, int]:
    from aligndepth.engine import GREEDY, SamplingParams, generate

    params = SamplingParams(1.0) if sample else GREEDY
    _sync(args.device)
    start = time.perf_counter()
    out = generate(model, prompts, params, max_new_tokens=args.max_new_tokens, stop=stops,
                   pad_id=0, batch_size=len(prompts), seed=1)
    _sync(args.device)
    return time.perf_counter() - start, sum(len(c.ids) for c in out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--stop-share", type=float, default=0.03)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = _model(args)
    n_params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, args.vocab, (8 + (i * 7) % 40,), generator=gen).tolist()
               for i in range(args.batch)]
    n_stop = int(args.stop_share * args.vocab)
    stops = torch.randperm(args.vocab - 3, generator=gen)[:n_stop].add(3).tolist()
    print(f"engine vs generate: random Llama {n_params / 1e6:.0f} M parameters (hidden "
          f"{args.hidden}, {args.layers} layers, vocab {args.vocab}), batch {args.batch}, "
          f"{args.max_new_tokens} new tokens, device {args.device} {args.dtype}, "
          f"{platform.machine()}, torch threads {torch.get_num_threads()}")
    print("| decoding | stop share | engine tok/s | generate tok/s | ratio | tokens "
          "engine / generate |")
    print("|---|---|---|---|---|---|")
    for sample in (False, True):
        for stop_set in ([], stops):
            _engine(model, prompts[:2], stop_set, sample, args)  # warm-up
            best: dict[str, tuple[float, int]] = {}
            for _ in range(args.repeats):  # interleaved, best of n
                for name, fn in (("engine", _engine), ("generate", _hf)):
                    seconds, tokens = fn(model, prompts, stop_set, sample, args)
                    rate = tokens / seconds
                    if name not in best or rate > best[name][1] / best[name][0]:
                        best[name] = (seconds, tokens)
            e, g = best["engine"], best["generate"]
            er, gr = e[1] / e[0], g[1] / g[0]
            share = args.stop_share if stop_set else 0.0
            print(f"| {'sampled' if sample else 'greedy'} | {share:.2f} | {er:,.0f} | "
                  f"{gr:,.0f} | {er / gr:.2f}x | {e[1]} / {g[1]} |", flush=True)


if __name__ == "__main__":
    main()
