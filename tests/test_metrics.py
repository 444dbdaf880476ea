"""pass@k, avg@n and maj@n against their definitions."""
from __future__ import annotations

import random
from math import comb

import pytest

from stages.metrics import maj_at_n, pass_at_k, summarize


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
