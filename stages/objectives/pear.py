"""PEAR: importance-weighted SFT loss (paper §3, Algorithm 1; stabilisation §3.7 and §4.2).

Every token's NLL is multiplied by a stop-gradient weight Ĝ_t built from the per-token log-ratios
δ_t = clip(log π_θ(y_t|·) − log π_β(y_t|·), ℓ_Δ, u_Δ) of the same forward pass and the stored
behavior log-probs:

* ``pear_seq``   (§3.3, "uniform"):  Ĝ_t = clip(exp(Σ_j δ_j), G_min, G_max) for every t;
* ``pear_token`` (§3.4, B = 1):      Ĝ_t = clip(exp((T − t) log γ + Σ_{j>t} δ_j), G_min, G_max);
* ``pear_block`` (§3.5, block B):    Ĝ_t = clip(exp((T − e_k) log γ + Σ_{j>e_k} δ_j), ...) for t in
  block k, blocks of B tokens counted from the first response token, e_k the block's last index;
* ``pear_neg``   (§3.6, §4.5): PEAR on correct rows plus −λ·sg[Ĝ⁻]·NLL on verified failures,
  Ĝ⁻ the sequence-level weight of the failure.

Defaults (§4.2): γ = 0.999, log Δ clipped to [−0.08, 0.3], log Ĝ clipped to [−10, 5]. Clipping
log Ĝ then exponentiating equals clipping Ĝ to [e^−10, e^5] as Algorithm 1 writes it.

Deviations: none in the weight. ``pear_neg``'s λ is not given by the paper (default 1.0), and the
positive part uses the suffix/block weight of ``pear_token`` (the paper's Fig. 4a pairs negatives
with PEAR_{B=1}).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .core import TokenBatch

DELTA_CLIP = (-0.08, 0.3)
LOG_G_CLIP = (-10.0, 5.0)
GAMMA = 0.999


def pear_weights(logp_theta: Tensor, logp_beta: Tensor, mask: Tensor, mode: str = "suffix",
                 block: int = 1, gamma: float = GAMMA, delta_clip: Sequence[float] = DELTA_CLIP,
                 log_g_clip: Sequence[float] = LOG_G_CLIP) -> Tensor:
    """PEAR weights Ĝ_t of Algorithm 1, vectorised over the batch (no loop over tokens).

    With the response of a row at columns c_0 .. c_0+T−1 and t = 1..T its positions:

        δ_t   = clip(logp_theta_t − logp_beta_t, *delta_clip)                  (line 3)
        uniform: log Ĝ_t = Σ_{j=1..T} δ_j                                       (line 9)
        suffix:  log Ĝ_t = (T − e_k) log γ + Σ_{j>e_k} δ_j,  t ∈ I_k,            (line 16)
                 I_k = {(k−1)B+1 .. min(kB, T)},  e_k = min(kB, T)
        Ĝ_t   = exp(clip(log Ĝ_t, *log_g_clip))

    The suffix sum Σ_{j>e} δ_j is the exclusive reverse cumulative sum of δ read at column
    c_0 + e − 1; positions are ranks among the mask's ones (``cumsum(mask)``), so the response
    may sit anywhere in the row. The last block may be shorter than B (it ends at T).

    Args:
        logp_theta: ``[B, T]`` log π_θ of the label tokens (its gradient is not used).
        logp_beta: ``[B, T]`` stored behavior log-probs; any finite value off the mask.
        mask: ``[B, T]`` 0/1, 1 on the response tokens, one contiguous run per row.
        mode: ``"suffix"`` (token/block PEAR) or ``"uniform"`` (sequence PEAR; γ and block unused).
        block: block size B ≥ 1 (suffix mode); 1 is token-level PEAR.
        gamma: discount γ ∈ (0, 1].
        delta_clip: ``(ℓ_Δ, u_Δ)`` bounds of each log-ratio; any 2-sequence (list, ListConfig).
        log_g_clip: ``(log G_min, log G_max)`` bounds of log Ĝ.

    Returns:
        ``[B, T]`` detached Ĝ_t on mask positions, 0 elsewhere; fp32 (fp64 for fp64 inputs).
    """
    if mode not in ("suffix", "uniform"):
        raise ValueError(f"unknown PEAR mode {mode!r}; valid modes: suffix, uniform")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    dt = torch.float64 if logp_theta.dtype == torch.float64 else torch.float32
    on = mask > 0
    d_lo, d_hi = (float(v) for v in delta_clip)
    g_lo, g_hi = (float(v) for v in log_g_clip)
    with torch.no_grad():
        delta = (logp_theta.detach().to(dt) - logp_beta.to(dt)).clamp(d_lo, d_hi)
        delta = torch.where(on, delta, torch.zeros((), dtype=dt, device=delta.device))
        if mode == "uniform":
            log_g = delta.sum(-1, keepdim=True).expand_as(delta)
        else:
            # suffix[c] = Σ_{c' > c} δ_c'  (exclusive reverse cumulative sum; δ = 0 off the mask)
            suffix = delta.flip(-1).cumsum(-1).flip(-1) - delta
            rank = on.long().cumsum(-1)                   # position t of each response token
            length = rank[:, -1:]                         # T per row
            block_end = torch.minimum((rank - 1) // block * block + block, length)   # e_k
            # column of the block's last token: first column whose rank reaches e_k
            col = torch.searchsorted(rank, block_end.clamp(min=1)).clamp(max=delta.shape[-1] - 1)
            log_g = suffix.gather(-1, col) + (length - block_end).to(dt) * math.log(gamma)
        g = log_g.clamp(g_lo, g_hi).exp()
        return torch.where(on, g, torch.zeros((), dtype=dt, device=g.device))


def _nll_weighted(batch: TokenBatch, weight: Tensor) -> tuple[Tensor, Tensor]:
    return -batch.logp, weight.to(batch.logp.dtype)


def pear_seq(batch: TokenBatch, delta_clip: Sequence[float] = DELTA_CLIP,
             log_g_clip: Sequence[float] = LOG_G_CLIP) -> tuple[Tensor, Tensor]:
    """Sequence-level PEAR (§3.3; Algorithm 1 "uniform"): ℓ_t = −log π_θ(y_t), w_t = Ĝ_T.

    Every token of a response gets the clipped whole-sequence ratio
    Ĝ = clip(exp(Σ_t clip(log π_θ/π_β, ℓ_Δ, u_Δ)), G_min, G_max).

    Args:
        batch: ``logp``, ``logp_beta``, ``mask`` ``[B, T]``.
    """
    return _nll_weighted(batch, pear_weights(batch.logp, batch.logp_beta, batch.mask, "uniform",
                                             delta_clip=delta_clip, log_g_clip=log_g_clip))


def pear_token(batch: TokenBatch, gamma: float = GAMMA, delta_clip: Sequence[float] = DELTA_CLIP,
               log_g_clip: Sequence[float] = LOG_G_CLIP) -> tuple[Tensor, Tensor]:
    """Token-level PEAR (§3.4, B = 1): ℓ_t = −log π_θ(y_t), w_t = clip(γ^(T−t) Π_{j>t} Δ_j).

    Args:
        batch: ``logp``, ``logp_beta``, ``mask`` ``[B, T]``.
    """
    return _nll_weighted(batch, pear_weights(batch.logp, batch.logp_beta, batch.mask, "suffix", 1,
                                             gamma, delta_clip, log_g_clip))


def pear_block(batch: TokenBatch, block: int = 4, gamma: float = GAMMA,
               delta_clip: Sequence[float] = DELTA_CLIP,
               log_g_clip: Sequence[float] = LOG_G_CLIP) -> tuple[Tensor, Tensor]:
    """Block-level PEAR (§3.5): ℓ_t = −log π_θ(y_t), w_t = clip(γ^(T−e_k) Π_{j>e_k} Δ_j), t ∈ I_k.

    Blocks of ``block`` tokens from the first response token; e_k is the block's last position.
    Default B = 4 (issue 3; the paper does not fix one).

    Args:
        batch: ``logp``, ``logp_beta``, ``mask`` ``[B, T]``.
    """
    return _nll_weighted(batch, pear_weights(batch.logp, batch.logp_beta, batch.mask, "suffix",
                                             int(block), gamma, delta_clip, log_g_clip))


def pear_neg(batch: TokenBatch, neg_lambda: float = 1.0, block: int = 1, gamma: float = GAMMA,
             delta_clip: Sequence[float] = DELTA_CLIP,
             log_g_clip: Sequence[float] = LOG_G_CLIP) -> tuple[Tensor, Tensor]:
    """PEAR with verified failures (§3.6, §4.5): attract positives, repel failures.

        correct rows:  ℓ_t = −log π_θ(y_t),  w_t =  Ĝ_t        (suffix PEAR, block B, γ)
        failure rows:  ℓ_t = −log π_θ(y_t),  w_t = −λ · Ĝ⁻      (Ĝ⁻ = sequence-level weight)

    so that the shared reduction gives  Σ_pos Ĝ_t ℓ_t − λ Σ_neg Ĝ⁻ Σ_t ℓ_t  over all response
    tokens: gradient ascent on the failures' NLL, scaled by how likely the failure still is under
    π_θ relative to π_β (Ĝ⁻ shrinks to e^−10 as the failure is pushed down, which bounds the term).

    Args:
        batch: ``logp``, ``logp_beta``, ``mask`` ``[B, T]``, ``correct`` ``[B]`` bool.
        neg_lambda: λ ≥ 0, strength of the repulsive term (not given in the paper).
        block, gamma, delta_clip, log_g_clip: as in :func:`pear_weights` for the positive rows.
    """
    pos = pear_weights(batch.logp, batch.logp_beta, batch.mask, "suffix", int(block), gamma,
                       delta_clip, log_g_clip)
    neg = pear_weights(batch.logp, batch.logp_beta, batch.mask, "uniform",
                       delta_clip=delta_clip, log_g_clip=log_g_clip)
    correct = batch.correct.to(torch.bool)[:, None]
    return _nll_weighted(batch, torch.where(correct, pos, -float(neg_lambda) * neg))
