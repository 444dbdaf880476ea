"""The report's answer in plain sentences, with its uncertainty (``stages/report_stats.py``).

Four statements head ``report.md``: whether the offline ranking predicts the online one (Kendall
τ and Spearman ρ with bootstrap intervals, or "too few to judge" under four objectives), which
objective is best online and whether its lead is significant, how PEAR compares with SFT after
RL (difference and interval), and which rank changes are significant. The same facts go into
the stage's metrics (``facts``) for the manifest and W&B.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from stages.report_stats import MIN_OBJECTIVES, Uncertainty, difference, excludes_zero


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _ci_pts(lo: float, hi: float) -> str:
    return f"[{_pts(lo)}, {_pts(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else "[no interval]"


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:+.2f}, {hi:+.2f}]" if np.isfinite(lo) and np.isfinite(hi) else "[no interval]"


def _sig(lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "significance unknown (no bootstrap: report.bootstrap = 0)"
    return "significant" if excludes_zero(lo, hi) else "not significant (the interval includes 0)"


def facts(df: pd.DataFrame, corr: pd.DataFrame, unc: Uncertainty, by: str) -> dict:
    """The answer as data: prediction (τ, ρ and intervals), best online, PEAR − SFT, rank changes."""
    obj = df[df["kind"] == "objective"].set_index("policy")
    row = corr.set_index("column").loc[f"offline_{by}"] if f"offline_{by}" in set(corr["column"]) \
        else None
    out: dict = {"objectives_with_both": int(row["n"]) if row is not None else 0}
    if row is not None:
        out["prediction"] = {k: float(row[k]) for k in ("kendall_tau", "tau_lo", "tau_hi",
                                                        "spearman_rho", "rho_lo", "rho_hi")}
        out["prediction"]["judgeable"] = bool(row["judgeable"])
    online = obj[f"online_{by}"].dropna().sort_values(ascending=False) \
        if f"online_{by}" in obj else pd.Series(dtype=float)
    if len(online) >= 2:
        best, second = online.index[0], online.index[1]
        d, lo, hi = difference(unc, "online", best, second)
        out["best_online"] = {"policy": best, "runner_up": second, "diff": d, "lo": lo, "hi": hi,
                              "significant": excludes_zero(lo, hi)}
    elif len(online) == 1:
        out["best_online"] = {"policy": online.index[0], "runner_up": None, "significant": False}
    out["pear_vs_sft"] = {}
    for name in [p for p in obj.index if p.startswith("pear") and "sft" in obj.index]:
        for phase in ("offline", "online"):
            d, lo, hi = difference(unc, phase, name, "sft")
            if np.isfinite(d):
                out["pear_vs_sft"].setdefault(name, {})[phase] = {
                    "diff": d, "lo": lo, "hi": hi, "significant": excludes_zero(lo, hi)}
    rc = unc.rank_changes
    out["rank_changes"] = {"changed": int(obj["rank_change"].fillna(0).ne(0).sum()),
                           "with_flips": int((rc["flips"] > 0).sum()),
                           "significant": list(rc.loc[rc["verdict"] == "significant", "policy"]),
                           "partly": list(rc.loc[rc["verdict"].str.contains(" of "), "policy"]),
                           "not_significant": list(rc.loc[rc["verdict"] == "not significant",
                                                          "policy"]),
                           "unknown": list(rc.loc[rc["verdict"].str.startswith("unknown"),
                                                  "policy"])}
    return out


def _prediction(f: dict, by: str, sample: str) -> str:
    n = f["objectives_with_both"]
    p = f.get("prediction")
    if p is None or n < 2:
        return (f"**Does the offline ranking predict the online one?** Not yet: {n} objective(s) "
                f"have both an offline and an online {by}.")
    if not p["judgeable"]:
        return (f"**Does the offline ranking predict the online one?** Too few to judge: {n} "
                f"objectives have both results, and a rank correlation over fewer than "
                f"{MIN_OBJECTIVES} says little (with 2 it can only be ±1). Add objectives "
                "to answer this.")
    tau, lo, hi = p["kendall_tau"], p["tau_lo"], p["tau_hi"]
    if not np.isfinite(tau):
        return (f"**Does the offline ranking predict the online one?** Undefined: offline or "
                f"online {by} is the same for all {n} objectives.")
    verdict = ("no interval (report.bootstrap = 0)" if not np.isfinite(lo) else
               "yes, better than chance: τ's interval lies above 0" if lo > 0 else
               "no, it tends to reverse it: τ's interval lies below 0" if hi < 0 else
               "these data cannot tell: τ's interval includes 0")
    return (f"**Does the offline ranking predict the online one?** Over {n} objectives, offline "
            f"{by} vs online {by}: Kendall τ = {tau:+.2f} {_ci(lo, hi)}, Spearman ρ = "
            f"{p['spearman_rho']:+.2f} {_ci(p['rho_lo'], p['rho_hi'])} ({sample}); {verdict}.")


def _best(f: dict, by: str) -> str:
    b = f.get("best_online")
    if b is None:
        return f"**Best online:** no objective has an online {by} yet."
    if b["runner_up"] is None:
        return f"**Best online:** only {b['policy']} has an online {by}; nothing to compare."
    return (f"**Best online:** {b['policy']}, ahead of {b['runner_up']} by {_pts(b['diff'])} "
            f"points of {by} {_ci_pts(b['lo'], b['hi'])}: {_sig(b['lo'], b['hi'])}.")


def _pear(f: dict, by: str) -> str:
    if not f["pear_vs_sft"]:
        return ("**PEAR vs SFT after RL:** not in this study (it needs `sft` and a `pear_*` "
                "objective with online results).")
    parts = []
    for name, ph in f["pear_vs_sft"].items():
        on, off = ph.get("online"), ph.get("offline")
        s = name + " − sft"
        if on:
            s += (f" = {_pts(on['diff'])} points of online {by} {_ci_pts(on['lo'], on['hi'])}, "
                  f"{_sig(on['lo'], on['hi'])}")
        if off:
            s += f"{';' if on else ' ='} before RL {_pts(off['diff'])} {_ci_pts(off['lo'], off['hi'])}"
        parts.append(s)
    return "**PEAR vs SFT after RL:** " + "; ".join(parts) + "."


def _changes(f: dict, n_obj: int) -> str:
    rc = f["rank_changes"]
    if not rc["changed"] and not rc["with_flips"]:
        return "**Rank changes:** none; every objective keeps its offline rank online."
    sig, part, nsig = rc["significant"], rc["partly"], rc["not_significant"]
    if rc["unknown"]:
        return (f"**Rank changes:** {rc['changed']} of {n_obj} objectives change rank between "
                "offline and online; significance unknown (no bootstrap: report.bootstrap = 0).")
    tail = ("none is significant: every flipped pair's difference has an interval including 0 "
            "offline or online" if not sig and not part else
            "; ".join(f"{label}: {', '.join(names)}" for label, names in (
                ("significant", sig), ("partly significant", part), ("not significant", nsig))
                if names))
    return (f"**Rank changes:** {rc['changed']} of {n_obj} objectives change rank between "
            f"offline and online; {tail}.")


def section(f: dict, df: pd.DataFrame, unc: Uncertainty, by: str) -> list[str]:
    """The ``## Answer`` lines of report.md from ``facts``."""
    level = int(round(100 * unc.level))
    sample = (f"{level}% paired bootstrap, {unc.resamples} resamples of {unc.items} eval items"
              + (f" and {unc.seeds} seeds" if unc.seeds > 1 else ""))
    n_obj = int((df["kind"] == "objective").sum())
    return ["## Answer", "",
            f"- {_prediction(f, by, sample)}", f"- {_best(f, by)}", f"- {_pear(f, by)}",
            f"- {_changes(f, n_obj)}", "",
            f"Intervals: {sample}, the same resample for every objective and for both phases. "
            "A rank change is significant when every pair of objectives whose order flipped "
            "has offline and online differences whose intervals both exclude 0; the best "
            "online objective when its lead over the runner-up excludes 0. No correction for "
            "multiple comparisons.", ""]
