import pytest
import torch

from aligndepth.errors import AlignDepthError
from aligndepth.generation import (
    GREEDY,
    SamplingParams,
    generate,
    generate_shared,
    warp_logits,
)
from tests.conftest import random_llama


def naive_warp(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """Reference: one row, plain Python, temperature -> top-k -> top-p."""
    x = logits.double() / (p.temperature if p.temperature > 0 else 1.0)
    order = sorted(range(len(x)), key=lambda i: -float(x[i]))
    keep = order[: p.top_k] if p.top_k else order
    probs = torch.softmax(x[keep], 0)
    kept, mass = [], 0.0
    for idx, pr in zip(keep, probs.tolist()):
        if kept and mass >= p.top_p:
            break
        kept.append(idx)
        mass += pr
    out = torch.full_like(x, float("-inf"))
    out[kept] = x[kept]
    return torch.softmax(out, 0)


CONFIGS = [SamplingParams(1.0, 0, 1.0), SamplingParams(0.5, 0, 1.0), SamplingParams(1.0, 5, 1.0),
           SamplingParams(1.0, 0, 0.3), SamplingParams(0.7, 10, 0.8), SamplingParams(2.0, 1, 1.0),
           SamplingParams(1.0, 0, 0.05)]


def _probs(logits, configs):
    temp = torch.tensor([c.temperature for c in configs])
    top_k = torch.tensor([c.top_k for c in configs])
    top_p = torch.tensor([c.top_p for c in configs])
    return torch.softmax(warp_logits(logits, temp, top_k, top_p), -1)


def test_mixed_batch_rows_match_each_configuration_alone_and_the_reference() -> None:
    torch.manual_seed(0)
    logits = torch.randn(len(CONFIGS), 50) * 2
    mixed = _probs(logits, CONFIGS)
    for i, cfg in enumerate(CONFIGS):
        alone = _probs(logits[i: i + 1], [cfg])[0]
        assert torch.allclose(mixed[i], alone, atol=1e-6)
        assert torch.allclose(mixed[i].double(), naive_warp(logits[i], cfg), atol=1e-5), cfg


def test_invalid_sampling_parameters_are_user_errors() -> None:
    for kwargs in ({"temperature": -1}, {"top_k": -2}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(AlignDepthError):
            SamplingParams(**kwargs)


def test_greedy_matches_transformers_generate_with_left_padding() -> None:
    model = random_llama(60, seed=3)
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16]]
    ours = generate(model, prompts, GREEDY, max_new_tokens=8, stop_ids=[1], pad_id=0)
    for prompt, got in zip(prompts, ours):
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False,
                             eos_token_id=1, pad_token_id=0)[0, len(prompt):].tolist()
        ref = ref[: ref.index(1)] if 1 in ref else ref
        assert got == ref


def test_shared_prompt_reuse_equals_independent_rows() -> None:
    model = random_llama(60, seed=4)
    prompt = [3, 4, 5, 6, 7]
    params = [GREEDY] * 3
    shared = generate_shared(model, prompt, params, max_new_tokens=6, stop_ids=[1], pad_id=0)
    plain = generate(model, [prompt] * 3, params, max_new_tokens=6, stop_ids=[1], pad_id=0)
    assert shared == plain


def test_sampling_is_seeded_and_greedy_rows_stay_greedy() -> None:
    model = random_llama(60, seed=5)
    prompts = [[3, 4, 5]] * 4
    params = [SamplingParams(1.0), GREEDY, SamplingParams(1.5, 20, 0.9), GREEDY]
    a = generate(model, prompts, params, max_new_tokens=10, stop_ids=[], pad_id=0, seed=7)
    b = generate(model, prompts, params, max_new_tokens=10, stop_ids=[], pad_id=0, seed=7)
    assert a == b
    greedy = generate(model, prompts[:1], GREEDY, max_new_tokens=10, stop_ids=[], pad_id=0)[0]
    assert a[1] == a[3] == greedy
    c = generate(model, prompts, params, max_new_tokens=10, stop_ids=[], pad_id=0, seed=8)
    assert a != c


def test_stop_tokens_end_rows_independently() -> None:
    model = random_llama(60, seed=6)
    prompts = [[3, 4, 5], [9, 8]]
    free = generate(model, prompts, GREEDY, max_new_tokens=6, stop_ids=[], pad_id=0)
    stop = free[0][2]
    cut = generate(model, prompts, GREEDY, max_new_tokens=6, stop_ids=[stop], pad_id=0)
    assert cut[0] == free[0][: free[0].index(stop)]
    expected = free[1][: free[1].index(stop)] if stop in free[1] else free[1]
    assert cut[1] == expected
    with pytest.raises(AlignDepthError, match="empty prompt"):
        generate(model, [[]], GREEDY, max_new_tokens=2, stop_ids=[], pad_id=0)
