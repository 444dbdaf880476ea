"""Vocabulary-level quantities computed without a full fp32 ``[B, T, V]`` tensor.

For a Qwen3 vocabulary (V = 151,936) and T = 4096, ``logits.float().log_softmax(-1)`` costs
2.5 GB per sequence, twice over in training (the fp32 copy and the saved output), plus the fp32
gradient. The functions here walk the flattened ``B·T`` positions in chunks of ``chunk_size``
rows, keep only a per-position log-sum-exp for the backward pass, and recompute the softmax of
one chunk at a time there. The only full-size tensors are the caller's ``logits`` and their
gradient, both in the logits' own dtype (e.g. bf16).

* :func:`token_logprobs`: log π_θ of the label (or of K candidate ids) at each position.
* :func:`vocab_kl`: KL(softmax(p) ‖ softmax(q)) over the vocabulary at each position, gradient to
  ``p`` only (``q`` is a frozen reference).

Both compute in fp32 (fp64 if the logits are fp64) whatever the logits' dtype. Neither supports
double backward.
"""
from __future__ import annotations

import torch
from torch import Tensor

# Rows per chunk when chunk_size is None: about 2**25 fp32 elements (128 MiB) per temporary.
_CHUNK_ELEMS = 2**25


def _rows(chunk_size: int | None, vocab: int) -> int:
    return max(1, chunk_size if chunk_size is not None else _CHUNK_ELEMS // vocab)


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


class _GatherLogprobs(torch.autograd.Function):
    """``out[n, k] = logits[n, ids[n, k]] - logsumexp(logits[n])``, chunked over rows n."""

    @staticmethod
    def forward(ctx, logits: Tensor, ids: Tensor, rows: int) -> Tensor:  # [N, V], [N, K]
        dt = _compute_dtype(logits)
        n = logits.shape[0]
        valid = ids >= 0
        safe = ids.clamp(min=0)
        out = torch.empty(ids.shape, dtype=dt, device=logits.device)
        lse = torch.empty(n, dtype=dt, device=logits.device)
        for s in range(0, n, rows):
            x = logits[s:s + rows].to(dt)
            lse[s:s + rows] = torch.logsumexp(x, dim=-1)
            out[s:s + rows] = x.gather(-1, safe[s:s + rows]) - lse[s:s + rows, None]
        out = out.masked_fill(~valid, 0.0)
        ctx.save_for_backward(logits, safe, valid, lse)
        ctx.rows = rows
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        logits, safe, valid, lse = ctx.saved_tensors
        rows = ctx.rows
        dt = lse.dtype
        g_out = grad_out.to(dt).masked_fill(~valid, 0.0)  # [N, K]
        grad = torch.empty_like(logits)
        for s in range(0, logits.shape[0], rows):
            go = g_out[s:s + rows]
            # d out[n,k] / d z[n,v] = 1[v == id_k] - softmax(z)_v
            g = torch.exp(logits[s:s + rows].to(dt) - lse[s:s + rows, None])
            g.mul_(-go.sum(-1, keepdim=True))
            g.scatter_add_(-1, safe[s:s + rows], go)
            grad[s:s + rows] = g
        return grad, None, None


def token_logprobs(logits: Tensor, labels: Tensor, chunk_size: int | None = None) -> Tensor:
    """Log-probability of each label under ``softmax(logits)``, memory-safe.

        out[b, t] = logits[b, t, y] − log Σ_v exp(logits[b, t, v]),   y = labels[b, t]

    Equal to ``logits.float().log_softmax(-1).gather(-1, labels[..., None])[..., 0]`` but never
    builds the fp32 ``[B, T, V]`` log-softmax: positions are processed ``chunk_size`` rows at a time
    in forward and backward (custom autograd function; only a per-position log-sum-exp is saved).

    Args:
        logits: ``[B, T, V]`` (any float dtype; bf16 is fine), aligned so that ``logits[b, t]``
            predicts ``labels[b, t]``.
        labels: ``[B, T]`` long; or ``[B, T, K]`` long to get the log-probs of K ids per position
            (used for the behavior top-k of kd). Negative ids (e.g. -100 padding) give 0 and no
            gradient.
        chunk_size: rows of the flattened ``B·T`` positions per chunk; None picks
            ``max(1, 2**25 // V)`` (about 128 MiB of fp32 per temporary).

    Returns:
        ``[B, T]`` (or ``[B, T, K]``) fp32 log-probs (fp64 if ``logits`` are fp64).

    Pass contiguous logits and shift the labels (``labels[:, :-1] = ids[:, 1:]``, −100 at the
    end) rather than slicing ``logits[:, :-1]``: a non-contiguous view is copied once (in its own
    dtype) by the flattening.
    """
    vocab = logits.shape[-1]
    single = labels.dim() == logits.dim() - 1
    ids = labels[..., None] if single else labels
    out = _GatherLogprobs.apply(logits.reshape(-1, vocab), ids.reshape(-1, ids.shape[-1]),
                                _rows(chunk_size, vocab))
    out = out.reshape(ids.shape)
    return out[..., 0] if single else out


class _VocabKL(torch.autograd.Function):
    """``kl[n] = Σ_v P_v (log P_v − log Q_v)``, ``P = softmax(p[n])``, ``Q = softmax(q[n])``."""

    @staticmethod
    def forward(ctx, p: Tensor, q: Tensor, rows: int) -> Tensor:  # [N, V], [N, V]
        dt = _compute_dtype(p)
        n = p.shape[0]
        kl = torch.empty(n, dtype=dt, device=p.device)
        for s in range(0, n, rows):
            lp = torch.log_softmax(p[s:s + rows].to(dt), dim=-1)
            lq = torch.log_softmax(q[s:s + rows].to(dt), dim=-1)
            kl[s:s + rows] = (lp.exp() * (lp - lq)).sum(-1)
        ctx.save_for_backward(p, q, kl)
        ctx.rows = rows
        return kl

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        p, q, kl = ctx.saved_tensors
        rows = ctx.rows
        dt = kl.dtype
        go = grad_out.to(dt)
        grad = torch.empty_like(p)
        for s in range(0, p.shape[0], rows):
            # d KL / d p_v = P_v · (log P_v − log Q_v − KL)
            lp = torch.log_softmax(p[s:s + rows].to(dt), dim=-1)
            lq = torch.log_softmax(q[s:s + rows].to(dt), dim=-1)
            g = (lp - lq).sub_(kl[s:s + rows, None]).mul_(lp.exp())
            grad[s:s + rows] = g.mul_(go[s:s + rows, None])
        return grad, None, None


def vocab_kl(logits: Tensor, ref_logits: Tensor, chunk_size: int | None = None) -> Tensor:
    """Per-position KL(π_θ ‖ π_ref) over the full vocabulary, memory-safe.

        kl[b, t] = Σ_v π_θ(v | ·) (log π_θ(v | ·) − log π_ref(v | ·)),
        π_θ = softmax(logits[b, t]),  π_ref = softmax(ref_logits[b, t])

    Args:
        logits: ``[B, T, V]`` policy logits, with grad.
        ref_logits: ``[B, T, V]`` frozen reference logits (no gradient is returned to them).
        chunk_size: rows of ``B·T`` per chunk; None picks ``max(1, 2**25 // V)``.

    Returns:
        ``[B, T]`` fp32 (fp64 for fp64 logits), ≥ 0 up to rounding.
    """
    vocab = logits.shape[-1]
    kl = _VocabKL.apply(logits.reshape(-1, vocab), ref_logits.detach().reshape(-1, vocab),
                        _rows(chunk_size, vocab))
    return kl.reshape(logits.shape[:-1])
