"""The transformers engine: reproducible sampling, and teacher-forced scores that agree with it."""
from __future__ import annotations

import math

import pytest

from stages.engines import make_engine

CFG = {"engine": "hf", "device": "cpu", "dtype": "float32", "batch_size": 8}
PROMPTS = ["3+4=", "7-2+5=", "9+9-1="]


def test_generate_is_seeded_and_shaped(tiny_models):
    eng = make_engine(tiny_models["behavior"], CFG)
    a = eng.generate(PROMPTS, n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=5)
    b = eng.generate(PROMPTS, n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=5)
    c = eng.generate(PROMPTS, n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=6)
    assert [len(x) for x in a] == [3, 3, 3]
    assert [[g.token_ids for g in x] for x in a] == [[g.token_ids for g in x] for x in b]
    assert [[g.token_ids for g in x] for x in a] != [[g.token_ids for g in x] for x in c]
    for g in (g for x in a for g in x):
        assert len(g.logprobs) == len(g.token_ids) <= 12
        assert all(lp <= 0 and math.isfinite(lp) for lp in g.logprobs)
        eos = eng.tokenizer.eos_token_id
        assert (g.finish_reason == "stop") == (g.token_ids[-1] == eos)
        assert eos not in g.token_ids[:-1]


def test_teacher_forced_scores_equal_sampled_logprobs(tiny_models):
    """Scoring a sample under the model that drew it gives back its sampled log-probs."""
    eng = make_engine(tiny_models["behavior"], CFG)
    gens = eng.generate(PROMPTS, n=2, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=1)
    p_ids = [eng.tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS for _ in range(2)]
    r_ids = [g.token_ids for x in gens for g in x]
    scored = eng.score(p_ids, r_ids, topk=3)
    for g, s in zip((g for x in gens for g in x), scored):
        assert s.logprobs == pytest.approx(g.logprobs, abs=1e-4)
        assert len(s.topk_ids) == len(g.token_ids) and all(len(t) == 3 for t in s.topk_ids)
        # the top-1 alternative is at least as likely as the sampled token
        assert all(t[0] >= lp - 1e-5 for t, lp in zip(s.topk_logprobs, s.logprobs))


def test_greedy_needs_one_sample_and_unknown_engine_is_named(tiny_models):
    eng = make_engine(tiny_models["base"], CFG)
    with pytest.raises(ValueError, match="n=1"):
        eng.generate(PROMPTS, n=2, temperature=0.0, top_p=1.0, max_new_tokens=4, seed=0)
    with pytest.raises(ValueError, match="valid engines: hf"):
        make_engine(tiny_models["base"], {"engine": "nope"})
