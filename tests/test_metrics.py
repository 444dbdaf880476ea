"""pass@k, avg@n and maj@n against their definitions; maj@n with missing answers and with each
suite's own answer equality (toy integers, normalised game strings, math-verify)."""
from __future__ import annotations

import random
from math import comb

import pandas as pd
import pytest

from stages.metrics import answer_groups, maj_at_n, pass_at_k, summarize
from verifiers.logic import LogicSuite
from verifiers.math_suite import MathSuite, same_math_answer
from verifiers.synlogic import SynLogicSuite
from verifiers.toy import ToySuite


def test_pass_at_k_matches_closed_form_on_random_cases():
    rng = random.Random(0)
    cases = [(n, c, k) for n in (1, 2, 5, 16, 64) for c in {0, n, rng.randint(0, n)} for k in {1, n, rng.randint(1, n)}]
    for n, c, k in cases:
        assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12), (n, c, k)


def test_pass_at_k_edges_and_errors():
    assert pass_at_k(8, 0, 8) == 0.0
    assert pass_at_k(8, 8, 1) == 1.0
    assert pass_at_k(8, 1, 1) == pytest.approx(1 / 8)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_maj_at_n_counts_votes_and_breaks_ties_by_first_seen():
    assert maj_at_n(["3", "3", "4"], [True, True, False]) is True
    assert maj_at_n(["4", "3", "3"], [False, True, True]) is True
    # tie 1-1: the answer seen first wins, whether or not it is correct
    assert maj_at_n(["4", "3"], [False, True]) is False
    assert maj_at_n(["3", "4"], [True, False]) is True
    # no extracted answer: no vote
    assert maj_at_n([None, None, "5"], [False, False, True]) is True
    assert maj_at_n([None, None], [False, False]) is False


def test_summarize_means_over_items_and_skips_k_above_n():
    groups = [(["1", "1", "2", "1"], [True, True, False, True]), (["9", "8", "9", "9"], [False] * 4)]
    m = summarize(groups, [1, 2, 8])
    assert m["pass@1"] == pytest.approx((0.75 + 0) / 2)
    assert m["pass@2"] == pytest.approx((1 - comb(1, 2) / comb(4, 2)) / 2)
    assert "pass@8" not in m
    assert m["avg@4"] == pytest.approx(0.375)
    assert m["maj@4"] == pytest.approx(0.5)


# --- maj@n: only extracted answers vote, grouped by the task's own equality -------------------

def test_missing_answers_never_vote_whatever_pandas_made_of_them(tmp_path):
    # three samples without an answer outnumber the one answer: they must not win the vote
    for missing in (None, float("nan"), pd.NA, "", "  "):
        assert maj_at_n([missing] * 3 + ["5"], [False] * 3 + [True]) is True, repr(missing)
    assert answer_groups([None, "5", float("nan"), " 5 "]) == [-1, 1, -1, 1]
    # what eval writes and the report reads back: a str column where None became NaN
    df = pd.DataFrame({"prompt_id": ["a"] * 4, "extracted": [None, None, None, "5"],
                       "correct": [False, False, False, True]})
    df.to_parquet(tmp_path / "s.parquet")
    back = pd.read_parquet(tmp_path / "s.parquet")
    assert not any(isinstance(e, str) for e in back["extracted"][:3])
    assert maj_at_n(list(back["extracted"]), list(back["correct"])) is True


def test_equivalent_answers_vote_together_per_suite():
    toy = ToySuite(sizes={"train": 1, "rl": 1, "eval": 1}, pretrain_size=1)
    # "07" and "7" are one answer (2 votes) against "8" (1 vote, seen first)
    assert maj_at_n(["8", "07", "7"], [False, True, True], toy.same_answer) is True
    assert maj_at_n(["8", "07", "7"], [False, True, True]) is False  # as plain strings: 1-1-1
    assert answer_groups(["8", "07", "7", None], toy.same_answer) == [0, 1, 1, -1]
    logic = LogicSuite()
    assert logic.same_answer("[1, 2]", "[1,2]") and logic.same_answer("a  b", " a b")
    assert logic.same_answer("ｘ", "x")  # NFKC
    assert not logic.same_answer("Ab", "ab") and not logic.same_answer("1 2", "12")
    assert maj_at_n(["[2,1]", "[1, 2]", "[1,2]"], [False, True, True], logic.same_answer)
    syn = SynLogicSuite()
    assert syn.same_answer("[[1, 2], [3, 4]]", "[[1,2],[3,4]]") and not syn.same_answer("1", "2")


def test_math_answers_vote_by_math_verify_equivalence():
    assert same_math_answer("\\frac{1}{2}", "0.5") and same_math_answer("\\dfrac12", "\\frac{1}{2}")
    assert same_math_answer("(x+1)^2", "x^2+2x+1") and not same_math_answer("0.5", "0.51")
    assert not same_math_answer("\\infty", "45")  # one-sided infinity: never equal
    math = MathSuite(warm=False)
    # 0.5, 1/2 and \frac{1}{2} are one answer with 3 votes against 2 votes for 3
    assert maj_at_n(["3", "0.5", "3", "1/2", "\\frac{1}{2}"], [False, True, False, True, True],
                    math.same_answer) is True
    assert maj_at_n(["3", "0.5", "3", "1/2", "\\frac{1}{2}"], [False, True, False, True, True]) is False


def test_summarize_votes_with_the_suites_equality():
    toy = ToySuite(sizes={"train": 1, "rl": 1, "eval": 1}, pretrain_size=1)
    groups = [(["8", "07", "7", None], [False, True, True, False]), ([None] * 4, [False] * 4)]
    assert summarize(groups, [1], toy.same_answer)["maj@4"] == 0.5
    assert summarize(groups, [1])["maj@4"] == 0.0
    with pytest.raises(ValueError):
        maj_at_n(["1"], [True, False])
