import pytest
import torch

from aligndepth.engine import (
    GREEDY,
    SamplingParams,
    StopRule,
    generate,
    generate_shared,
    warp_logits,
)
from aligndepth.engine.sampling import row_uniforms, sample_from
from aligndepth.errors import AlignDepthError
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


def ids(completions):
    return [c.ids for c in completions]


def test_greedy_matches_transformers_generate_with_left_padding() -> None:
    model = random_llama(60, seed=3)
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16]]
    ours = generate(model, prompts, GREEDY, max_new_tokens=8, stop=[1], pad_id=0)
    for prompt, got in zip(prompts, ours):
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False,
                             eos_token_id=1, pad_token_id=0)[0, len(prompt):].tolist()
        ref = ref[: ref.index(1)] if 1 in ref else ref
        assert got.ids == ref
        assert got.stop_reason == ("eos" if len(ref) < 8 else "length")


def test_shared_prompt_reuse_equals_independent_rows() -> None:
    model = random_llama(60, seed=4)
    prompt = [3, 4, 5, 6, 7]
    params = [GREEDY, SamplingParams(1.0), SamplingParams(0.7, 5, 0.9)]
    seeds = [11, 12, 13]
    shared = generate_shared(model, prompt, params, max_new_tokens=6, stop=[1], pad_id=0,
                             seeds=seeds)
    plain = generate(model, [prompt] * 3, params, max_new_tokens=6, stop=[1], pad_id=0,
                     seeds=seeds)
    assert ids(shared) == ids(plain)


def test_sampling_is_seeded_and_greedy_rows_stay_greedy() -> None:
    model = random_llama(60, seed=5)
    prompts = [[3, 4, 5]] * 4
    params = [SamplingParams(1.0), GREEDY, SamplingParams(1.5, 20, 0.9), GREEDY]
    a = ids(generate(model, prompts, params, max_new_tokens=10, stop=[], pad_id=0, seed=7))
    b = ids(generate(model, prompts, params, max_new_tokens=10, stop=[], pad_id=0, seed=7))
    assert a == b
    greedy = generate(model, prompts[:1], GREEDY, max_new_tokens=10, stop=[], pad_id=0)[0]
    assert a[1] == a[3] == greedy.ids
    c = ids(generate(model, prompts, params, max_new_tokens=10, stop=[], pad_id=0, seed=8))
    assert a != c


def test_sampled_outputs_do_not_depend_on_the_batch_size() -> None:
    """Rows are seeded one by one: batch size 1, 6 and 24 (with rows finishing and
    being dropped at different steps) give identical samples."""
    model = random_llama(60, seed=7)
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 60, (2 + i % 9,), generator=gen).tolist() for i in range(24)]
    params = [SamplingParams(1.0), SamplingParams(0.8, 10, 0.9), GREEDY] * 8
    runs = [generate(model, prompts, params, max_new_tokens=16, stop=[5, 9], pad_id=0,
                     seed=3, batch_size=size, repeats=2) for size in (1, 6, 24)]
    assert ids(runs[0]) == ids(runs[1]) == ids(runs[2])
    lengths = {len(c.ids) for c in runs[2]}
    assert len(lengths) > 3  # rows stopped at different steps
    assert len({tuple(c.ids) for c in runs[0][0::6]}) > 1


def test_out_of_memory_halves_the_batch_and_keeps_the_results() -> None:
    model = random_llama(60, seed=8)
    prompts = [[3, 4, 5 + i] for i in range(8)]
    params = SamplingParams(1.0)
    want = ids(generate(model, prompts, params, max_new_tokens=8, stop=[5], pad_id=0,
                        batch_size=8))
    forward = model.forward
    calls = []

    def tight(*args, **kwargs):
        rows = (kwargs.get("input_ids") if kwargs.get("input_ids") is not None
                else kwargs["inputs_embeds"]).shape[0]
        calls.append(rows)
        if rows > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(*args, **kwargs)

    model.forward = tight
    try:
        got = ids(generate(model, prompts, params, max_new_tokens=8, stop=[5], pad_id=0,
                           batch_size=8))
    finally:
        model.forward = forward
    assert got == want
    assert max(calls) > 2 and calls[-1] <= 2


def test_stop_tokens_end_rows_independently() -> None:
    model = random_llama(60, seed=6)
    prompts = [[3, 4, 5], [9, 8]]
    free = ids(generate(model, prompts, GREEDY, max_new_tokens=6, stop=[], pad_id=0))
    stop = free[0][2]
    cut = generate(model, prompts, GREEDY, max_new_tokens=6, stop=[stop], pad_id=0)
    assert cut[0].ids == free[0][: free[0].index(stop)] and cut[0].stop_reason == "eos"
    expected = free[1][: free[1].index(stop)] if stop in free[1] else free[1]
    assert cut[1].ids == expected
    with pytest.raises(AlignDepthError, match="empty"):
        generate(model, [[]], GREEDY, max_new_tokens=2, stop=[], pad_id=0)


def test_stop_strings_cut_the_text_and_say_why(tiny_tokenizer) -> None:
    tok = tiny_tokenizer
    model = random_llama(len(tok), seed=9)
    prompt = tok("question :", add_special_tokens=False).input_ids
    free = generate(model, [prompt], GREEDY, max_new_tokens=12, stop=[], pad_id=0)[0]
    assert len(free.ids) >= 6
    marker = tok.decode(free.ids[3:5])  # two tokens the model will produce
    rule = StopRule(frozenset(), (marker,))
    cut = generate(model, [prompt], GREEDY, max_new_tokens=12, stop=rule, pad_id=0,
                   tokenizer=tok)[0]
    assert cut.stop_reason == "stop_string"
    assert marker not in tok.decode(cut.ids) and len(cut.ids) <= 3
    assert cut.ids == free.ids[:len(cut.ids)]
    with pytest.raises(AlignDepthError, match="stop string is empty"):
        StopRule(frozenset(), ("",))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("vocab", [32_000, 128_256, 256_000])
def test_top_p_one_and_top_k_zero_mask_nothing(dtype, vocab) -> None:
    gen = torch.Generator().manual_seed(vocab)
    logits = (torch.randn(3, vocab, generator=gen) * 4).to(dtype)
    n = 3
    warped = warp_logits(logits, torch.ones(n), torch.zeros(n, dtype=torch.long),
                         torch.ones(n))
    assert torch.isfinite(warped).all()
    # a filter on one row leaves the others untouched
    warped = warp_logits(logits, torch.ones(n), torch.tensor([0, 0, 50]),
                         torch.tensor([1.0, 0.9, 1.0]))
    assert torch.isfinite(warped[0]).all()
    assert 1 < int(torch.isfinite(warped[1]).sum()) < vocab
    assert int(torch.isfinite(warped[2]).sum()) == 50


def test_inverse_cdf_sampling_follows_the_distribution() -> None:
    probs = torch.tensor([[0.5, 0.0, 0.2, 0.3]])
    seeds = torch.arange(4000)
    u = row_uniforms(seeds, 0)
    assert 0 <= float(u.min()) and float(u.max()) < 1
    draws = sample_from(probs.expand(4000, -1), u)
    freq = torch.bincount(draws, minlength=4).double() / 4000
    assert int(freq[1]) == 0  # a zero-probability token is never drawn
    assert torch.allclose(freq, probs[0].double(), atol=0.03)
    assert not torch.equal(row_uniforms(seeds, 0), row_uniforms(seeds, 1))
