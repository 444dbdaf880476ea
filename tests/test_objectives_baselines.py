"""Every baseline objective against values computed by hand (issue 3), through the shared reduction.

Unless a test says otherwise, one row holds p = [0.1, 0.5, 0.9] on the response and one padded
position (mask 0, p = 0.3) that must not count: N = 3 response tokens.
"""
from __future__ import annotations

import math

import pytest
import torch

from stages.objectives import TokenBatch, get_objective, reduce_loss

P = [0.1, 0.5, 0.9]
L = [-math.log(p) for p in P]             # NLL: 2.302585, 0.693147, 0.105361


def _batch(probs=P, pad=0.3, logp_beta=None, **extra):
    logp = torch.tensor([[math.log(pad)] + [math.log(p) for p in probs]], dtype=torch.float64)
    mask = torch.tensor([[0.0] + [1.0] * len(probs)], dtype=torch.float64)
    lb = torch.zeros_like(logp) if logp_beta is None else torch.tensor([[0.0] + logp_beta],
                                                                       dtype=torch.float64)
    return TokenBatch(logp, lb, mask, torch.tensor([True]), **extra)


def _loss(name, batch, **params):
    loss_tok, weight = get_objective(name).fn(batch, **params)
    return reduce_loss(loss_tok, weight, batch.mask).item()


def test_sft():
    """ℓ = −log p: (2.302585 + 0.693147 + 0.105361) / 3 = 1.033698."""
    assert _loss("sft", _batch()) == pytest.approx(sum(L) / 3, abs=1e-12)
    assert _loss("sft", _batch()) == pytest.approx(1.033698, abs=1e-6)


@pytest.mark.parametrize("alpha,want", [
    (1.0, (0.9 + 0.5 + 0.1) / 3),                                             # 1 − p
    (0.5, sum((1 - math.sqrt(p)) / 0.5 for p in P) / 3),                      # 0.685321
    (2.0, sum((1 - p * p) / 2 for p in P) / 3),                               # (1 − p²)/2
    (0.0, sum(L) / 3),                                                        # α → 0: NLL
    (1e-9, sum(L) / 3),
])
def test_general_family(alpha, want):
    """ℓ = (1 − p^α)/α; α = 0 is −log p (and tiny α approaches it without cancellation)."""
    assert _loss("general_family", _batch(), alpha=alpha) == pytest.approx(want, abs=1e-8)


def test_thresholded_with_q_0_2():
    """q = 0.2 keeps p ∈ {0.5, 0.9} for "top", p = 0.1 for "bottom":
    top_p = (0.5 + 0.1)/3 = 0.2, bottom_p = 0.9/3 = 0.3,
    top_logp = (0.693147 + 0.105361)/3 = 0.266169, bottom_logp = 2.302585/3 = 0.767528."""
    b = _batch()
    assert _loss("top_p", b) == pytest.approx(0.2, abs=1e-12)
    assert _loss("bottom_p", b) == pytest.approx(0.3, abs=1e-12)
    assert _loss("top_logp", b) == pytest.approx((L[1] + L[2]) / 3, abs=1e-12)
    assert _loss("bottom_logp", b) == pytest.approx(L[0] / 3, abs=1e-12)
    # q = 0.6: only p = 0.9 is "top"
    assert _loss("top_logp", b, q=0.6) == pytest.approx(L[2] / 3, abs=1e-12)
    assert _loss("bottom_p", b, q=0.6) == pytest.approx((0.9 + 0.5) / 3, abs=1e-12)


def test_talr_by_hand():
    """Rows of NLL a = [1, 1], b = [2, 2] (+1 pad), c = [1, 5, 10, 4]: per-row means 1, 2, 5,
    τ = median = 2, w = max(e^(−ℓ/2), 0.01) (e^−5 = 0.0067 is floored to 0.01), N = 8:
    L = (2·e^−0.5·1 + 2·e^−1·2 + e^−0.5·1 + e^−2.5·5 + 0.01·10 + e^−2·4) / 8 = 0.542859."""
    e = math.exp
    nll = torch.tensor([[1, 1, 0, 0], [0, 2, 2, 0], [1, 5, 10, 4]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.float64)
    batch = TokenBatch(-nll, torch.zeros_like(nll), mask, torch.ones(3, dtype=torch.bool))
    want = (2 * e(-0.5) + 4 * e(-1) + e(-0.5) + 5 * e(-2.5) + 0.01 * 10 + 4 * e(-2)) / 8
    assert _loss("talr", batch) == pytest.approx(want, abs=1e-12)
    assert want == pytest.approx(0.542859, abs=1e-6)
    _, w = get_objective("talr").fn(batch)
    assert w[2, 2].item() == 0.01


def test_talr_even_rows_median_interpolates():
    """Row means 1 and 3 → τ = 2 (mean of the two middle values): w = e^(−ℓ/2)."""
    nll = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    batch = TokenBatch(-nll, torch.zeros_like(nll), torch.ones_like(nll), torch.ones(2, dtype=bool))
    _, w = get_objective("talr").fn(batch)
    assert torch.allclose(w, torch.exp(-nll / 2))


def test_talr_tau_comes_from_the_step_rows_when_given():
    """The same micro-batch (row means 1 and 3: τ = 2 alone) inside a step whose other rows have
    means 5 and 7: τ = median(1, 3, 5, 7) = 4, so w = e^(−ℓ/4), not e^(−ℓ/2)."""
    nll = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    step = torch.tensor([5.0, 1.0, 7.0, 3.0], dtype=torch.float64)
    batch = TokenBatch(-nll, torch.zeros_like(nll), torch.ones_like(nll), torch.ones(2, dtype=bool),
                       step_seq_nll=step)
    _, w = get_objective("talr").fn(batch)
    assert torch.allclose(w, torch.exp(-nll / 4))
    assert get_objective("talr").needs_step_nll and not get_objective("sft").needs_step_nll


def test_row_mean_nll_leaves_out_rows_without_response_tokens():
    from stages.objectives.baselines import row_mean_nll

    nll = torch.tensor([[1.0, 3.0, 9.0], [4.0, 4.0, 4.0], [2.0, 6.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    assert row_mean_nll(-nll, mask).tolist() == [2.0, 3.0]


def test_single_step_is():
    """log p − log p_β = [−0.5, 0.1, 1.0] → clipped to [−0.08, 0.1, 0.3]: L = Σ e^δ·ℓ / 3."""
    b = _batch(logp_beta=[math.log(p) + d for p, d in zip(P, [0.5, -0.1, -1.0])])
    want = (math.exp(-0.08) * L[0] + math.exp(0.1) * L[1] + math.exp(0.3) * L[2]) / 3
    assert _loss("single_step_is", b) == pytest.approx(want, abs=1e-12)


def test_sft_kl():
    """V = 2, π_θ = [0.25, 0.75], π_ref = [0.5, 0.5], label 1, β = 0.1:
    ℓ = −log 0.75 + 0.1·(0.25 log 0.5 + 0.75 log 1.5) = 0.287682 + 0.1·0.130812 = 0.300763."""
    logits = torch.log(torch.tensor([[[0.25, 0.75]]], dtype=torch.float64))
    ref = torch.zeros(1, 1, 2, dtype=torch.float64)
    b = TokenBatch(torch.log(torch.tensor([[0.75]], dtype=torch.float64)), torch.zeros(1, 1),
                   torch.ones(1, 1), torch.tensor([True]), logits=logits, ref_logits=ref)
    kl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert _loss("sft_kl", b) == pytest.approx(-math.log(0.75) + 0.1 * kl, abs=1e-12)
    assert _loss("sft_kl", b, beta=1.0) == pytest.approx(0.287682 + 0.130812, abs=1e-6)


def _kd_batch(delta_last=0.1):
    """Two positions, V = 4, π_θ = [0.1, 0.2, 0.3, 0.4] at both; behavior top-2 ids [3, 2] with
    stored log-probs log [0.5, 0.3] (renormalised: q = [0.625, 0.375])."""
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)).expand(1, 2, 4)
    ids = torch.tensor([[[3, 2], [3, 2]]])
    tl = torch.log(torch.tensor([0.5, 0.3], dtype=torch.float64)).expand(1, 2, 2)
    logp = torch.log(torch.tensor([[0.4, 0.4]], dtype=torch.float64))
    return TokenBatch(logp, logp - torch.tensor([[0.0, delta_last]], dtype=torch.float64),
                      torch.ones(1, 2, dtype=torch.float64), torch.tensor([True]),
                      logits=logits.clone(), beta_topk_ids=ids, beta_topk_logp=tl)


KD = 0.625 * math.log(0.625 / 0.4) + 0.375 * math.log(0.375 / 0.3)   # 0.362608


def test_kd_renormalised_topk():
    """ℓ_t = Σ_k q_k (log q_k − log π_θ(id_k)) = 0.625 ln(0.625/0.4) + 0.375 ln(0.375/0.3)."""
    assert KD == pytest.approx(0.362608, abs=1e-6)
    assert _loss("kd", _kd_batch()) == pytest.approx(KD, abs=1e-12)


def test_pear_kd_weights_the_kl():
    """T = 2, γ = 0.9, δ_2 = 0.1: w = [0.9·e^0.1, 1], L = (0.9 e^0.1 + 1)·KD / 2."""
    want = (0.9 * math.exp(0.1) + 1) * KD / 2
    assert _loss("pear_kd", _kd_batch(), gamma=0.9) == pytest.approx(want, abs=1e-12)


def test_kd_ignores_padded_topk_ids():
    """A top-k padded with id −1 is the top-(k−1): ids [3, −1] → q = [1], ℓ = −log 0.4."""
    b = _kd_batch()
    b.beta_topk_ids = torch.tensor([[[3, -1], [3, -1]]])
    b.logits.requires_grad_(True)
    loss = reduce_loss(*get_objective("kd").fn(b), b.mask)
    assert loss.item() == pytest.approx(-math.log(0.4), abs=1e-12)
    loss.backward()
    assert torch.isfinite(b.logits.grad).all()
