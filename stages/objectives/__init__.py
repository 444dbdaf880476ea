"""SFT-stage objectives: PEAR in all its variants and the paper's baselines (issue 3).

Each objective is a pure function ``fn(batch: TokenBatch, **params) -> (loss_tok, weight)`` with
``[B, T]`` outputs: the loss carries the gradient, the weight never does. Its hyper-parameters and
the paper's defaults are in ``conf/objective/<name>.yaml``; the SFT stage looks it up with
:func:`get_objective` and reduces every objective the same way with :func:`reduce_loss`
(Σ loss·sg(weight)·mask / number of response tokens of the optimizer step, or of its sequences
with ``sft.loss_reduction: seq_sum``).

Modules:
    core       TokenBatch, Objective, reduce_loss, loss_items
    logprobs   token_logprobs, vocab_kl: chunked, no fp32 [B, T, V] tensor; lm_hidden,
               head_logprobs, head_vocab_kl: forward only, no [B, T, V] tensor at all
    pear       pear_weights (Algorithm 1) and pear_seq / pear_token / pear_block / pear_neg
    baselines  sft, sft_kl, general_family, top/bottom_p, top/bottom_logp, talr, single_step_is
    distill    kd, pear_kd (forward KL from the behavior top-k)
    registry   REGISTRY, get_objective

Paper: "Good SFT Optimizes for SFT, Better SFT Prepares for Reinforcement Learning" (PEAR,
Zhang et al. 2026).
"""
from .core import REDUCTIONS, Objective, TokenBatch, loss_items, reduce_loss
from .logprobs import head_logprobs, head_vocab_kl, lm_hidden, token_logprobs, vocab_kl
from .pear import pear_weights
from .registry import REGISTRY, get_objective

__all__ = ["REDUCTIONS", "REGISTRY", "Objective", "TokenBatch", "get_objective", "head_logprobs",
           "head_vocab_kl", "lm_hidden", "loss_items", "pear_weights", "reduce_loss", "token_logprobs", "vocab_kl"]
