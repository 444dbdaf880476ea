"""Sample-based metrics: unbiased pass@k, avg@n, maj@n (Chen et al. 2021; LIBRARIES.md)."""
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
