"""report.md's text: the tables of ``stages/report.py``'s frame, as markdown.

Cells show a pass rate in % with ``± std`` over seeds and ``[lo, hi]`` bootstrap intervals where
the frame holds them (``<col>_std``, ``<col>_lo``, ``<col>_hi``); correlations over fewer than
``report_stats.MIN_OBJECTIVES`` objectives read "too few to judge".
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from stages import report_stats


def _pct(row: pd.Series, col: str, ci: bool = True) -> str:
    v = row.get(col)
    if v is None or pd.isna(v):
        return ""
    s = f"{100 * v:.1f}"
    if pd.notna(row.get(f"{col}_std", np.nan)):
        s += f" ± {100 * row[f'{col}_std']:.1f}"
    if ci and pd.notna(row.get(f"{col}_lo", np.nan)):
        s += f" [{100 * row[f'{col}_lo']:.1f}, {100 * row[f'{col}_hi']:.1f}]"
    return s


def _num(row: pd.Series, col: str, fmt: str = ".3g") -> str:
    v = row.get(col)
    if v is None or pd.isna(v):
        return ""
    std = row.get(f"{col}_std", np.nan)
    return f"{v:{fmt}}" + (f" ± {std:{fmt}}" if pd.notna(std) else "")


def _rank(v) -> str:
    return "" if pd.isna(v) else (f"{int(v):+d}" if v else "0")


def _change(row: pd.Series) -> str:
    """Rank change and whether it is significant (``report_stats.rank_change_verdicts``)."""
    text, verdict = _rank(row["rank_change"]), row.get("rank_change_significance")
    if not text or text == "0" or not isinstance(verdict, str) or verdict == "no flip":
        return text
    return f"{text} ({verdict})"


def _corr_cell(c: pd.Series, stat: str, lo: str, hi: str) -> str:
    if c["n"] < 2 or pd.isna(c[stat]):
        return "NaN"
    if not c["judgeable"]:
        return "too few to judge"
    ci = f" [{c[lo]:+.2f}, {c[hi]:+.2f}]" if pd.notna(c.get(lo)) else ""
    return f"{c[stat]:+.2f}{ci}"


def main_table(df: pd.DataFrame, meta: dict, cfg: dict) -> list[str]:
    r, n, lk = cfg["report"], meta["n"], meta["large_k"]
    ks = meta["report_ks"]
    off = [f"pass@{k}" for k in ks] + ([f"pass@{lk}"] if lk not in ks else []) + [f"maj@{n}"]
    on = [f"pass@{k}" for k in ks]
    by = r.get("rank_by", "pass@1")
    level = int(round(100 * float(r.get("ci", 0.95))))
    seeds = int(df["seeds"].max())
    head = (["policy"] + [f"offline {m}" for m in off] + ["held-out NLL"] +
            [f"online {m}" for m in on] + ["offline rank", "online rank", "change"])
    lines = ["## Offline vs online", "",
             f"Offline = after SFT, online = after identical RL from that checkpoint; `direct` is RL "
             f"from the base model, `base`/`behavior` are the starting models. Pass rates in %, "
             f"{'mean ± std over ' + str(seeds) + ' seeds, ' if seeds > 1 else ''}"
             f"[{level}% bootstrap interval over {meta['item_count']} eval "
             f"items]; n = {n} samples per item; maj@{n} votes among extracted answers only. "
             f"Ranks by {by} over the objectives (1 = best); change = offline rank − online rank "
             "(> 0: better after RL), with whether the flips behind it are significant (see "
             "Answer).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in df.iterrows():
        cells = ([row["policy"]] + [_pct(row, f"offline_{m}", m == by) for m in off] +
                 [_num(row, "heldout_nll")] + [_pct(row, f"online_{m}", m == by) for m in on] +
                 [_rank(row["offline_rank"]).lstrip("+"), _rank(row["online_rank"]).lstrip("+"),
                  _change(row)])
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def correlation_table(corr: pd.DataFrame, by: str, level: int) -> list[str]:
    lines = [f"## Which offline number predicts online {by}?", "",
             f"Rank correlation over the objectives (n = how many) with its {level}% paired "
             f"bootstrap interval; \"too few to judge\" under {report_stats.MIN_OBJECTIVES} "
             "objectives, NaN where n < 2 or a column is constant. Lower held-out NLL is "
             "expected to predict better RL (negative correlation).", "",
             "| proxy | Kendall τ | Spearman ρ | n |", "|---|---|---|---|"]
    for _, c in corr.iterrows():
        lines.append(f"| {c['proxy']} | {_corr_cell(c, 'kendall_tau', 'tau_lo', 'tau_hi')} | "
                     f"{_corr_cell(c, 'spearman_rho', 'rho_lo', 'rho_hi')} | {c['n']} |")
    return lines + [""]


def proxy_table(df: pd.DataFrame) -> list[str]:
    lines = ["## RL-readiness proxies (PEAR Appendix A)", "",
             "KL on a calibration set of verified behavior responses; sparsity = fraction of "
             "linear-layer entries that moved less than ε; NSS = normalized spectrum shift; "
             "rotation = mean angle (°) between the top-k gradient subspaces of an offline and a "
             "GRPO pilot from the SFT checkpoint (App. A.4).", "",
             "| policy | KL(base‖SFT) | sparsity SFT vs base | NSS base↔SFT | gradient rotation | "
             "KL(start‖RL) | sparsity RL vs start | NSS start↔RL |", "|---" * 8 + "|"]
    for _, row in df[df["kind"] != "reference"].iterrows():
        cells = [_num(row, c) for c in ("kl_to_base", "sparsity_vs_base", "nss_base_sft",
                                        "grad_rotation", "kl_rl", "sparsity_rl", "nss_sft_rl")]
        lines.append(f"| {row['policy']} | " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(df: pd.DataFrame, corr: pd.DataFrame, meta: dict, cfg: dict,
             answer: list[str], per_benchmark: list[str] = (), timeouts: list[str] = ()) -> str:
    """report.md: the answer first, then the tables it rests on, then the plots."""
    by = cfg["report"].get("rank_by", "pass@1")
    level = int(round(100 * float(cfg["report"].get("ci", 0.95))))
    lines = [f"# Offline vs online: {cfg['experiment']}", "", *answer, *main_table(df, meta, cfg),
             *per_benchmark, *correlation_table(corr, by, level), *proxy_table(df), *timeouts]
    lines += ["![offline vs online](offline_online.png)", "",
              "![proxies vs online](proxies.png)", "", "![pass@k](pass_at_k.png)", ""]
    return "\n".join(lines)
