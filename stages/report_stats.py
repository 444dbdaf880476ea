"""How sure the report can be: a paired bootstrap over eval items and seeds for every statistic
the report's answer rests on (``stages/report.py`` renders it).

Data. For each objective o, seed s and eval item i: the per-item value of ``report.rank_by``
(e.g. pass@1 from the item's samples) after SFT (offline) and after RL (online), over the items
every eval shares; an objective that lacks a seed holds NaN there. Seed-level proxies (held-out
NLL, KL to the base, ...) are (objective, seed) arrays.

Resampling. Each of ``report.bootstrap`` resamples draws eval items with replacement and, when
there are several seeds, seeds with replacement; the same draw is applied to every objective and
to both phases (paired: seed s online is RL from seed s offline). In each resample every
objective's mean is recomputed (NaN-aware, so a missing seed only drops out), and from the means
the ranks, Kendall τ-b and Spearman ρ (average ranks for ties) and every pairwise difference.
Intervals are percentile intervals at level ``report.ci``; no correction for multiple
comparisons is applied (each interval is read on its own).

Decisions (documented in the report and README):
  * A pair of objectives *flips* when its order by ``rank_by`` differs between offline and
    online (point estimates; a tie on one side and an order on the other counts). A flip is
    *significant* when both its offline and its online difference have intervals excluding 0.
    An objective's rank change is significant when every flip it takes part in is, not
    significant when none is, and partly so otherwise (``k of m``).
  * The best online objective is significant when its difference to the runner-up (the second
    best point estimate) has an interval excluding 0.
  * A rank correlation over fewer than ``MIN_OBJECTIVES`` (4) objectives is "too few to judge":
    with 2 objectives τ is ±1 or NaN, with 3 it takes only 4 values.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MIN_OBJECTIVES = 4


@dataclass
class Study:
    """Per-item and per-seed arrays over the objectives, aligned on seeds and items."""

    objectives: list[str]
    seeds: list[int]
    items: list[str]
    phases: dict[str, np.ndarray]  # phase -> (O, S, I) per-item rank_by values, NaN = missing
    proxies: dict[str, np.ndarray] = field(default_factory=dict)  # column -> (O, S, I) or (O, S)


def build_study(item_tables: dict[tuple[str, str, int], pd.DataFrame], objectives: list[str],
                by: str, item_proxies: list[str], seed_proxies: dict[str, dict]) -> Study:
    """``item_tables[(phase, objective, seed)]`` = the report's item table of that eval (one row
    per item); ``item_proxies`` = offline item-table columns used as proxies (``offline_maj@16``
    reads column ``maj@16`` of the offline tables); ``seed_proxies[col][(objective, seed)]`` =
    a seed-level proxy value."""
    tables = {k: t for k, t in item_tables.items() if k[1] in objectives}
    seeds = sorted({s for (_, _, s) in tables})
    items = sorted(set.intersection(*(set(t.index) for t in tables.values()))) if tables else []

    def array(phase: str, col: str) -> np.ndarray:
        x = np.full((len(objectives), len(seeds), len(items)), np.nan)
        for (ph, name, s), t in tables.items():
            if ph == phase and col in t:
                x[objectives.index(name), seeds.index(s)] = t.loc[items, col].to_numpy(float)
        return x

    phases = {ph: array(ph, by) for ph in ("offline", "online")}
    proxies = {c: array("offline", c.removeprefix("offline_")) for c in item_proxies}
    for col, values in seed_proxies.items():
        x = np.full((len(objectives), len(seeds)), np.nan)
        for (name, s), v in values.items():
            if name in objectives and s in seeds and v is not None:
                x[objectives.index(name), seeds.index(s)] = float(v)
        proxies[col] = x
    return Study(objectives, seeds, items, phases, proxies)


def draws(n_seeds: int, n_items: int, resamples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicities of each seed (B, S) and item (B, I) in ``resamples`` bootstrap draws; with
    one seed, only items are resampled. Row 0 is not special: all rows are random draws."""
    rng = np.random.default_rng(seed)
    if resamples <= 0:
        return np.zeros((0, n_seeds)), np.zeros((0, n_items))
    w = np.stack([np.bincount(r, minlength=n_items)
                  for r in rng.integers(0, n_items, (resamples, n_items))]).astype(float)
    if n_seeds > 1:
        v = np.stack([np.bincount(r, minlength=n_seeds)
                      for r in rng.integers(0, n_seeds, (resamples, n_seeds))]).astype(float)
    else:
        v = np.ones((resamples, n_seeds))
    return v, w


def weighted_means(x: np.ndarray, v: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """(B, O) NaN-aware means of ``x`` (O, S, I) or (O, S) under seed weights ``v`` (B, S) and
    item weights ``w`` (B, I); NaN where a resample keeps no value of an objective."""
    ok = np.isfinite(x)
    x0 = np.where(ok, x, 0.0)
    if x.ndim == 3:
        num = np.einsum("bos,bs->bo", np.einsum("osi,bi->bos", x0, w), v)
        den = np.einsum("bos,bs->bo", np.einsum("osi,bi->bos", ok.astype(float), w), v)
    else:
        num, den = v @ x0.T, v @ ok.T.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def batch_ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ascending, ties share the mean rank) along the last axis, NaN-free input."""
    less = (x[..., None, :] < x[..., :, None]).sum(-1)
    equal = (x[..., None, :] == x[..., :, None]).sum(-1)
    return less + (equal + 1) / 2


def batch_tau_rho(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kendall τ-b and Spearman ρ of each row of ``x`` and ``y`` (B, O); NaN for a row with a
    NaN or a constant side (as ``stages.metrics.kendall_tau`` / ``spearman_rho``)."""
    bad = ~(np.isfinite(x).all(1) & np.isfinite(y).all(1))
    x, y = np.where(np.isfinite(x), x, 0.0), np.where(np.isfinite(y), y, 0.0)
    iu = np.triu_indices(x.shape[1], k=1)
    sx = np.sign(x[:, :, None] - x[:, None, :])[:, iu[0], iu[1]]
    sy = np.sign(y[:, :, None] - y[:, None, :])[:, iu[0], iu[1]]
    tau_den = np.sqrt((sx != 0).sum(1) * (sy != 0).sum(1))
    rx, ry = batch_ranks(x), batch_ranks(y)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    rho_den = np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.where(tau_den > 0, (sx * sy).sum(1) / np.where(tau_den > 0, tau_den, 1), np.nan)
        rho = np.where(rho_den > 0, (rx * ry).sum(1) / np.where(rho_den > 0, rho_den, 1), np.nan)
    tau[bad], rho[bad] = np.nan, np.nan
    return tau, rho


def interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0, ignoring NaN resamples (NaN where all are NaN)."""
    finite = np.isfinite(samples).any(axis=0)
    if not finite.any():
        nan = np.full(finite.shape, np.nan)[()]
        return nan, nan
    with warnings.catch_warnings():  # all-NaN columns: reported as NaN below
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return np.where(finite, lo, np.nan)[()], np.where(finite, hi, np.nan)[()]


@dataclass
class Uncertainty:
    """What the report says about its own uncertainty (all differences: a − b, in rank_by units)."""

    objectives: list[str]
    resamples: int
    level: float
    items: int
    seeds: int
    differences: pd.DataFrame  # phase, a, b, diff, lo, hi (every ordered pair, both phases)
    correlations: pd.DataFrame  # column, tau_lo, tau_hi, rho_lo, rho_hi, judgeable
    rank_changes: pd.DataFrame  # policy, flips, significant_flips, verdict


def analyse(study: Study, point: pd.DataFrame, by: str, resamples: int, level: float,
            seed: int = 0) -> Uncertainty:
    """Every interval the report prints. ``point`` = the report table indexed by policy (its
    ``offline_<by>`` / ``online_<by>`` and proxy columns are the point estimates; a proxy's τ
    and ρ are over the objectives with both, as the point correlations). A per-seed proxy varies
    across resamples only through the seeds drawn (with one seed: not at all)."""
    s, i = len(study.seeds), len(study.items)
    v, w = draws(s, i, max(int(resamples), 0) if s and i else 0, seed)
    means = {ph: weighted_means(x, v, w) for ph, x in study.phases.items()}
    diffs = _differences(study.objectives, means, point, by, level)
    online = _known(point, f"online_{by}", study.objectives)
    corr = []
    for col, x in {f"offline_{by}": study.phases["offline"], **study.proxies}.items():
        has = online & _known(point, col, study.objectives)
        tau = rho = np.full(1, np.nan)
        if has.sum() >= 2 and len(v):
            m = weighted_means(x, v, w if x.ndim == 3 else None)
            tau, rho = batch_tau_rho(m[:, has], means["online"][:, has])
        (tl, th), (rl, rh) = interval(tau, level), interval(rho, level)
        corr.append({"column": col, "tau_lo": float(tl), "tau_hi": float(th), "rho_lo": float(rl),
                     "rho_hi": float(rh), "judgeable": bool(has.sum() >= MIN_OBJECTIVES)})
    changes = rank_change_verdicts(point, diffs, by, study.objectives)
    return Uncertainty(study.objectives, len(v), level, i, s, diffs,
                       pd.DataFrame(corr, columns=["column", "tau_lo", "tau_hi", "rho_lo",
                                                   "rho_hi", "judgeable"]), changes)


def _known(point: pd.DataFrame, col: str, objectives: list[str]) -> np.ndarray:
    """Which objectives have a point value in ``col`` (boolean, in ``objectives`` order)."""
    if col not in point:
        return np.zeros(len(objectives), bool)
    return point[col].reindex(objectives).notna().to_numpy()


def _differences(objectives: list[str], means: dict[str, np.ndarray], point: pd.DataFrame,
                 by: str, level: float) -> pd.DataFrame:
    """Every ordered pair's difference a − b per phase: the point estimate from the table and
    its bootstrap interval."""
    rows = []
    for phase, m in means.items():
        lo, hi = interval(m[:, :, None] - m[:, None, :], level)  # (O, O): a − b
        col = point.get(f"{phase}_{by}", pd.Series(dtype=float))
        for a, na in enumerate(objectives):
            for b, nb in enumerate(objectives):
                if a != b:
                    rows.append({"phase": phase, "a": na, "b": nb,
                                 "diff": float(col.get(na, np.nan) - col.get(nb, np.nan)),
                                 "lo": float(lo[a, b]), "hi": float(hi[a, b])})
    return pd.DataFrame(rows, columns=["phase", "a", "b", "diff", "lo", "hi"])


def excludes_zero(lo: float, hi: float) -> bool:
    return bool(np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0))


def difference(unc: Uncertainty, phase: str, a: str, b: str) -> tuple[float, float, float]:
    """(a − b, lo, hi) in ``phase``; NaNs when either objective is not in the study."""
    d = unc.differences
    row = d[(d["phase"] == phase) & (d["a"] == a) & (d["b"] == b)]
    if not len(row):
        return np.nan, np.nan, np.nan
    return float(row["diff"].iloc[0]), float(row["lo"].iloc[0]), float(row["hi"].iloc[0])


def rank_change_verdicts(point: pd.DataFrame, diffs: pd.DataFrame, by: str,
                         objectives: list[str]) -> pd.DataFrame:
    """Per objective: the pairs whose order flipped offline → online, how many of those flips are
    significant (both intervals exclude 0) and a verdict: no flip / significant / not
    significant / ``k of m`` significant / unknown (no interval: ``report.bootstrap`` = 0)."""
    key = diffs.set_index(["phase", "a", "b"])[["lo", "hi"]] if len(diffs) else None
    off, on = point.get(f"offline_{by}"), point.get(f"online_{by}")
    rows = []
    for a in objectives:
        flips = sig = 0
        unknown = False
        for b in objectives:
            if a == b or off is None or on is None or pd.isna(off[a]) or pd.isna(off[b]) \
                    or pd.isna(on[a]) or pd.isna(on[b]):
                continue
            if np.sign(off[a] - off[b]) != np.sign(on[a] - on[b]):
                flips += 1
                bounds = [key.loc[(ph, a, b)] for ph in ("offline", "online")] if key is not None \
                    else [(np.nan, np.nan)]
                unknown |= not np.isfinite(np.asarray(bounds, float)).all()
                sig += all(excludes_zero(*lh) for lh in bounds)
        verdict = ("no flip" if not flips else "unknown (no interval)" if unknown else
                   "significant" if sig == flips else "not significant" if not sig else
                   f"{sig} of {flips} flips significant")
        rows.append({"policy": a, "flips": flips, "significant_flips": int(sig),
                     "verdict": verdict})
    return pd.DataFrame(rows, columns=["policy", "flips", "significant_flips", "verdict"])


def attach(df: pd.DataFrame, corr: pd.DataFrame,
           unc: Uncertainty) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table with each rank change's significance; correlations with their intervals."""
    rc = unc.rank_changes.rename(columns={"flips": "rank_flips", "significant_flips":
                                          "rank_flips_significant",
                                          "verdict": "rank_change_significance"})
    df = df.merge(rc, on="policy", how="left")
    ci = unc.correlations.drop(columns="judgeable")
    corr = corr.merge(ci, on="column", how="left")
    order = ["proxy", "column", "n", "kendall_tau", "tau_lo", "tau_hi", "spearman_rho", "rho_lo",
             "rho_hi", "judgeable"]
    return df, corr[order]
