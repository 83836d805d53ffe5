"""nanoGCG's side of ``bench_gcg.py --nanogcg``: runs in nanoGCG's own environment
(``benchmarks/requirements-nanogcg.txt``; it pins transformers <= 4.47.1), never imports
aligndepth, and prints one JSON line.

Reads a model directory that ``bench_gcg.py`` wrote (weights, tokenizer, and
``bench.json``: the prompts, targets, initial suffix, allowed token ids and search
settings), attacks each prompt with ``nanogcg.GCG`` under the same search (width, top-k,
swaps, no buffer, the same allowed tokens and start), after one warm-up run, and reports
seconds per step and the growth of the process's peak resident set (Linux ``VmHWM``) or
the CUDA allocator's peak.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from nanogcg import GCGConfig
from nanogcg.gcg import GCG
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast


def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _tokenizer(directory: str) -> Any:
    """The tokenizer aligndepth saved (transformers 5 names its class
    ``TokenizersBackend``, which 4.x lacks: then the fast tokenizer from its files)."""
    try:
        return AutoTokenizer.from_pretrained(directory)
    except ValueError:
        config = json.loads((Path(directory) / "tokenizer_config.json").read_text())
        special = {k: v for k, v in config.items() if k.endswith("_token") and
                   isinstance(v, str)}
        tok = PreTrainedTokenizerFast(tokenizer_file=str(Path(directory) / "tokenizer.json"),
                                      **special)
        template = Path(directory) / "chat_template.jinja"
        tok.chat_template = template.read_text() if template.is_file() else \
            config.get("chat_template")
        return tok


def main(directory: str, device: str) -> None:
    spec = json.loads((Path(directory) / "bench.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(directory, torch_dtype=torch.float32)
    model = model.to(device).eval()
    tok = _tokenizer(directory)
    vocab = model.get_input_embeddings().weight.shape[0]
    allowed = torch.zeros(vocab, dtype=torch.bool)
    allowed[spec["allowed"]] = True
    not_allowed = (~allowed).nonzero()[:, 0].to(device)
    logging.getLogger("nanogcg").setLevel(logging.WARNING)

    def attack(instruction: str, target: str, steps: int) -> None:
        config = GCGConfig(num_steps=steps, optim_str_init=spec["init_suffix"],
                           search_width=spec["width"], batch_size=spec["batch"],
                           topk=spec["topk"], n_replace=1, buffer_size=0, early_stop=False,
                           use_prefix_cache=True, filter_ids=True, seed=0,
                           verbosity="WARNING")
        gcg = GCG(model, tok, config)
        gcg.not_allowed_ids = not_allowed  # the same allowed tokens as aligndepth's
        gcg.run([{"role": "user", "content": instruction + " {optim_str}"}], target)

    prompts = spec["prompts"]
    attack(prompts[0][0], prompts[0][1], 1)  # warm-up
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        _reset_peak()
        before = _rss_mib("VmRSS")
    t0 = time.perf_counter()
    for instruction, target in prompts:
        attack(instruction, target, spec["steps"])
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mib("VmHWM")) - before
    print(json.dumps({"seconds": seconds, "prompt_steps": len(prompts) * spec["steps"],
                      "peak_mib": peak, "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "cpu")
