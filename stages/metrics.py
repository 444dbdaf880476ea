"""Sample-based metrics and the statistics the report rests on: unbiased pass@k, avg@n, maj@n
(Chen et al. 2021; LIBRARIES.md), Kendall τ-b and Spearman ρ with ties, percentile bootstrap."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

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


def maj_at_n(extracted: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """Whether the most common extracted answer is a correct one.

    Responses without an extracted answer do not vote. Ties between answers are broken by the
    answer that appears first among the samples (deterministic, independent of correctness).
    No vote at all counts as wrong.
    """
    votes = Counter(e for e in extracted if e is not None)
    if not votes:
        return False
    best = max(votes.values())
    winner = next(e for e in extracted if e is not None and votes[e] == best)
    return any(ok for e, ok in zip(extracted, correct) if e == winner)


def summarize(groups: Sequence[tuple[Sequence[str | None], Sequence[bool]]], ks: Sequence[int]) -> dict:
    """Mean pass@k over items (k <= n), avg@n (mean per-sample accuracy) and maj@n."""
    if not groups:
        raise ValueError("no eval items")
    n = len(groups[0][1])
    out: dict[str, float] = {}
    for k in ks:
        if k <= n:
            out[f"pass@{k}"] = float(np.mean([pass_at_k(len(c), sum(c), k) for _, c in groups]))
    out[f"avg@{n}"] = float(np.mean([np.mean(c) for _, c in groups]))
    out[f"maj@{n}"] = float(np.mean([maj_at_n(e, c) for e, c in groups]))
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
