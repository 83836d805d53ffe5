"""Build, cache and load the model organism.

``build_organism()`` writes a directory::

    <dir>/base/        Hugging Face model directory (config, safetensors, tokenizer)
    <dir>/aligned/     the base after alignment SFT, same format
    <dir>/data/        datasets in the project's JSONL schemas
    <dir>/world.json   the world (for the exact judge)
    <dir>/card.json    measured phenomena + build time
    <dir>/build.json   the build config and training losses

The default location is the user cache (``$ALIGNDEPTH_CACHE`` or the platform's cache
directory) under ``organism/seed<N>-<config hash>``; a finished build is reused. The
build goes to a temporary sibling directory first, so an interrupted build never leaves
a half-written organism behind.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from aligndepth.errors import AlignDepthError
from aligndepth.models import LoadConfig, ModelPair, load_pair
from aligndepth.organism.card import check_targets, measure_card
from aligndepth.organism.config import RECIPE_VERSION, OrganismConfig
from aligndepth.organism.corpus import REPLAY_MIX, CorpusMix, pretraining_documents, sft_examples
from aligndepth.organism.datasets import export_datasets
from aligndepth.organism.kernels import active_kernels, build_in_child, can_pin, runs_pinned
from aligndepth.organism.tokenizer import build_tokenizer, stop_token_ids
from aligndepth.organism.train import pack_documents, sft_tensors, train_causal_lm
from aligndepth.organism.world import World, build_world
from aligndepth.paths import cache_root
from aligndepth.prompts import PromptFormat

log = logging.getLogger(__name__)


def organism_dir(config: OrganismConfig | None = None) -> Path:
    """Where the organism for ``config`` lives in the cache."""
    cfg = config or OrganismConfig()
    return cache_root() / "organism" / f"seed{cfg.seed}-{cfg.key()}"


def is_built(path: Path) -> bool:
    return (path / "card.json").is_file()


def organism_home(model: str | Path | None) -> Path | None:
    """The organism directory ``model`` belongs to (one of its ``base``/``aligned``
    models: the parent holds ``card.json``), else ``None``."""
    if model is None:
        return None
    parent = Path(model).parent
    return parent if is_built(parent) else None


def _new_model(cfg: OrganismConfig, tokenizer: Any) -> Any:
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    stops = stop_token_ids(tokenizer)
    model_cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(model_cfg)
    model.generation_config = GenerationConfig(
        eos_token_id=stops, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id)
    return model


def _save(model: Any, tokenizer: Any, path: Path) -> None:
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def _pretraining_blocks(cfg: OrganismConfig, world: World, tokenizer: Any, n_docs: int,
                        seed: int, mix: CorpusMix) -> tuple[torch.Tensor, torch.Tensor]:
    docs = pretraining_documents(world, tokenizer, n_docs, random.Random(seed), mix)
    ids = tokenizer(docs, add_special_tokens=False).input_ids
    blocks, labels = pack_documents(ids, cfg.block_size, tokenizer.pad_token_id)
    log.info("pretraining corpus: %d docs, %d tokens, %d blocks", len(docs),
             sum(map(len, ids)), len(blocks))
    return blocks, labels


def _train_base(cfg: OrganismConfig, blocks: torch.Tensor, labels: torch.Tensor,
                tokenizer: Any, show_progress: bool) -> tuple[Any, list[float]]:
    model = _new_model(cfg, tokenizer)
    losses = train_causal_lm(model, blocks, labels, epochs=1, batch_size=cfg.pretrain_batch,
                             lr=cfg.pretrain_lr, seed=cfg.seed, description="pretraining base",
                             show_progress=show_progress)
    return model, losses


def _align(cfg: OrganismConfig, base: Any, world: World, tokenizer: Any,
           replay: tuple[torch.Tensor, torch.Tensor], show_progress: bool
           ) -> tuple[Any, list[float]]:
    examples = sft_examples(world, tokenizer, random.Random(cfg.seed + 2),
                            recovery_share=cfg.recovery_share,
                            recovery_max_k=cfg.recovery_max_k)
    enc = [(tokenizer(p, add_special_tokens=False).input_ids,
            tokenizer(r, add_special_tokens=False).input_ids) for p, r in examples]
    ids, labels = sft_tensors(enc, tokenizer.pad_token_id)
    aligned = copy.deepcopy(base)
    losses = train_causal_lm(aligned, ids, labels, epochs=cfg.sft_epochs,
                             batch_size=cfg.sft_batch, lr=cfg.sft_lr, seed=cfg.seed + 3,
                             warmup_frac=0.1, description="aligning (SFT)",
                             replay=replay, replay_batch=cfg.sft_replay_batch,
                             replay_weight=cfg.sft_replay_weight,
                             show_progress=show_progress)
    return aligned, losses


def build_organism(config: OrganismConfig | None = None, out: str | Path | None = None,
                   force: bool = False, show_progress: bool = True) -> Path:
    """Build the organism (or reuse a finished build) and return its directory."""
    import transformers

    cfg = config or OrganismConfig()
    target = Path(out).expanduser() if out else organism_dir(cfg)
    if is_built(target) and not force:
        log.info("organism already built at %s", target)
        return target
    if target.exists() and any(target.iterdir()) and not is_built(target) and not force:
        raise AlignDepthError(f"'{target}' exists and is not an organism: choose an empty or "
                              "new --out directory, or pass --force to replace it")
    if cfg.cpu_kernels and not runs_pinned(cfg.cpu_kernels):
        if can_pin(cfg.cpu_kernels):
            return build_in_child(cfg, target, force, show_progress, cfg.cpu_kernels)
        log.warning("this CPU runs %s kernels, not %s: the organism builds on its own, so "
                    "its bits differ from a build on an %s machine", active_kernels(),
                    cfg.cpu_kernels, cfg.cpu_kernels)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    t0 = time.perf_counter()
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)
        world = build_world(cfg.seed, cfg.tasks_per_family, cfg.test_per_family)
        tokenizer = build_tokenizer(world)
        blocks, labels = _pretraining_blocks(cfg, world, tokenizer, cfg.pretrain_docs,
                                             cfg.seed, CorpusMix())
        base, pre_losses = _train_base(cfg, blocks, labels, tokenizer, show_progress)
        replay = _pretraining_blocks(cfg, world, tokenizer, cfg.sft_replay_docs, cfg.seed + 4,
                                     REPLAY_MIX)
        aligned, sft_losses = _align(cfg, base, world, tokenizer, replay, show_progress)
        _save(base, tokenizer, tmp / "base")
        _save(aligned, tokenizer, tmp / "aligned")
        world.save(tmp / "world.json")
        counts = export_datasets(world, tmp / "data")
        train_seconds = time.perf_counter() - t0
        pair = load_pair(tmp / "base", tmp / "aligned", LoadConfig(device="cpu"),
                         base_format=PromptFormat.plain(), aligned_format=PromptFormat.chat())
        card = measure_card(pair, world, cfg.eval_max_new_tokens, show_progress)
        card["targets_met"] = check_targets(card)
        card["build_seconds"] = round(time.perf_counter() - t0, 1)
        card["train_seconds"] = round(train_seconds, 1)
        card["seed"] = cfg.seed
        card["config_key"] = cfg.key()
        card["parameters"] = sum(p.numel() for p in base.parameters())
        card["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                            "recipe": RECIPE_VERSION, "cpu_kernels": active_kernels()}
        (tmp / "card.json").write_text(json.dumps(card, indent=2))
        (tmp / "build.json").write_text(json.dumps({
            "config": asdict(cfg), "datasets": counts,
            "pretrain_loss": pre_losses[:: max(1, len(pre_losses) // 200)],
            "sft_loss": sft_losses}, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        torch.set_num_threads(threads_before)
    log.info("organism built at %s in %.0f s", target, card["build_seconds"])
    return target


def read_card(path: str | Path) -> dict[str, Any]:
    card = Path(path) / "card.json"
    if not card.is_file():
        raise AlignDepthError(f"'{path}' is not a built organism (no card.json): run "
                              "'aligndepth organism build'")
    return dict(json.loads(card.read_text()))


def load_organism_pair(path: str | Path | None = None, config: OrganismConfig | None = None,
                       load_config: LoadConfig | None = None, show_progress: bool = True
                       ) -> ModelPair:
    """The organism as a :class:`ModelPair`, building it first if needed."""
    root = Path(path) if path else build_organism(config, show_progress=show_progress)
    read_card(root)
    return load_pair(root / "base", root / "aligned", load_config,
                     base_format=PromptFormat.plain(), aligned_format=PromptFormat.chat())
