"""The report's paired bootstrap at the default study's size: seconds, and the ratio to a plain loop.

    python benchmarks/report_stats.py                     # 6 objectives x 3 seeds x 200 items, 1000 resamples
    python benchmarks/report_stats.py --objectives 13 --items 500

``stages.report_stats.analyse`` resamples eval items and seeds once per draw for every objective
and both phases, and computes every objective's mean, the pairwise differences and Kendall τ /
Spearman ρ of each proxy (3 item-level offline columns and 5 per-seed ones, as the toy report
has) against online pass@1, vectorised with numpy. The baseline does the same work as a plain
Python loop over the same draws (repeat the drawn seeds and items, take means, call
``stages.metrics.kendall_tau`` / ``spearman_rho``), and the script checks both give the same
intervals. Times are the best of ``--repeats`` runs, measured on whatever machine runs this; the
ratio (loop / vectorised, both in the same run) is the number to quote.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages import report_stats  # noqa: E402
from stages.metrics import kendall_tau, spearman_rho  # noqa: E402

ITEM_PROXIES = ["offline_pass@1", "offline_pass@8", "offline_maj@16"]
SEED_PROXIES = ["heldout_nll", "kl_to_base", "sparsity_vs_base", "nss_base_sft", "nss_sft_rl"]


def study(o: int, s: int, i: int, seed: int = 0) -> tuple[report_stats.Study, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    names = [f"obj{k}" for k in range(o)]
    level = rng.random((o, 1, 1))
    tables = {}
    for ph in ("offline", "online"):
        for a, name in enumerate(names):
            for b in range(s):
                p = np.clip(level[a, 0, 0] + 0.3 * rng.random(i), 0, 1)
                tables[(ph, name, b)] = pd.DataFrame(
                    {"pass@1": rng.binomial(16, p) / 16, "pass@8": np.sqrt(p), "maj@16": p > 0.5},
                    index=[f"q{k}" for k in range(i)])
    seeds = {c: {(n, b): float(rng.random()) for n in names for b in range(s)} for c in SEED_PROXIES}
    st = report_stats.build_study(tables, names, "pass@1", ITEM_PROXIES, seeds)
    point = pd.DataFrame({f"{ph}_pass@1": np.nanmean(st.phases[ph], axis=(1, 2)) for ph in st.phases},
                         index=names)
    for c, x in st.proxies.items():
        point[c] = np.nanmean(x, axis=tuple(range(1, x.ndim)))
    return st, point


def loop(st: report_stats.Study, resamples: int, level: float) -> dict:
    """The same intervals as ``analyse``, one draw and one objective at a time."""
    v, w = report_stats.draws(len(st.seeds), len(st.items), resamples, 0)
    cols = {"offline_pass@1": st.phases["offline"], **st.proxies}
    taus = {c: [] for c in cols}
    rhos = {c: [] for c in cols}
    diffs = []
    for vb, wb in zip(v.astype(int), w.astype(int)):
        s_idx = np.repeat(np.arange(len(st.seeds)), vb)
        i_idx = np.repeat(np.arange(len(st.items)), wb)

        def mean(x: np.ndarray) -> np.ndarray:
            return np.array([x[o][np.ix_(s_idx, i_idx)].mean() if x.ndim == 3 else x[o][s_idx].mean()
                             for o in range(len(x))])

        on = mean(st.phases["online"])
        off = mean(st.phases["offline"])
        diffs.append(np.subtract.outer(off, off))
        diffs.append(np.subtract.outer(on, on))
        for c, x in cols.items():
            m = mean(x)
            taus[c].append(kendall_tau(m, on))
            rhos[c].append(spearman_rho(m, on))
    q = [(1 - level) / 2, (1 + level) / 2]
    return {c: np.nanquantile(taus[c], q) for c in cols}


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objectives", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    st, point = study(args.objectives, args.seeds, args.items)
    fast, unc = best_of(lambda: report_stats.analyse(st, point, "pass@1", args.resamples, 0.95),
                        args.repeats)
    slow, ref = best_of(lambda: loop(st, args.resamples, 0.95), 1)
    got = unc.correlations.set_index("column")
    for c, (lo, hi) in ref.items():
        assert np.allclose([got.loc[c, "tau_lo"], got.loc[c, "tau_hi"]], [lo, hi]), c
    print("| shape (objectives x seeds x items) | resamples | analyse (s) | plain loop (s) | loop / analyse |")
    print("|---|---|---|---|---|")
    print(f"| {args.objectives} x {args.seeds} x {args.items} | {args.resamples} | {fast:.3f} | "
          f"{slow:.2f} | {slow / fast:.0f}x |")


if __name__ == "__main__":
    main()
