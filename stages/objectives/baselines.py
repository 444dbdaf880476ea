"""The baselines PEAR is compared with (paper §2 Table 1, §4.3, Appendix E).

p_t = π_θ(y_t | x, y_<t) is the probability of the label token. Each function returns the per-token
loss (with grad) and a detached per-token weight; thresholds and TALR's adaptive weights live in
the weight, so the weight shows which tokens an objective trains on.

| name | ℓ_t | w_t | source |
|---|---|---|---|
| sft | −log p | 1 | §2 |
| sft_kl | −log p + β KL(π_θ ‖ π_ref) | 1 | §2, β ∈ {0.03, 0.1, 0.3, 1} |
| general_family | (1 − p^α)/α | 1 | Table 1, E.2 |
| top_p / bottom_p | 1 − p | 1[p ≥ q] / 1[p ≤ q] | Table 1, Table 5 |
| top_logp / bottom_logp | −log p | 1[p ≥ q] / 1[p ≤ q] | Table 1, E.2 |
| talr | −log p | max(p^(1/τ), w_min) | E.1 |
| single_step_is | −log p | exp(clip(log p − log p_β)) | §4.3 |

Deviations: q = 0.2 is the paper's value for top_logp only (E.2); the other thresholded variants
use the same default for lack of a stated one. general_family defaults to α = 1 (the "−p" member of
E.2's main results). TALR's τ is the median over the rows of the whole optimizer step (every
micro-batch and rank: ``TokenBatch.step_seq_nll``, filled by the SFT stage), the paper's batch.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .core import TokenBatch
from .logprobs import vocab_kl
from .pear import DELTA_CLIP


def _ones(batch: TokenBatch) -> Tensor:
    return torch.ones_like(batch.logp).detach()


def sft(batch: TokenBatch) -> tuple[Tensor, Tensor]:
    """Standard SFT (§2): ℓ_t = −log p_t, w_t = 1.

    Args:
        batch: ``logp`` ``[B, T]``.
    """
    return -batch.logp, _ones(batch)


def sft_kl(batch: TokenBatch, beta: float = 0.1) -> tuple[Tensor, Tensor]:
    """KL-regularised SFT (§2): ℓ_t = −log p_t + β KL(π_θ(·|x, y_<t) ‖ π_ref(·|x, y_<t)), w_t = 1.

    The KL is exact over the vocabulary at every response position of the logged data
    (teacher-forced prefixes), π_ref the frozen base model. Deviation: the paper writes the KL
    as an expectation over x only; we evaluate it on the dataset's prefixes, the usual estimate.

    Args:
        batch: ``logp`` ``[B, T]``, ``logits`` and ``ref_logits`` ``[B, T, V]``.
        beta: β ≥ 0; the paper sweeps {0.03, 0.1, 0.3, 1}.
    """
    if batch.logits is None or batch.ref_logits is None:
        raise ValueError("sft_kl needs batch.logits and batch.ref_logits")
    kl = vocab_kl(batch.logits, batch.ref_logits).to(batch.logp.dtype)
    return -batch.logp + float(beta) * kl, _ones(batch)


def general_family(batch: TokenBatch, alpha: float = 1.0) -> tuple[Tensor, Tensor]:
    """Probability family of Li et al. (Table 1, E.2): ℓ_t = (1 − p_t^α)/α, w_t = 1.

    Computed as −expm1(α log p)/α, which is exact for small α and tends to −log p; α = 0 is
    −log p exactly (the α → 0 limit, NLL). α = 1 is 1 − p.

    Args:
        batch: ``logp`` ``[B, T]``.
        alpha: α; 0 gives NLL.
    """
    alpha = float(alpha)
    if alpha == 0.0:
        return -batch.logp, _ones(batch)
    return -torch.expm1(alpha * batch.logp) / alpha, _ones(batch)


def _thresholded(batch: TokenBatch, loss: Tensor, q: float, top: bool) -> tuple[Tensor, Tensor]:
    p = batch.logp.detach().exp()
    keep = p >= float(q) if top else p <= float(q)
    return loss, keep.to(batch.logp.dtype)


def top_p(batch: TokenBatch, q: float = 0.2) -> tuple[Tensor, Tensor]:
    """OnlyTopP-q (Table 1): ℓ_t = 1 − p_t, w_t = 1[p_t ≥ q].

    Args:
        batch: ``logp`` ``[B, T]``.
        q: probability threshold in [0, 1].
    """
    return _thresholded(batch, -torch.expm1(batch.logp), q, top=True)


def bottom_p(batch: TokenBatch, q: float = 0.2) -> tuple[Tensor, Tensor]:
    """OnlyBottomP-q (Table 1): ℓ_t = 1 − p_t, w_t = 1[p_t ≤ q].

    Args:
        batch: ``logp`` ``[B, T]``.
        q: probability threshold in [0, 1].
    """
    return _thresholded(batch, -torch.expm1(batch.logp), q, top=False)


def top_logp(batch: TokenBatch, q: float = 0.2) -> tuple[Tensor, Tensor]:
    """OnlyTopLogP-q (Table 1, E.2): ℓ_t = −log p_t, w_t = 1[p_t ≥ q]; E.2 uses q = 0.2.

    Args:
        batch: ``logp`` ``[B, T]``.
        q: probability threshold in [0, 1].
    """
    return _thresholded(batch, -batch.logp, q, top=True)


def bottom_logp(batch: TokenBatch, q: float = 0.2) -> tuple[Tensor, Tensor]:
    """OnlyBottomLogP-q (Table 1): ℓ_t = −log p_t, w_t = 1[p_t ≤ q].

    Args:
        batch: ``logp`` ``[B, T]``.
        q: probability threshold in [0, 1].
    """
    return _thresholded(batch, -batch.logp, q, top=False)


def talr(batch: TokenBatch, w_min: float = 0.01) -> tuple[Tensor, Tensor]:
    """Token-Adaptive Loss Reweighting (Appendix E.1): ℓ_t = −log p_t,

        w_t = max(sg(exp(−ℓ_t / τ)), w_min) = max(sg(p_t^(1/τ)), w_min),
        τ = median over the batch's rows of (mean of ℓ_t over the row's response tokens).

    The batch is the optimizer step's: ``batch.step_seq_nll`` holds every row of it (gathered
    over micro-batches and ranks by the SFT stage); without it, the rows of ``batch`` itself.
    The shared reduction then gives E.1's token-mean (1/N) Σ_t w_t ℓ_t. The median is the
    interpolating one (mean of the two middle values for an even row count); rows without
    response tokens are left out; τ is floored at 1e-6.

    Args:
        batch: ``logp``, ``mask`` ``[B, T]``; optional ``step_seq_nll`` ``[R]``.
        w_min: weight floor (E.1: 0.01 in all experiments).
    """
    nll = -batch.logp.detach()
    rows = batch.step_seq_nll
    if rows is None:
        rows = row_mean_nll(batch.logp, batch.mask)
    rows = rows.detach().to(nll.dtype)
    tau = rows.quantile(0.5).clamp(min=1e-6) if rows.numel() else nll.new_tensor(1.0)
    weight = torch.exp(-nll / tau).clamp(min=float(w_min))
    return -batch.logp, weight


def row_mean_nll(logp: Tensor, mask: Tensor) -> Tensor:
    """``[R]`` mean of −logp over each row's response tokens, rows without any left out.

    Args:
        logp: ``[B, T]`` label log-probs.
        mask: ``[B, T]`` 0/1 response mask.
    """
    nll = -logp.detach()
    m = mask.to(nll.dtype)
    count = m.sum(-1)
    return ((nll * m).sum(-1) / count.clamp(min=1))[count > 0]


def single_step_is(batch: TokenBatch,
                   delta_clip: Sequence[float] = DELTA_CLIP) -> tuple[Tensor, Tensor]:
    """Single-step importance weight (§4.3 "You need to weigh the future"): ℓ_t = −log p_t,

        w_t = exp(clip(log π_θ(y_t) − log π_β(y_t), ℓ_Δ, u_Δ)) = Δ̂_t,

    the ratio of the token itself, computed and clipped exactly as PEAR's Δ_t ([−0.08, 0.3]).

    Args:
        batch: ``logp``, ``logp_beta`` ``[B, T]``.
        delta_clip: ``(ℓ_Δ, u_Δ)`` bounds of the log-ratio.
    """
    lo, hi = (float(v) for v in delta_clip)
    log_ratio = (batch.logp.detach() - batch.logp_beta.to(batch.logp.dtype)).clamp(lo, hi)
    return -batch.logp, log_ratio.exp()
