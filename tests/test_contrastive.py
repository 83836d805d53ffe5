"""Lockstep contrastive (ED) decoding against its plain definition."""

import pytest
import torch

from aligndepth.engine import (
    GREEDY,
    ContrastRow,
    SamplingParams,
    combine,
    contrastive_generate,
    generate,
    reference_contrastive_greedy,
)
from aligndepth.errors import AlignDepthError
from tests.conftest import random_llama

VOCAB = 60
STOPS = [5, 9]


@pytest.fixture(scope="module")
def random_pair():
    """Two random models sharing a vocabulary, and 24 queries whose prompts have different
    lengths per query and per model."""
    gen = torch.Generator().manual_seed(0)
    base, aligned = random_llama(VOCAB, seed=1), random_llama(VOCAB, seed=2)

    def prompt(n: int) -> list[int]:
        return torch.randint(10, VOCAB, (n,), generator=gen).tolist()

    base_prompts = [prompt(3 + (7 * i) % 29) for i in range(24)]
    aligned_prompts = [prompt(2 + (5 * i) % 17) for i in range(24)]
    return base, aligned, base_prompts, aligned_prompts


@pytest.mark.parametrize("alpha", [1.0, 0.3, 4.0])
def test_greedy_ed_equals_the_naive_reference_token_for_token(random_pair, alpha) -> None:
    base, aligned, base_prompts, aligned_prompts = random_pair
    fast = contrastive_generate(base, aligned, base_prompts, aligned_prompts,
                                [ContrastRow(alpha)], max_new_tokens=30, batch_size=7,
                                stop=STOPS, pad_id=0)
    lengths = []
    for b, a, out in zip(base_prompts, aligned_prompts, fast):
        ref = reference_contrastive_greedy(base, aligned, b, a, alpha, max_new_tokens=30,
                                           stop_ids=STOPS)
        assert out[0].ids == ref
        lengths.append(len(ref))
    # rows stopped at different steps, so finished rows were dropped mid-batch
    assert min(lengths) < 30 and len(set(lengths)) > 3


def test_alpha_zero_is_plain_base_decoding(random_pair) -> None:
    base, aligned, base_prompts, aligned_prompts = random_pair
    ed = contrastive_generate(base, aligned, base_prompts, aligned_prompts, [ContrastRow(0.0)],
                              max_new_tokens=25, batch_size=8, stop=STOPS, pad_id=0)
    plain = generate(base, base_prompts, GREEDY, max_new_tokens=25, batch_size=8,
                     stop=STOPS, pad_id=0)
    assert [rows[0].ids for rows in ed] == [c.ids for c in plain]


def test_rows_per_query_sweep_and_sampling_are_seeded(random_pair) -> None:
    base, aligned, base_prompts, aligned_prompts = random_pair
    sample = SamplingParams(1.0)
    rows = [ContrastRow(0.5, GREEDY), ContrastRow(0.5, sample), ContrastRow(0.5, sample)]
    args = (base, aligned, base_prompts[:6], aligned_prompts[:6], rows)
    kw = dict(stop=STOPS, pad_id=0, max_new_tokens=20)

    def ids(out):
        return [[c.ids for c in rows] for rows in out]

    a = ids(contrastive_generate(*args, seed=3, batch_size=9, **kw))
    b = ids(contrastive_generate(*args, seed=3, batch_size=9, **kw))
    assert a == b and len(a) == 6 and all(len(r) == 3 for r in a)
    greedy_only = ids(contrastive_generate(*args[:4], [ContrastRow(0.5)], **kw))
    assert [r[0] for r in a] == [r[0] for r in greedy_only]  # row order is kept
    assert any(r[1] != r[2] for r in a)  # samples of one query differ
    for size in (1, 4, 18):  # the batch size never changes a sampled row
        assert ids(contrastive_generate(*args, seed=3, batch_size=size, **kw)) == a


def test_combine_is_the_ed_formula() -> None:
    torch.manual_seed(0)
    zb, za = torch.randn(3, 11), torch.randn(3, 11)
    alpha = torch.tensor([0.0, 1.0, 2.5])
    got = combine(zb, za, alpha)
    for i, a in enumerate(alpha.tolist()):
        want = (a + 1) * torch.log_softmax(zb[i], -1) - a * torch.log_softmax(za[i], -1)
        assert torch.allclose(got[i], want, atol=1e-5)
    # tokens that both models rule out stay finite (no NaN from inf - inf)
    zb[0, 0] = za[0, 0] = float("-inf")
    assert torch.isfinite(combine(zb, za, alpha)).all()


def test_bad_input_is_a_user_error() -> None:
    with pytest.raises(AlignDepthError, match="alpha must be"):
        ContrastRow(-0.5)
    model = random_llama(50)
    with pytest.raises(AlignDepthError, match="context of 128"):
        contrastive_generate(model, model, [[1] * 120], [[1] * 5], [ContrastRow(1.0)],
                             max_new_tokens=20, stop=[2], pad_id=0)
    with pytest.raises(AlignDepthError, match="same queries"):
        contrastive_generate(model, model, [[1]], [], [ContrastRow(1.0)],
                             max_new_tokens=2, stop=[2], pad_id=0)
    with pytest.raises(AlignDepthError, match="do not share"):
        contrastive_generate(model, random_llama(40), [[1]], [[1]], [ContrastRow(1.0)],
                             max_new_tokens=2, stop=[2], pad_id=0, vocab_size=50)


def test_models_with_padded_output_layers_share_the_tokenizer_columns() -> None:
    small, padded = random_llama(40, seed=1), random_llama(48, seed=2)
    out = contrastive_generate(small, padded, [[3, 4, 5]], [[3, 4]], [ContrastRow(1.0)],
                               max_new_tokens=6, stop=[], pad_id=0, vocab_size=40)
    ref = reference_contrastive_greedy(small, padded, [3, 4, 5], [3, 4], 1.0,
                                       max_new_tokens=6, stop_ids=[], vocab_size=40)
    assert out[0][0].ids == ref and all(t < 40 for t in ref)


def test_python_api_returns_texts_per_query_and_sample(tiny_organism) -> None:
    from aligndepth import emulated_disalignment, load_pair
    from aligndepth.models import LoadConfig

    pair = load_pair(str(tiny_organism / "base"), str(tiny_organism / "aligned"),
                     LoadConfig(device="cpu"))
    out = emulated_disalignment(pair, ["how do i grow tomatoes ?", "how do i fix a bike ?"],
                                alpha=0.5, samples=2, max_new_tokens=6, malicious_system=None)
    assert len(out) == 2 and all(len(r) == 2 and all(isinstance(t, str) for t in r)
                                 for r in out)
    with pytest.raises(AlignDepthError, match="alpha must be"):
        emulated_disalignment(pair, ["x"], alpha=-1)
