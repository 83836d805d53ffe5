"""Shared fixtures: an isolated cache, a tiny organism built once per session, and tiny
random models built in-process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aligndepth.organism.build import build_organism
from aligndepth.organism.config import OrganismConfig
from aligndepth.paths import CACHE_ENV, cache_root

#: Set (as ``make test-slow`` does) to let the tests use, and fill, the user's cache of
#: built organisms: a build is keyed by its recipe, so a finished one is the same model the
#: tests would build, and the slow tests then skip the few minutes of building it.
REUSE_ORGANISMS_ENV = "ALIGNDEPTH_TEST_REUSE_ORGANISMS"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never touch the user's cache from tests (but its organisms, when asked to)."""
    isolated = tmp_path_factory.mktemp("cache")
    if os.environ.get(REUSE_ORGANISMS_ENV):
        organisms = cache_root() / "organism"
        organisms.mkdir(parents=True, exist_ok=True)
        (isolated / "organism").symlink_to(organisms, target_is_directory=True)
    mp = pytest.MonkeyPatch()
    mp.setenv(CACHE_ENV, str(isolated))
    yield
    mp.undo()


@pytest.fixture(autouse=True, scope="session")
def _one_cpu_thread() -> None:
    """The suite runs on one torch thread, in this process and in the processes it starts:
    its models are tiny, gain nothing from more threads, and with several they slow down
    many times over when another process loads the CPU (and their float sums would depend
    on the machine's core count)."""
    import torch

    before = torch.get_num_threads()
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    mp.undo()


@pytest.fixture(autouse=True)
def _no_standard_organism_in_fast_tests(request: pytest.FixtureRequest,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast test that would build the standard organism (minutes) fails at once instead:
    it meant to patch the loading out, or to use the tiny organism."""
    if request.node.get_closest_marker("slow"):
        return
    import aligndepth.organism.build as build

    real = build.build_organism

    def guarded(config=None, out=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        if (config is None or config == OrganismConfig()) and out is None \
                and not build.is_built(build.organism_dir(OrganismConfig())):
            raise AssertionError("a fast test tried to build the standard organism")
        return real(config, out, *args, **kwargs)

    monkeypatch.setattr(build, "build_organism", guarded)


@pytest.fixture(scope="session")
def tiny_organism(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny organism (seconds to build; its phenomena are weak)."""
    out = tmp_path_factory.mktemp("organism") / "tiny"
    return build_organism(OrganismConfig.tiny(), out, show_progress=False)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_organism: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_organism / "aligned")


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread: with several, on a busy machine, each forward
    pass of these models takes ~0.5 s instead of ~2 ms (OpenMP threads waiting on a core).
    The caller's setting is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def random_llama(vocab_size: int, seed: int = 0, hidden: int = 32):  # type: ignore[no-untyped-def]
    """A tiny random-weight Llama for unit tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()
