"""Configuration of an organism build."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

from aligndepth.errors import AlignDepthError

#: Bump when the world, corpus or training recipe changes, so caches are rebuilt.
RECIPE_VERSION = 6


@dataclass(frozen=True)
class FineTuneRecipe:
    """How the organism is fine-tuned by default (``aligndepth train`` on the organism):
    the papers' optimizer, at a learning rate sized to the organism."""

    optimizer: str
    learning_rate: float
    warmup_steps: int
    steps: int


#: The fine-tuning attacks and the constrained defense: AdamW with the papers' 10 warm-up
#: steps (Qi et al. warm the constrained fine-tuning up for 10 steps; without warm-up
#: their defense lets 29.1% through).
FINETUNE_RECIPE = FineTuneRecipe("adamw_torch", 8e-5, warmup_steps=10, steps=20)
#: The second recipe, kept from the first organism: plain SGD on the canonical harmful
#: pairs (``data/harmful_pairs.jsonl``), no warm-up for ``sft``, 10 steps for
#: ``constrained``.
SGD_RECIPE = FineTuneRecipe("sgd", 0.01, warmup_steps=0, steps=20)


@dataclass(frozen=True)
class OrganismConfig:
    """Everything that determines an organism; the cache key is its hash.

    The defaults build the standard organism (~1 M parameters) in a few minutes on two
    CPU cores. ``OrganismConfig.tiny()`` builds a smaller, weaker one in seconds for tests.
    """

    seed: int = 0
    # model (Llama architecture)
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 256
    # base pretraining
    pretrain_docs: int = 28000
    block_size: int = 256
    pretrain_batch: int = 32
    pretrain_lr: float = 3e-3
    # alignment SFT
    sft_epochs: int = 3
    sft_batch: int = 32
    sft_lr: float = 1e-3
    sft_replay_docs: int = 4000  # non-chat pretraining text replayed during SFT
    sft_replay_batch: int = 8  # replayed blocks mixed into every SFT step
    sft_replay_weight: float = 1.0
    # safety recovery in the alignment set (corpus.recovery_examples)
    recovery_share: float = 1.0
    recovery_max_k: int = 10
    # world
    tasks_per_family: int = 8
    test_per_family: int = 2
    # card measurement
    eval_max_new_tokens: int = 64
    # torch threads while building. Float sums are split across threads, so a rebuild is
    # bit-identical only at the same thread count (and CPU): the count is fixed, not torch's
    # default (which follows the machine's cores). One thread: a model this small gains
    # little from more, and one thread keeps its speed when other processes load the CPU
    # (several OpenMP threads then wait on each other). 0 leaves torch's default.
    threads: int = 1
    # the CPU kernel set the build pins (ATen, MKL, oneDNN; organism.kernels): with the
    # thread count, what makes a seed's bits the same on any x86-64 machine with AVX2. ''
    # uses the machine's own kernels (bit-identical only on the same kind of CPU).
    cpu_kernels: str = "avx2"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise AlignDepthError("organism hidden_size must be divisible by num_heads")
        if self.pretrain_docs < 1 or self.sft_epochs < 1:
            raise AlignDepthError("organism needs pretrain_docs >= 1 and sft_epochs >= 1")

    @classmethod
    def tiny(cls, seed: int = 0) -> OrganismConfig:
        """A small organism for tests: seconds to build, phenomena only roughly present.

        It trains on one thread: a model this small is no faster on more, and a fixed
        thread count makes every rebuild bit-identical whatever the caller's torch setting.
        """
        return cls(seed=seed, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                   pretrain_docs=1500, pretrain_batch=16, sft_epochs=1, tasks_per_family=4,
                   test_per_family=1, eval_max_new_tokens=48, threads=1)

    def with_seed(self, seed: int) -> OrganismConfig:
        return replace(self, seed=seed)

    def key(self) -> str:
        """Short hash naming the cache entry."""
        payload = json.dumps({"recipe": RECIPE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:10]
