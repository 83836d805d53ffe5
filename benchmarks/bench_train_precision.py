"""Does bfloat16 fine-tuning keep the updates? Each precision against float32.

A random Llama of ~23 M parameters (hidden 384, 6 layers, vocabulary 32,000), its
weights rounded to bfloat16 numbers so that every setting starts from the same weights,
trains 20 AdamW steps at learning rate 2e-5 (the real-model recipe: 10 warm-up steps,
then constant) with the ``sft`` loss on the same random token sequences, through
``aligndepth.training.trainer.train``, under:

- ``float32``: the reference;
- ``float32 master + bf16 autocast`` (``--mixed-precision bf16``);
- ``pure bfloat16`` (``--pure-bf16``): plain AdamW on bfloat16 weights and state;
- ``compensated bfloat16``: the default on a bfloat16 device (``--dtype auto`` on such a
  GPU; ``--dtype bfloat16`` on the CPU): torch-optimi's AdamW with Kahan summation, saved
  as float32 weight + compensation.

For each: the cosine of its weight change (saved model minus start) with float32's, the
share of the weights float32 changes that it changes too, the length of its change over
float32's, seconds per step, and the training state's memory at the optimizer step
(weights + gradients + optimizer state, counted tensor by tensor: what grows with the
model; activations come on top), in MiB, bytes per parameter and what that makes for 7 B
parameters. On a GPU, also ``torch.cuda.max_memory_allocated`` while training.

Usage: python benchmarks/bench_train_precision.py [--device cpu|cuda] [--steps 20]
       [--lr 2e-5] [--warmup 10] [--batch-size 2] [--length 128] [--hidden 384 --layers 6]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from typing import Any

import torch
from bench_train_memory import _examples, _model, _TokenIdsOnly

from aligndepth.training.precision import update_agreement
from aligndepth.training.trainer import TrainConfig, train

#: setting -> TrainConfig fields (the compensated one's dtype is chosen per device)
SETTINGS: dict[str, dict[str, Any]] = {
    "float32": {"dtype": "float32"},
    "float32 master + bf16 autocast": {"mixed_precision": "bf16"},
    "pure bfloat16 (--pure-bf16)": {"dtype": "bfloat16", "pure_bf16": True},
    "compensated bfloat16 (default)": {},
}


def _state_bytes(model: Any, optimizer: Any) -> int:
    """Bytes of the weights, their gradients and the optimizer's state tensors."""
    inner = getattr(optimizer, "optimizer", optimizer)
    total = 0
    for p in model.parameters():
        total += p.numel() * p.element_size()
        if p.grad is not None:
            total += p.grad.numel() * p.grad.element_size()
    for state in inner.state.values():
        total += sum(t.numel() * t.element_size() for t in state.values()
                     if isinstance(t, torch.Tensor) and t.dim() > 0)
    return total


def _measuring_trainer(peak: dict[str, int]) -> Any:
    """Makes every Trainer record the training state's size at each optimizer step."""
    import transformers
    from transformers import TrainerCallback

    class StateSize(TrainerCallback):  # type: ignore[misc]
        def on_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None,
                              optimizer: Any = None, **kwargs: Any) -> None:
            peak["bytes"] = max(peak.get("bytes", 0), _state_bytes(model, optimizer))

    original = transformers.Trainer.__init__

    def with_callback(self: Any, *a: Any, **k: Any) -> None:
        original(self, *a, **k)
        self.add_callback(StateSize())

    transformers.Trainer.__init__ = with_callback  # type: ignore[method-assign]
    return original


def _run(name: str, start: dict[str, torch.Tensor], args: argparse.Namespace,
         examples: list[Any]) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    fields = dict(SETTINGS[name])
    if not fields:  # the default: auto on a GPU, bfloat16 asked for explicitly on the CPU
        fields["dtype"] = "auto" if args.device.startswith("cuda") else "bfloat16"
    model = _model(args)
    model.load_state_dict(start)
    config = TrainConfig(loss="sft", max_steps=args.steps, batch_size=args.batch_size,
                         learning_rate=args.lr, warmup_steps=args.warmup, seed=0, **fields)
    peak: dict[str, int] = {}
    original = _measuring_trainer(peak)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    try:
        with tempfile.TemporaryDirectory() as out:
            result = train(model, _TokenIdsOnly(), examples, config, f"{out}/model",
                           show_progress=False, pad_id=0)
            del model
            trained = AutoModelForCausalLM.from_pretrained(f"{out}/model").state_dict()
    finally:
        import transformers

        transformers.Trainer.__init__ = original  # type: ignore[method-assign]
    runtime = next(h["train_runtime"] for h in result["log"] if "train_runtime" in h)
    return {"state": trained, "precision": result["precision"], "bytes": peak["bytes"],
            "step": runtime / args.steps,
            "gpu_peak": (torch.cuda.max_memory_allocated() - before) if cuda else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(min(torch.get_num_threads(), 2))
    model = _model(args)
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        for p in model.parameters():  # a start every setting represents exactly
            p.copy_(p.to(torch.bfloat16).float())
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    del model
    examples = _examples(args.batch_size * args.steps, args.length)
    results = {name: _run(name, start, args, examples) for name in SETTINGS}
    reference = results["float32"]["state"]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"CPU {platform.machine()}, torch threads {torch.get_num_threads()}"
    print(f"random Llama {params / 1e6:.1f} M parameters, {args.steps} AdamW steps at lr "
          f"{args.lr:g} ({args.warmup} warm-up), batch {args.batch_size} x {args.length} "
          f"tokens, {device}")
    gpu = args.device.startswith("cuda")
    print(f"{'setting':<32} {'cosine':>7} {'changed':>8} {'length':>7} {'s/step':>7} "
          f"{'state MiB':>10} {'B/param':>8} {'7B GB':>6}" + (f" {'GPU MiB':>8}" if gpu else ""))
    for name, r in results.items():
        agree = update_agreement(start, r["state"], reference)
        per_param = r["bytes"] / params
        print(f"{name:<32} {agree['cosine']:7.4f} {agree['changed_of_reference']:8.2%} "
              f"{agree['norm_ratio']:7.3f} {r['step']:7.3f} {r['bytes'] / 2**20:10.0f} "
              f"{per_param:8.1f} {per_param * 7:6.0f}"
              + (f" {r['gpu_peak'] / 2**20:8.0f}" if gpu else ""))
    for name, r in results.items():
        print(f"  {name}: {r['precision']}")
    print("cosine: of the weight change with float32's; changed: of the weights float32 "
          "changes, the share this setting changes; length: its change's norm over "
          "float32's; state: weights + gradients + optimizer state at the optimizer step")


if __name__ == "__main__":
    main()
