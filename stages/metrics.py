"""Sample-based metrics and the statistics the report rests on: unbiased pass@k (Chen et al.
2021), avg@n, maj@n (majority voting among extracted answers, grouped by the task's equality),
Kendall τ-b and Spearman ρ with ties, percentile bootstrap."""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k = 1 − C(n−c, k) / C(n, k), in the numerically stable product form.

    ``n`` samples of which ``c`` are correct; requires 1 <= k <= n.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def has_answer(e: object) -> bool:
    """Whether ``e`` is an extracted answer: not None, not NaN / ``pd.NA`` (what a pandas column
    holds for a missing answer after parquet or groupby), not blank."""
    if e is None or (isinstance(e, float) and math.isnan(e)) or type(e).__name__ == "NAType":
        return False
    return bool(str(e).strip())


def answer_groups(extracted: Sequence[object],
                  same: Callable[[str, str], bool] | None = None) -> list[int]:
    """Group one item's answers by the task's equality: ``out[i]`` is the index of the first
    sample whose answer ``same``-equals sample ``i``'s (``same`` defaults to ``==`` on the
    stripped strings), -1 where sample ``i`` has no answer (``has_answer``).

    Each answer is compared with the first member of every group so far (a greedy clustering:
    equivalence such as math-verify's need not be transitive); distinct strings are compared
    once each, so the cost is (distinct answers) × (groups) calls of ``same``.
    """
    same = same or (lambda a, b: a == b)
    heads: list[tuple[int, str]] = []  # (first sample index, its answer) per group
    by_text: dict[str, int] = {}
    out = []
    for i, e in enumerate(extracted):
        if not has_answer(e):
            out.append(-1)
            continue
        text = str(e).strip()
        if text not in by_text:
            by_text[text] = next((h for h, a in heads if a == text or same(a, text)), i)
            if by_text[text] == i:
                heads.append((i, text))
        out.append(by_text[text])
    return out


def maj_at_n(extracted: Sequence[object], correct: Sequence[bool],
             same: Callable[[str, str], bool] | None = None,
             groups: Sequence[int] | None = None) -> bool:
    """Whether the most common answer is a correct one (majority voting, maj@n).

    Only samples with an extracted answer vote; answers vote together when the task deems them
    equal (``same``, e.g. ``suite.same_answer``; or precomputed ``groups`` from
    ``answer_groups``, -1 = no answer). Ties between groups go to the group seen first
    (deterministic, independent of correctness). The winning group is correct when any of its
    samples was judged correct (its members are equal answers). No vote at all counts as wrong.
    """
    if len(extracted) != len(correct):
        raise ValueError(f"maj@n: {len(extracted)} answers for {len(correct)} verdicts")
    g = list(groups) if groups is not None else answer_groups(extracted, same)
    votes = Counter(x for x in g if x >= 0)
    if not votes:
        return False
    best = max(votes.values())
    winner = next(x for x in g if x >= 0 and votes[x] == best)
    return any(bool(ok) for x, ok in zip(g, correct) if x == winner)


def summarize(groups: Sequence[tuple[Sequence[object], Sequence[bool]]], ks: Sequence[int],
              same: Callable[[str, str], bool] | None = None) -> dict:
    """Mean pass@k over items (k <= n), avg@n (mean per-sample accuracy) and maj@n (answers
    grouped by ``same``; see ``maj_at_n``)."""
    if not groups:
        raise ValueError("no eval items")
    n = len(groups[0][1])
    out: dict[str, float] = {}
    for k in ks:
        if k <= n:
            out[f"pass@{k}"] = float(np.mean([pass_at_k(len(c), sum(c), k) for _, c in groups]))
    out[f"avg@{n}"] = float(np.mean([np.mean(c) for _, c in groups]))
    out[f"maj@{n}"] = float(np.mean([maj_at_n(e, c, same) for e, c in groups]))
    out["n"] = n
    out["items"] = len(groups)
    return out


def pass_at_k_items(n: Sequence[int], c: Sequence[int], k: int) -> np.ndarray:
    """pass@k of each item (``n[i]`` samples of which ``c[i]`` correct); the mean is pass@k."""
    return np.array([pass_at_k(int(ni), int(ci), k) for ni, ci in zip(n, c)], dtype=float)


def average_ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n of ``x`` (ascending), ties sharing the mean of the ranks they span."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        ranks[tied] = ranks[tied].mean()
    return ranks


def _pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.shape} vs {y.shape}")
    return x, y


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b (ties in either variable corrected), as ``scipy.stats.kendalltau``.

    τ_b = (P − Q) / sqrt((P + Q + T_x)(P + Q + T_y)) over all pairs, P concordant, Q discordant,
    T_x (T_y) pairs tied only in x (y). NaN when n < 2 or either variable is constant.
    """
    x, y = _pairs(x, y)
    iu = np.triu_indices(len(x), k=1)
    sx = np.sign(x[:, None] - x[None, :])[iu]
    sy = np.sign(y[:, None] - y[None, :])[iu]
    denom = np.sqrt(np.sum(sx != 0) * np.sum(sy != 0))
    return float(np.sum(sx * sy) / denom) if denom > 0 else float("nan")


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ: Pearson correlation of the average ranks (ties share ranks). NaN when
    n < 2 or either variable is constant."""
    x, y = _pairs(x, y)
    if len(x) < 2:
        return float("nan")
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt(np.sum(rx**2) * np.sum(ry**2))
    return float(np.sum(rx * ry) / denom) if denom > 0 else float("nan")


def bootstrap_ci(values: Sequence[float], resamples: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (one value per eval item),
    resampling items with replacement. ``(nan, nan)`` without values or resamples."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0 or resamples <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
