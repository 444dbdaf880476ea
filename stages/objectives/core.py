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
        step_seq_nll: ``[R]`` detached mean NLL over the response tokens of every row of the
            optimizer step (all its micro-batches, all ranks; rows without response tokens left
            out), for objectives with ``needs_step_nll`` (TALR's τ); None otherwise, and then
            such an objective uses the rows of ``logp``.
    """

    logp: Tensor
    logp_beta: Tensor
    mask: Tensor
    correct: Tensor
    logits: Tensor | None = None
    ref_logits: Tensor | None = None
    beta_topk_ids: Tensor | None = None
    beta_topk_logp: Tensor | None = None
    step_seq_nll: Tensor | None = None


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
        needs_step_nll: the SFT stage must fill ``batch.step_seq_nll`` (a statistic of the whole
            optimizer step, not of the forward micro-batch).
    """

    name: str
    fn: Callable[..., tuple[Tensor, Tensor]]
    needs_logits: bool = False
    needs_ref: bool = False
    behavior_topk: bool = False
    uses_negatives: bool = False
    needs_step_nll: bool = False


REDUCTIONS = ("token_mean", "seq_sum")


def loss_items(mask: Tensor, reduction: str = "token_mean") -> Tensor:
    """The denominator's share of ``mask`` (``[B, T]``): its response tokens for ``token_mean``,
    its rows with at least one response token for ``seq_sum``; a 0-d tensor."""
    if reduction == "token_mean":
        return (mask > 0).sum()
    if reduction == "seq_sum":
        return (mask > 0).any(-1).sum()
    raise ValueError(f"unknown loss reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")


def reduce_loss(loss_tok: Tensor, weight: Tensor, mask: Tensor,
                num_items: float | Tensor | None = None) -> Tensor:
    """The one reduction, identical for every objective (issue 3; paper §3.2 and Appendix E.1).

        L = Σ_{b,t} loss_tok[b,t] · sg(weight[b,t]) · mask[b,t]  /  N

    ``N`` defaults to Σ mask (response tokens of the batch, clamped to ≥ 1): a token-mean over
    every response token, long sequences counting in proportion to their length, and a weight of
    0 (masked-out token of top_p, say) still counting in N, so the weights change the effective
    learning rate the way the paper's objectives do (E.1 writes TALR's loss this way).

    Under gradient accumulation or data parallelism the SFT stage passes ``num_items``: the
    :func:`loss_items` of the whole optimizer step (every micro-batch, every rank), so that the
    step's gradient is that of one token-mean over the step (``sft.loss_reduction: token_mean``),
    or of the mean over the step's sequences of each sequence's token sum (``seq_sum``, the
    Σ_t sg[Ĝ_t] ℓ_t that Algorithm 1 returns per sequence), whatever the micro-batching.

    Args:
        loss_tok: ``[B, T]`` per-token loss, with grad.
        weight: ``[B, T]`` per-token weight; detached here again whatever the caller did.
        mask: ``[B, T]`` 0/1, 1 on response tokens.
        num_items: optional denominator N to use instead of ``mask.sum()``.

    Returns:
        A scalar tensor.
    """
    mask = mask.to(loss_tok.dtype)
    total = (loss_tok * weight.detach().to(loss_tok.dtype) * mask).sum()
    denom = mask.sum() if num_items is None else num_items
    if isinstance(denom, Tensor):
        return total / denom.to(total.dtype).clamp(min=1.0)
    return total / max(float(denom), 1.0)
