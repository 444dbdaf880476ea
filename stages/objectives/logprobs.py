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

Evaluation without gradients (held-out NLL, the analysis KL, the hf engine's scoring) does not
need the ``[B, T, V]`` logits at all: :func:`lm_hidden` runs the model's decoder, and
:func:`head_logprobs` / :func:`head_vocab_kl` apply the output head to ``chunk_size`` labelled
positions at a time (prompt and padding positions are never projected). Peak memory is the
hidden states ``[B, T, H]`` plus one ``[chunk, V]`` block, in the model's dtype (bf16 stays
bf16; the softmax of a block is fp32). This needs a causal LM whose logits are its output
embedding applied to the decoder's last hidden state (``Qwen3ForCausalLM``, Llama, Mistral...);
models that scale or soft-cap their logits are refused. ``benchmarks/memory_logprobs.py``
measures it.
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


# --- Forward-only paths from the decoder's hidden states (no [B, T, V] logits) ---------------

def _check_head(model) -> torch.nn.Module:
    cfg = getattr(model, "config", None)
    for key in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        if getattr(cfg, key, None) not in (None, 1, 1.0):
            raise ValueError(f"{type(model).__name__} transforms its logits ({key}); the chunked "
                             "head path supports plain linear heads only")
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise ValueError(f"{type(model).__name__} has no linear output head")
    return head


@torch.no_grad()
def lm_hidden(model, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, torch.nn.Module]:
    """``([B, T, H]`` last hidden states, output head) of a causal LM: ``head(hidden)`` are its
    logits, which are never built here."""
    head = _check_head(model)
    out = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return out.last_hidden_state, head


def _positions(labels: Tensor) -> Tensor:
    return (labels.reshape(-1) >= 0).nonzero().squeeze(1)


@torch.no_grad()
def head_logprobs(hidden: Tensor, head: torch.nn.Module, labels: Tensor, topk: int = 0,
                  chunk_size: int | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Log π of each label, and optionally the top-k ids and log-probs, from hidden states.

    Args:
        hidden: ``[B, T, H]`` (``lm_hidden``), aligned so that ``head(hidden[b, t])`` predicts
            ``labels[b, t]``.
        head: the output head (``[V, H]`` linear).
        labels: ``[B, T]`` long; negative ids (-100) are skipped and give 0.
        topk: also return the ``topk`` most likely ids per labelled position.
        chunk_size: positions per chunk; None picks ``max(1, 2**25 // V)``.

    Returns:
        ``[B, T]`` fp32 log-probs; ``[B, T, k]`` top-k ids and fp32 log-probs (or None, None).
    """
    B, T, H = hidden.shape
    h, lab = hidden.reshape(-1, H), labels.reshape(-1)
    pos = _positions(labels)
    lp = torch.zeros(B * T, dtype=torch.float32, device=hidden.device)
    tk_ids = torch.zeros((B * T, topk), dtype=torch.long, device=hidden.device) if topk else None
    tk_lp = torch.zeros((B * T, topk), dtype=torch.float32, device=hidden.device) if topk else None
    rows = _rows(chunk_size, head.weight.shape[0])
    for s in range(0, len(pos), rows):
        idx = pos[s:s + rows]
        z = head(h[idx]).float()                                   # [chunk, V]
        lse = torch.logsumexp(z, dim=-1)
        lp[idx] = z.gather(-1, lab[idx, None])[:, 0] - lse
        if topk:
            top = torch.topk(z, topk, dim=-1)
            tk_ids[idx], tk_lp[idx] = top.indices, top.values - lse[:, None]
    if not topk:
        return lp.reshape(B, T), None, None
    return lp.reshape(B, T), tk_ids.reshape(B, T, topk), tk_lp.reshape(B, T, topk)


@torch.no_grad()
def head_vocab_kl(hidden_p: Tensor, head_p: torch.nn.Module, hidden_q: Tensor,
                  head_q: torch.nn.Module, mask: Tensor, chunk_size: int | None = None) -> Tensor:
    """``[B, T]`` KL(softmax(head_p(hidden_p)) ‖ softmax(head_q(hidden_q))) at the positions where
    ``mask`` > 0 (0 elsewhere), one ``[chunk, V]`` block of each model at a time, fp32."""
    B, T, H = hidden_p.shape
    hp, hq = hidden_p.reshape(-1, H), hidden_q.reshape(-1, hidden_q.shape[-1])
    pos = (mask.reshape(-1) > 0).nonzero().squeeze(1)
    kl = torch.zeros(B * T, dtype=torch.float32, device=hidden_p.device)
    rows = _rows(chunk_size, head_p.weight.shape[0])
    for s in range(0, len(pos), rows):
        idx = pos[s:s + rows]
        lp = torch.log_softmax(head_p(hp[idx]).float(), dim=-1)
        lq = torch.log_softmax(head_q(hq[idx]).float(), dim=-1)
        kl[idx] = (lp.exp() * (lp - lq)).sum(-1)
    return kl.reshape(B, T)
