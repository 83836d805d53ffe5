"""Shared fixtures: an isolated cache, a tiny organism built once per session, and tiny
random models built in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from aligndepth.organism.build import CACHE_ENV, build_organism
from aligndepth.organism.config import OrganismConfig


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never touch the user's cache from tests."""
    mp = pytest.MonkeyPatch()
    mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_organism(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny organism (seconds to build; its phenomena are weak)."""
    out = tmp_path_factory.mktemp("organism") / "tiny"
    return build_organism(OrganismConfig.tiny(), out, show_progress=False)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_organism: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_organism / "aligned")


def random_llama(vocab_size: int, seed: int = 0, hidden: int = 32):  # type: ignore[no-untyped-def]
    """A tiny random-weight Llama for unit tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()
