"""Chunked vocabulary functions against the naive full log-softmax (values and gradients)."""
from __future__ import annotations

import pytest
import torch

from stages.objectives import token_logprobs, vocab_kl


def _naive(logits, labels):
    return logits.float().log_softmax(-1).gather(-1, labels[..., None])[..., 0]


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_logprobs_matches_naive(chunk_size, dtype):
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(3, 17, 301, generator=g)).to(dtype).requires_grad_(True)
    labels = torch.randint(0, 301, (3, 17), generator=g)
    got = token_logprobs(logits, labels, chunk_size=chunk_size)
    assert got.dtype == torch.float32 and got.shape == labels.shape
    ref_logits = logits.detach().clone().requires_grad_(True)
    want = _naive(ref_logits, labels)
    assert (got - want).abs().max().item() <= 1e-5
    upstream = torch.randn(3, 17, generator=g)
    (got * upstream).sum().backward()
    (want * upstream).sum().backward()
    tol = 1e-6 if dtype == torch.float32 else 1e-2   # bf16 grads are rounded to bf16
    assert logits.grad.dtype == dtype
    assert torch.allclose(logits.grad.float(), ref_logits.grad.float(), atol=tol)


def test_token_logprobs_ignore_index_and_topk_ids():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 13, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 13, (2, 5), generator=g)
    labels[0, -2:] = -100
    got = token_logprobs(logits, labels, chunk_size=3)
    assert got.dtype == torch.float64
    full = logits.log_softmax(-1)
    assert (got[0, -2:] == 0).all()
    keep = labels >= 0
    assert torch.allclose(got[keep], full.gather(-1, labels.clamp(min=0)[..., None])[..., 0][keep])
    got.sum().backward()
    assert (logits.grad[0, -2:] == 0).all()
    # [B, T, K] ids: K log-probs per position, gradient checked by gradcheck
    ids = torch.randint(0, 13, (2, 5, 4), generator=g)
    assert torch.allclose(token_logprobs(logits, ids, chunk_size=4), full.gather(-1, ids))
    x = logits.detach()[:, :2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: token_logprobs(z, ids[:, :2], 3), (x,))


def test_vocab_kl_matches_naive_and_gradcheck():
    g = torch.Generator().manual_seed(2)
    p = torch.randn(2, 6, 9, generator=g, dtype=torch.float64, requires_grad=True)
    q = torch.randn(2, 6, 9, generator=g, dtype=torch.float64)
    want = (p.softmax(-1) * (p.log_softmax(-1) - q.log_softmax(-1))).sum(-1)
    got = vocab_kl(p, q, chunk_size=5)
    assert torch.allclose(got, want) and (got >= 0).all()
    assert torch.autograd.gradcheck(lambda z: vocab_kl(z, q, 4), (p,))
    assert torch.allclose(vocab_kl(p, p.detach()), torch.zeros(2, 6, dtype=torch.float64))
