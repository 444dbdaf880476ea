"""Forward-only log-probs from hidden states (no [B, T, V] logits) equal the full-logits path."""
from __future__ import annotations

import pytest
import torch

from stages.objectives import head_logprobs, head_vocab_kl, lm_hidden, token_logprobs, vocab_kl


def _models():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                      tie_word_embeddings=False)
    return Qwen3ForCausalLM(cfg).eval(), Qwen3ForCausalLM(cfg).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (3, 11), generator=g)
    attn = torch.ones_like(ids)
    attn[1, 8:] = 0  # right padding
    labels = torch.nn.functional.pad(ids[:, 1:], (0, 1), value=-100)
    labels[:, :3] = -100  # prompt positions
    labels[1, 7:] = -100
    return ids, attn, labels


@torch.no_grad()
def test_head_logprobs_and_topk_equal_the_full_logits(monkeypatch):
    model, _ = _models()
    ids, attn, labels = _batch()
    logits = model(input_ids=ids, attention_mask=attn).logits
    want = token_logprobs(logits, labels)
    full = torch.log_softmax(logits.double(), -1)
    hidden, head = lm_hidden(model, ids, attn)
    for chunk in (None, 4):  # several chunks and one
        lp, tk_ids, tk_lp = head_logprobs(hidden, head, labels, topk=3, chunk_size=chunk)
        assert torch.allclose(lp, want, atol=1e-5)
        on = labels >= 0
        assert (lp[~on] == 0).all() and on.sum() == 7 + 4 + 7
        top = torch.topk(full, 3, dim=-1)
        assert torch.equal(tk_ids[on], top.indices[on])
        assert torch.allclose(tk_lp[on].double(), top.values[on], atol=1e-5)


@torch.no_grad()
def test_head_vocab_kl_equals_the_full_logits_kl():
    a, b = _models()
    ids, attn, labels = _batch()
    mask = (labels >= 0).float()
    want = vocab_kl(a(input_ids=ids, attention_mask=attn).logits,
                    b(input_ids=ids, attention_mask=attn).logits) * mask
    ha, head_a = lm_hidden(a, ids, attn)
    hb, head_b = lm_hidden(b, ids, attn)
    got = head_vocab_kl(ha, head_a, hb, head_b, mask, chunk_size=5)
    assert torch.allclose(got, want, atol=1e-6) and (got[mask > 0] > 0).all()


def test_models_that_transform_their_logits_are_refused():
    model, _ = _models()
    model.config.final_logit_softcapping = 30.0
    ids, attn, _ = _batch()
    with pytest.raises(ValueError, match="final_logit_softcapping"):
        lm_hidden(model, ids, attn)


def test_heldout_nll_is_the_mean_response_token_nll():
    from stages.sft_data import Collator
    from stages.sft_trainer import mean_nll

    model, _ = _models()
    rows = [{"prompt_ids": [5, 6, 7], "response_ids": [8, 9, 1], "behavior_logprobs": [0.0] * 3,
             "correct": True},
            {"prompt_ids": [4], "response_ids": [3, 2], "behavior_logprobs": [0.0] * 2,
             "correct": True}]
    want = []
    with torch.no_grad():
        for r in rows:
            seq = torch.tensor([r["prompt_ids"] + r["response_ids"]])
            lp = torch.log_softmax(model(input_ids=seq).logits[0].double(), -1)
            p = len(r["prompt_ids"])
            want += [-lp[p - 1 + t, tok].item() for t, tok in enumerate(r["response_ids"])]
    got = mean_nll(model, rows, Collator(pad_id=0), batch_size=2, dev="cpu")
    assert got == pytest.approx(sum(want) / len(want), rel=1e-5)
