"""Objectives (issue 3): PEAR against a loop transcription of Algorithm 1, gradients, the registry.

Baselines against hand-computed values are in ``test_objectives_baselines.py``; the memory-safe
vocabulary functions in ``test_objectives_logprobs.py``.
"""
from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from stages.objectives import (REGISTRY, Objective, TokenBatch, get_objective, loss_items,
                               pear_weights, reduce_loss, token_logprobs)

CONF = Path(__file__).resolve().parents[1] / "conf" / "objective"


# --------------------------------------------------------------------------- reference


def naive_pear(logp_theta, logp_beta, mask, mode, block, gamma, delta_clip, log_g_clip):
    """Algorithm 1, one sequence at a time, Python floats, a loop over blocks (lines 1-20)."""
    out = torch.zeros_like(logp_theta, dtype=torch.float64)
    g_min, g_max = math.exp(log_g_clip[0]), math.exp(log_g_clip[1])
    for i in range(logp_theta.shape[0]):
        cols = [c for c in range(logp_theta.shape[1]) if mask[i, c] > 0]
        T = len(cols)
        if T == 0:
            continue
        # line 3: clipped per-token log-ratios
        delta = [min(max(float(logp_theta[i, c] - logp_beta[i, c]), delta_clip[0]), delta_clip[1])
                 for c in cols]
        # line 1: K = ceil(T / B) contiguous blocks, e_k = max I_k (1-indexed)
        K = math.ceil(T / block)
        blocks = [list(range(k * block + 1, min((k + 1) * block, T) + 1)) for k in range(K)]
        rho = [sum(delta[t - 1] for t in blk) for blk in blocks]          # line 6
        G = [0.0] * (T + 1)
        if mode == "uniform":                                              # lines 8-10
            g_T = min(max(math.exp(sum(rho)), g_min), g_max)
            G = [g_T] * (T + 1)
        else:                                                              # lines 14-20
            u = 0.0
            for k in range(K - 1, -1, -1):
                e_k = blocks[k][-1]
                g = min(max(math.exp((T - e_k) * math.log(gamma) + u), g_min), g_max)
                for t in blocks[k]:
                    G[t] = g
                u += rho[k]
        for t, c in enumerate(cols, start=1):
            out[i, c] = G[t]
    return out


def ragged_batch(rows=9, width=48, seed=0, dtype=torch.float64):
    """Random log-probs, responses of random length (0, 1, full width included) at random offsets:
    padding on the left, the right or both."""
    g = torch.Generator().manual_seed(seed)
    lengths = [0, 1, width, 2, 5] + torch.randint(3, width, (rows - 5,), generator=g).tolist()
    mask = torch.zeros(rows, width, dtype=dtype)
    for i, n in enumerate(lengths):
        start = int(torch.randint(0, width - n + 1, (1,), generator=g))
        mask[i, start:start + n] = 1
    logp_beta = -torch.rand(rows, width, generator=g, dtype=dtype) * 3
    # per-row drift so that some rows hit the log-G clip; noise so that δ is clipped both sides
    drift = torch.linspace(-0.4, 0.5, rows, dtype=dtype)[:, None]
    logp_theta = logp_beta + drift + 0.3 * torch.randn(rows, width, generator=g, dtype=dtype)
    return logp_theta, logp_beta, mask


# --------------------------------------------------------------------------- PEAR vs Algorithm 1


@pytest.mark.parametrize("gamma", [1.0, 0.999, 0.9, 0.5])
@pytest.mark.parametrize("mode,block", [("uniform", 1), ("suffix", 1), ("suffix", 2),
                                        ("suffix", 3), ("suffix", 4), ("suffix", 7),
                                        ("suffix", 100)])
@pytest.mark.parametrize("clips", [((-0.08, 0.3), (-10.0, 5.0)), ((-0.2, 0.1), (-1.0, 0.5))])
def test_pear_weights_match_algorithm_1(gamma, mode, block, clips):
    delta_clip, log_g_clip = clips
    for seed in range(3):
        lt, lb, mask = ragged_batch(seed=seed)
        got = pear_weights(lt, lb, mask, mode, block, gamma, delta_clip, log_g_clip)
        want = naive_pear(lt, lb, mask, mode, block, gamma, delta_clip, log_g_clip)
        assert got.dtype == torch.float64
        assert (got - want).abs().max().item() <= 1e-6
        assert (got[mask == 0] == 0).all()
    # δ clipping is active on both sides (log-Ĝ clipping: next test)
    d = (lt - lb)[mask > 0]
    assert (d < delta_clip[0]).any() and (d > delta_clip[1]).any()


@pytest.mark.parametrize("mode,block", [("uniform", 1), ("suffix", 1), ("suffix", 3)])
def test_pear_weights_clip_hits_both_bounds(mode, block):
    lt, lb, mask = ragged_batch(rows=12, width=64, seed=3)
    lt = lt + torch.linspace(-1, 1, 12, dtype=lt.dtype)[:, None]   # strong drift both ways
    for log_g_clip in [(-1.0, 0.5), (-2.0, 1.0)]:
        got = pear_weights(lt, lb, mask, mode, block, 0.99, log_g_clip=log_g_clip)
        want = naive_pear(lt, lb, mask, mode, block, 0.99, (-0.08, 0.3), log_g_clip)
        on = got[mask > 0]
        assert torch.isclose(on, torch.tensor(math.exp(log_g_clip[0]), dtype=on.dtype)).any()
        assert torch.isclose(on, torch.tensor(math.exp(log_g_clip[1]), dtype=on.dtype)).any()
        assert (got - want).abs().max().item() <= 1e-6


def test_block_one_is_pear_token_and_huge_block_is_discounted_sequence():
    lt, lb, mask = ragged_batch(seed=5)
    batch = TokenBatch(lt, lb, mask, torch.ones(lt.shape[0], dtype=torch.bool))
    _, w_token = get_objective("pear_token").fn(batch)
    _, w_block1 = get_objective("pear_block").fn(batch, block=1)
    assert torch.equal(w_token, w_block1)
    # one block covering the response: G_t = clip(γ^0 · empty product) = 1 on every token
    w = pear_weights(lt, lb, mask, "suffix", block=10_000)
    assert torch.equal(w, mask)


def test_pear_weights_float32_and_any_sequence_clip():
    lt, lb, mask = ragged_batch(seed=1, dtype=torch.float32)
    got = pear_weights(lt, lb, mask, "suffix", 4, 0.999, OmegaConf.create([-0.08, 0.3]),
                       OmegaConf.create([-10.0, 5.0]))
    want = naive_pear(lt.double(), lb.double(), mask, "suffix", 4, 0.999, (-0.08, 0.3),
                      (-10.0, 5.0))
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        pear_weights(lt, lb, mask, mode="token")


def test_pear_weights_by_hand():
    """T = 3, log π_θ − log π_β = [0.5, −0.05, −1] → δ = [0.3, −0.05, −0.08], γ = 0.9:
    token:  G = [γ² e^(−0.05−0.08), γ e^(−0.08), 1];  sequence: G = e^(0.3−0.05−0.08) everywhere;
    block B = 2 (blocks {1,2}, {3}): G = [γ e^(−0.08), γ e^(−0.08), 1]."""
    lt = torch.tensor([[0.0, 0.5, -0.05, -1.0, 0.0]], dtype=torch.float64)
    lb = torch.zeros_like(lt)
    mask = torch.tensor([[0, 1, 1, 1, 0]], dtype=torch.float64)
    e, g = math.exp, 0.9
    tok = [0, g * g * e(-0.13), g * e(-0.08), 1, 0]
    seq = [0] + [e(0.17)] * 3 + [0]
    blk = [0, g * e(-0.08), g * e(-0.08), 1, 0]
    for mode, block, want in [("suffix", 1, tok), ("uniform", 1, seq), ("suffix", 2, blk)]:
        got = pear_weights(lt, lb, mask, mode, block, gamma=g)
        assert torch.allclose(got, torch.tensor([want], dtype=torch.float64), atol=1e-12)


# --------------------------------------------------------------------------- gradients


def _full_batch(seed=0, vocab=11, topk=3):
    g = torch.Generator().manual_seed(seed)
    lt, lb, mask = ragged_batch(rows=6, width=10, seed=seed)
    logp = lt.clamp(max=-1e-3).clone().requires_grad_(True)
    logits = torch.randn(6, 10, vocab, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.stack([torch.randperm(vocab, generator=g)[:topk] for _ in range(60)])
    ids = ids.view(6, 10, topk)
    return TokenBatch(logp=logp, logp_beta=lb, mask=mask,
                      correct=torch.tensor([True, False, True, True, False, True]),
                      logits=logits, ref_logits=torch.randn(6, 10, vocab, generator=g,
                                                            dtype=torch.float64),
                      beta_topk_ids=ids, beta_topk_logp=-torch.rand(6, 10, topk, generator=g,
                                                                    dtype=torch.float64) * 4)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_weights_carry_no_gradient(name):
    """The weight is detached; for NLL-based objectives d L / d logp = −w·mask / N exactly, i.e.
    the gradient flows through the loss only, never through the weight's dependence on logp."""
    batch = _full_batch()
    loss_tok, weight = get_objective(name).fn(batch)
    assert loss_tok.shape == weight.shape == batch.logp.shape
    assert not weight.requires_grad and weight.grad_fn is None
    assert torch.isfinite(loss_tok).all() and torch.isfinite(weight).all()
    reduce_loss(loss_tok, weight, batch.mask).backward()
    nll_based = {"sft", "talr", "single_step_is", "top_logp", "bottom_logp", "pear_seq",
                 "pear_token", "pear_block", "pear_neg"}
    if name in nll_based:
        n = batch.mask.sum()
        assert torch.allclose(batch.logp.grad, -weight * batch.mask / n, atol=1e-12)


def test_pear_weights_detached_from_grad_input():
    lt, lb, mask = ragged_batch(seed=2)
    lt.requires_grad_(True)
    w = pear_weights(lt, lb, mask)
    assert not w.requires_grad
    (w.sum() + 0 * lt.sum()).backward()
    assert torch.count_nonzero(lt.grad) == 0


# --------------------------------------------------------------------------- pear_neg sign test


def _bigram_logp(table, seqs):
    """log π(y_t | y_{t−1}) of a bigram model: logits = table[prev]."""
    return token_logprobs(table[seqs[:, :-1]], seqs[:, 1:])


@pytest.mark.parametrize("neg_lambda", [1.0, 0.0])
def test_pear_neg_pushes_failures_down(neg_lambda):
    """Positives use tokens 0-4, failures tokens 5-9 (disjoint contexts of a bigram model).
    A few SGD steps on pear_neg raise the positives' log-likelihood and lower the failures';
    with λ = 0 the failures do not move."""
    torch.manual_seed(0)
    table = torch.nn.Parameter(0.1 * torch.randn(10, 10))
    seqs = torch.cat([torch.randint(0, 5, (3, 9)), torch.randint(5, 10, (3, 9))])
    correct = torch.tensor([True] * 3 + [False] * 3)
    mask = torch.ones(6, 8)
    mask[0, :2] = 0                      # some padding
    mask[4, -3:] = 0
    with torch.no_grad():
        logp_beta = _bigram_logp(table, seqs)

    def seq_ll():
        with torch.no_grad():
            ll = (_bigram_logp(table, seqs) * mask).sum(-1)
        return ll[correct].sum().item(), ll[~correct].sum().item()

    pos0, neg0 = seq_ll()
    opt = torch.optim.SGD([table], lr=0.5)
    for _ in range(5):
        batch = TokenBatch(_bigram_logp(table, seqs), logp_beta, mask, correct)
        loss = reduce_loss(*get_objective("pear_neg").fn(batch, neg_lambda=neg_lambda), mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    pos1, neg1 = seq_ll()
    assert pos1 > pos0 + 0.1
    if neg_lambda > 0:
        assert neg1 < neg0 - 0.1
    else:
        assert neg1 == pytest.approx(neg0, abs=1e-9)


def test_pear_neg_weights_by_hand():
    """Row 0 correct (PEAR_{B=1}), row 1 a failure: w = −λ · clip(exp(Σ δ)), λ = 0.5,
    δ = clip([0.1, −0.2]) = [0.1, −0.08] → w_fail = −0.5 e^0.02 on both tokens."""
    lt = torch.tensor([[0.1, -0.05], [0.1, -0.2]], dtype=torch.float64)
    batch = TokenBatch(lt, torch.zeros_like(lt), torch.ones_like(lt), torch.tensor([True, False]))
    _, w = get_objective("pear_neg").fn(batch, neg_lambda=0.5, gamma=0.9)
    want = torch.tensor([[0.9 * math.exp(-0.05), 1.0], [-0.5 * math.exp(0.02)] * 2],
                        dtype=torch.float64)
    assert torch.allclose(w, want, atol=1e-12)


# --------------------------------------------------------------------------- registry and conf


def test_registry_and_conf_files_match():
    confs = {p.stem for p in CONF.glob("*.yaml")}
    assert confs == set(REGISTRY), (confs ^ set(REGISTRY))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_conf_params_are_the_function_defaults(name):
    obj = REGISTRY[name]
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert cfg.name == name == obj.name and isinstance(obj, Objective)
    assert set(cfg) == {"name", "params", "data"}
    sig = inspect.signature(obj.fn).parameters
    defaults = {k: p.default for k, p in list(sig.items())[1:]}
    assert all(d is not inspect.Parameter.empty for d in defaults.values())
    params = OmegaConf.to_container(cfg.params)
    assert set(params) == set(defaults)
    for k, v in params.items():
        want = list(defaults[k]) if isinstance(defaults[k], tuple) else defaults[k]
        assert v == want, (name, k)
    # the flags the other stages read agree with the data section
    assert ("topk" in cfg.data) == obj.behavior_topk
    assert ("negatives_ratio" in cfg.data) == obj.uses_negatives
    assert ("ref_model" in cfg.data) == obj.needs_ref
    # YAML lists arrive as ListConfig: the function takes them as they are
    batch = _full_batch()
    loss_tok, weight = obj.fn(batch, **cfg.params)
    want_loss, want_w = obj.fn(batch)
    assert torch.allclose(loss_tok, want_loss) and torch.equal(weight, want_w)


def test_get_objective_unknown_lists_names():
    with pytest.raises(ValueError, match="pear_token"):
        get_objective("nope")


def test_reduce_loss_token_mean():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    w = torch.tensor([[1.0, 0.5, 2.0], [1.0, 1.0, -1.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert reduce_loss(loss, w, mask).item() == pytest.approx((1 + 6 + 4 + 5) / 4)
    assert reduce_loss(loss, w, mask, num_items=8).item() == pytest.approx(16 / 8)
    assert reduce_loss(loss, w, torch.zeros_like(mask)).item() == 0.0


def test_loss_items_counts_tokens_or_sequences():
    mask = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert int(loss_items(mask)) == 3
    assert int(loss_items(mask, "seq_sum")) == 2
    with pytest.raises(ValueError, match="token_mean, seq_sum"):
        loss_items(mask, "mean")
