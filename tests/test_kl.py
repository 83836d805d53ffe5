import torch

from aligndepth.analysis.kl import per_token_kl, response_kl
from tests.conftest import random_llama


def test_kl_of_a_distribution_with_itself_is_zero() -> None:
    logits = torch.randn(3, 7, 50)
    assert torch.allclose(per_token_kl(logits, logits), torch.zeros(3, 7), atol=1e-6)


def test_kl_matches_naive_float64_reference() -> None:
    torch.manual_seed(0)
    p, q = torch.randn(4, 5, 30) * 3, torch.randn(4, 5, 30) * 3
    pp = torch.softmax(p.double(), -1)
    qq = torch.softmax(q.double(), -1)
    ref = (pp * (pp.log() - qq.log())).sum(-1)
    assert torch.allclose(per_token_kl(p, q).double(), ref, atol=1e-5)


def test_response_kl_ignores_padding_and_matches_per_example() -> None:
    a, b = random_llama(40, seed=1), random_llama(40, seed=2)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8], [9]]
    responses = [[10, 11, 12, 13], [14, 15], [16, 17, 18]]
    batched = response_kl(a, b, prompts, responses, pad_id=0, batch_size=3)
    single = [response_kl(a, b, [p], [r], pad_id=0)[0] for p, r in zip(prompts, responses)]
    for x, y, r in zip(batched, single, responses):
        assert len(x) == len(r)
        assert torch.allclose(torch.tensor(x), torch.tensor(y), atol=1e-5)
    same = response_kl(a, a, prompts, responses, pad_id=0)
    assert max(max(row) for row in same) < 1e-6
