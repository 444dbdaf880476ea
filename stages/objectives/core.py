"""The two types every objective shares, and the one reduction the SFT stage applies to all of them.

An objective is a pure function ``fn(batch: TokenBatch, **params) -> (loss_tok, weight)``: a
per-token loss ``[B, T]`` that carries the gradient and a per-token weight ``[B, T]`` that does not
(paper §3.2: ``sg[Ĝ_t]``). The SFT stage never looks inside; it calls :func:`reduce_loss`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor


@dataclass
class TokenBatch:
    """Per-token inputs of an objective, all aligned on the label positions ``[B, T]``.

    Attributes:
        logp: ``[B, T]`` log π_θ(y_t | x, y_<t) of the label token, with grad.
        logp_beta: ``[B, T]`` stored behavior log-probs log π_β(y_t | x, y_<t); any finite value
            (e.g. 0) where ``mask == 0``.
        mask: ``[B, T]`` float 0/1, 1 on response tokens (one contiguous run per row, anywhere in
            the row: left or right padding both work).
        correct: ``[B]`` bool; False rows are verified failures (only objectives with
            ``uses_negatives`` receive them).
        logits: ``[B, T, V]`` π_θ logits aligned with ``logp`` (sft_kl, kd, pear_kd), else None.
        ref_logits: ``[B, T, V]`` frozen reference (base) model logits, same alignment (sft_kl).
        beta_topk_ids: ``[B, T, K]`` long, behavior top-k token ids per position (kd, pear_kd).
        beta_topk_logp: ``[B, T, K]`` their behavior log-probs (unnormalised over the top-k).
    """

    logp: Tensor
    logp_beta: Tensor
    mask: Tensor
    correct: Tensor
    logits: Tensor | None = None
    ref_logits: Tensor | None = None
    beta_topk_ids: Tensor | None = None
    beta_topk_logp: Tensor | None = None


@dataclass(frozen=True)
class Objective:
    """A registered objective and what it needs from the score and SFT stages.

    Attributes:
        name: registry key, equal to the ``conf/objective/<name>.yaml`` file name.
        fn: ``fn(batch, **params) -> (loss_tok [B, T], weight [B, T] detached)``.
        needs_logits: the SFT stage must fill ``batch.logits``.
        needs_ref: the SFT stage must load the frozen reference model and fill ``batch.ref_logits``.
        behavior_topk: the score stage stores behavior top-k; the SFT stage fills ``beta_topk_*``.
        uses_negatives: the SFT stage mixes verified failures (``correct=False`` rows) into the
            data.
    """

    name: str
    fn: Callable[..., tuple[Tensor, Tensor]]
    needs_logits: bool = False
    needs_ref: bool = False
    behavior_topk: bool = False
    uses_negatives: bool = False


def reduce_loss(loss_tok: Tensor, weight: Tensor, mask: Tensor,
                num_tokens: float | Tensor | None = None) -> Tensor:
    """The one reduction, identical for every objective (issue 3; paper §3.2 and Appendix E.1).

        L = Σ_{b,t} loss_tok[b,t] · sg(weight[b,t]) · mask[b,t]  /  N,
        N = Σ_{b,t} mask[b,t]  (response tokens in the batch, clamped to ≥ 1)

    i.e. a token-mean over every response token of the batch: long sequences count in proportion
    to their length, and a weight of 0 (masked-out token of top_p, say) still counts in N, so the
    weights change the effective learning rate the way the paper's objectives do.

    Args:
        loss_tok: ``[B, T]`` per-token loss, with grad.
        weight: ``[B, T]`` per-token weight; detached here again whatever the caller did.
        mask: ``[B, T]`` 0/1, 1 on response tokens.
        num_tokens: optional denominator N to use instead of ``mask.sum()``: pass the number of
            response tokens of the whole optimizer step when accumulating gradients over
            micro-batches (or over data-parallel ranks), so that the result is the same token-mean.

    Returns:
        A scalar tensor.
    """
    mask = mask.to(loss_tok.dtype)
    total = (loss_tok * weight.detach().to(loss_tok.dtype) * mask).sum()
    denom = mask.sum() if num_tokens is None else num_tokens
    if isinstance(denom, Tensor):
        return total / denom.to(total.dtype).clamp(min=1.0)
    return total / max(float(denom), 1.0)
