"""response_kl scores response positions only (left padding + logits_to_keep), in chunks,
and matches a one-example-at-a-time reference with full logits."""

from __future__ import annotations

import random

import pytest
import torch

from aligndepth.analysis.kl import chunked_kl, per_token_kl, response_kl
from tests.conftest import random_llama

VOCAB = 48


def _reference(model_p, model_q, prompts, responses) -> list[list[float]]:  # type: ignore[no-untyped-def]
    """Each example alone, unpadded, full logits over the whole sequence."""
    out = []
    with torch.no_grad():
        for p, r in zip(prompts, responses):
            ids = torch.tensor([list(p) + list(r)])
            lp, lq = model_p(input_ids=ids).logits, model_q(input_ids=ids).logits
            kl = per_token_kl(lp, lq)[0]  # (seq,)
            out.append(kl[len(p) - 1: len(p) - 1 + len(r)].tolist())
    return out


def _mixed(n: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    rng = random.Random(seed)
    prompts = [[rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 17))] for _ in range(n)]
    responses = [[rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 11))]
                 for _ in range(n)]
    return prompts, responses


@pytest.fixture(scope="module")
def models():  # type: ignore[no-untyped-def]
    return random_llama(VOCAB, seed=3), random_llama(VOCAB, seed=4)


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("max_rows", [1, 5, 1024])
def test_matches_unpadded_full_logits_reference(models, batch_size, max_rows) -> None:  # type: ignore[no-untyped-def]
    a, b = models
    prompts, responses = _mixed(9, seed=batch_size)
    got = response_kl(a, b, prompts, responses, pad_id=0, batch_size=batch_size,
                      max_rows=max_rows)
    ref = _reference(a, b, prompts, responses)
    assert [len(x) for x in got] == [len(r) for r in responses]
    for x, y in zip(got, ref):
        assert torch.allclose(torch.tensor(x), torch.tensor(y), atol=1e-5), (x, y)


def test_empty_responses_give_empty_lists(models) -> None:  # type: ignore[no-untyped-def]
    a, b = models
    prompts = [[1, 2], [3, 4, 5], [6]]
    responses: list[list[int]] = [[], [7, 8], []]
    got = response_kl(a, b, prompts, responses, pad_id=0, batch_size=3)
    ref = _reference(a, b, prompts, responses)
    assert got[0] == [] and got[2] == []
    assert torch.allclose(torch.tensor(got[1]), torch.tensor(ref[1]), atol=1e-5)
    assert response_kl(a, b, [[1]], [[]], pad_id=0) == [[]]


def test_empty_prompt_is_refused(models) -> None:  # type: ignore[no-untyped-def]
    a, b = models
    with pytest.raises(ValueError, match="at least one token"):
        response_kl(a, b, [[]], [[1, 2]], pad_id=0)


class _Recorder(torch.nn.Module):
    """Wraps a causal LM, recording the logits_to_keep and logits shapes of each call."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.keeps: list[object] = []
        self.shapes: list[tuple[int, ...]] = []
        self.widths: list[int] = []

    def get_input_embeddings(self):  # type: ignore[no-untyped-def]
        return self.inner.get_input_embeddings()

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None,  # type: ignore[no-untyped-def]
                logits_to_keep=0, **kwargs):
        self.keeps.append(logits_to_keep)
        self.widths.append(input_ids.shape[1])
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=position_ids, use_cache=use_cache,
                         logits_to_keep=logits_to_keep, **kwargs)
        self.shapes.append(tuple(out.logits.shape))
        return out


def test_prompt_positions_are_not_scored(models) -> None:  # type: ignore[no-untyped-def]
    a, b = models
    pa, pb = _Recorder(a), _Recorder(b)
    prompts = [[1] * 30, [2] * 25, [3] * 40]  # long prompts, short responses
    responses = [[4, 5], [6, 7, 8], [9]]
    got = response_kl(pa, pb, prompts, responses, pad_id=0, batch_size=3)
    ref = _reference(a, b, prompts, responses)
    for x, y in zip(got, ref):
        assert torch.allclose(torch.tensor(x), torch.tensor(y), atol=1e-5)
    for rec in (pa, pb):
        assert rec.widths == [41]  # longest prompt + its response, one forward each
        assert rec.keeps == [4]  # longest response (3) + 1, not the whole width
        assert rec.shapes == [(3, 4, VOCAB)]


def test_chunked_kl_matches_per_token_kl() -> None:
    torch.manual_seed(0)
    p, q = torch.randn(13, 30).bfloat16(), torch.randn(13, 30).bfloat16()
    full = per_token_kl(p, q)
    for rows in (1, 4, 13, 100):
        assert torch.allclose(chunked_kl(p, q, rows), full)
    assert chunked_kl(p[:0], q[:0]).shape == (0,)
    with pytest.raises(ValueError):
        chunked_kl(p, q, 0)


def test_pair_on_different_devices_uses_each_input_device(models, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each model's inputs go to its own input device (both CPU here, but looked up per
    model, so a pair may sit on different devices)."""
    import aligndepth.analysis.kl as kl_mod

    a, b = models
    seen: list[object] = []
    real = kl_mod.input_device

    def spy(model):  # type: ignore[no-untyped-def]
        seen.append(model)
        return real(model)

    monkeypatch.setattr(kl_mod, "input_device", spy)
    prompts, responses = _mixed(4, seed=7)
    response_kl(a, b, prompts, responses, pad_id=0, batch_size=4)
    assert seen == [a, b]


@pytest.mark.parametrize("family", ["llama3", "gemma2", "qwen2", "mistral"])
def test_left_padding_matches_reference_across_families(family, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Left padding with position ids is exact for each architecture (Gemma-2's
    softcapping and sliding window included); q is a perturbed copy so the KL is not 0."""
    from transformers import AutoModelForCausalLM

    from tests.families import build_family_pair

    _, aligned_dir = build_family_pair(family, tmp_path)
    p = AutoModelForCausalLM.from_pretrained(aligned_dir, dtype=torch.float32).eval()
    q = AutoModelForCausalLM.from_pretrained(aligned_dir, dtype=torch.float32).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for prm in q.parameters():
            prm.add_(torch.randn_like(prm) * 0.05)
    vocab = p.config.vocab_size
    rng = random.Random(0)
    prompts = [[rng.randrange(3, vocab) for _ in range(rng.randint(1, 20))] for _ in range(6)]
    responses = [[rng.randrange(3, vocab) for _ in range(rng.randint(1, 9))] for _ in range(6)]
    got = response_kl(p, q, prompts, responses, pad_id=0, batch_size=6, max_rows=4)
    ref = _reference(p, q, prompts, responses)
    assert max(max(r) for r in ref) > 1e-3
    for x, y in zip(got, ref):
        assert torch.allclose(torch.tensor(x), torch.tensor(y), atol=1e-5)
