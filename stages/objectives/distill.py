"""Knowledge distillation from the behavior policy, plain and PEAR-weighted (paper §4.3, Fig. 4b).

The per-token loss is the forward KL from the behavior policy to π_θ at each logged prefix,

    ℓ_t = KL(π̃_β(·|x, y_<t) ‖ π_θ(·|x, y_<t)) = Σ_{v ∈ top-k} π̃_β(v) (log π̃_β(v) − log π_θ(v)).

Top-k truncation: the score stage stores only the behavior's k most likely ids and their
log-probs. π̃_β is that truncation renormalised to sum to one over the k ids
(π̃_β = softmax of the stored log-probs); the mass outside the top-k is dropped. π_θ is *not*
renormalised: log π_θ(v) is the full-vocabulary log-softmax read at the k ids, so ℓ_t is a proper
KL (≥ 0, zero iff π_θ = π̃_β) and it also pushes π_θ's mass off the ids outside the top-k.
Deviation: the paper's KL is over the full behavior distribution, which is not stored.

``pear_kd`` multiplies ℓ_t by the token-level PEAR weight (B = 1), the same suffix ratio as
with NLL (§4.3: "PEAR_{B=1} uses the exact same weighting as we apply it with NLL").
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .core import TokenBatch
from .logprobs import token_logprobs
from .pear import DELTA_CLIP, GAMMA, LOG_G_CLIP, pear_weights


def topk_forward_kl(logits: Tensor, topk_ids: Tensor, topk_logp: Tensor) -> Tensor:
    """KL(π̃_β ‖ π_θ) over the behavior top-k at each position (see module docstring).

    Args:
        logits: ``[B, T, V]`` π_θ logits, with grad.
        topk_ids: ``[B, T, K]`` long behavior top-k ids (negative ids are ignored).
        topk_logp: ``[B, T, K]`` their behavior log-probs (need not sum to one).

    Returns:
        ``[B, T]`` fp32, with grad to ``logits``.
    """
    logp_theta = token_logprobs(logits, topk_ids)                       # [B, T, K]
    valid = topk_ids >= 0
    ref = topk_logp.detach().to(logp_theta.dtype).masked_fill(~valid, float("-inf"))
    # padded ids (and fully padded positions) contribute 0 · (0 − 0): no NaN in value or grad
    log_q = torch.log_softmax(ref, dim=-1).masked_fill(~valid, 0.0)
    q = log_q.exp() * valid
    return (q * (log_q - logp_theta)).sum(-1)


def _kl(batch: TokenBatch) -> Tensor:
    if batch.logits is None or batch.beta_topk_ids is None or batch.beta_topk_logp is None:
        raise ValueError("kd objectives need batch.logits, batch.beta_topk_ids and beta_topk_logp")
    return topk_forward_kl(batch.logits, batch.beta_topk_ids, batch.beta_topk_logp)


def kd(batch: TokenBatch) -> tuple[Tensor, Tensor]:
    """Forward-KL distillation from the behavior top-k (§4.3, Fig. 4b).

        ℓ_t = KL(π̃_β ‖ π_θ),  w_t = 1.

    Args:
        batch: ``logits`` ``[B, T, V]``, ``beta_topk_ids``/``beta_topk_logp`` ``[B, T, K]``.
    """
    kl = _kl(batch).to(batch.logp.dtype)
    return kl, torch.ones_like(kl).detach()


def pear_kd(batch: TokenBatch, gamma: float = GAMMA, delta_clip: Sequence[float] = DELTA_CLIP,
            log_g_clip: Sequence[float] = LOG_G_CLIP) -> tuple[Tensor, Tensor]:
    """PEAR-weighted distillation (§4.3, Fig. 4b): ℓ_t = KL(π̃_β ‖ π_θ), w_t = Ĝ_t of PEAR_{B=1}.

    Ĝ_t = clip(γ^(T−t) Π_{j>t} clip(π_θ(y_j)/π_β(y_j))) from the label tokens' log-probs, exactly
    as :func:`stages.objectives.pear.pear_token`.

    Args:
        batch: ``logp``, ``logp_beta``, ``mask`` ``[B, T]``, ``logits`` ``[B, T, V]``,
            ``beta_topk_ids``/``beta_topk_logp`` ``[B, T, K]``.
        gamma, delta_clip, log_g_clip: as in :func:`pear_weights`.
    """
    weight = pear_weights(batch.logp, batch.logp_beta, batch.mask, "suffix", 1, gamma,
                          delta_clip, log_g_clip)
    return _kl(batch).to(batch.logp.dtype), weight.to(batch.logp.dtype)
