"""The report's PNG plots, readable without W&B (``stages/report.py`` builds their data).

* ``offline_online.png``  Figure 1 of the PEAR paper: a rank panel (offline → online rank per
  objective; dashed = the change is not significant), then one line per objective from its
  offline (after SFT) to its online (after RL) pass@k with bootstrap intervals, the y axis
  zoomed to the objectives; direct RL and the starting models as reference lines when inside
  that range, named at the edge when not.
* ``proxies.png``  each offline proxy vs online pass@1 over the objectives, with error bars on
  both axes and τ with its interval ("too few to judge" under four objectives).
* ``pass_at_k.png``  pass@k against k per policy, offline dashed, online solid.

``chart_specs`` describes the same charts for W&B (the tracker builds them).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(names: list[str]) -> dict[str, tuple]:
    cmap = _plt().get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _err(row: pd.Series, col: str) -> list[list[float]] | None:
    lo, hi = row.get(f"{col}_lo", np.nan), row.get(f"{col}_hi", np.nan)
    if pd.isna(lo) or pd.isna(row.get(col)):
        return None
    return [[max(0.0, row[col] - lo)], [max(0.0, hi - row[col])]]


def _spread(ys: list[float], gap: float) -> list[float]:
    """Label positions near ``ys`` (any order) at least ``gap`` apart, centred on the data."""
    if not ys:
        return []
    order = np.argsort(ys, kind="stable")
    placed = np.array(ys, dtype=float)[order]
    for i in range(1, len(placed)):
        placed[i] = max(placed[i], placed[i - 1] + gap)
    placed -= (placed - np.array(ys, dtype=float)[order]).mean()
    out = np.empty(len(ys))
    out[order] = placed
    return list(out)


def _tau_text(c: pd.Series) -> str:
    """τ with its interval; "too few to judge" under the report's minimum of objectives."""
    if c["n"] < 2 or pd.isna(c["kendall_tau"]):
        return f"τ undefined, n={c['n']}"
    if not c.get("judgeable", True):
        return f"n={c['n']}: too few to judge"
    ci = f" [{c['tau_lo']:+.2f}, {c['tau_hi']:+.2f}]" if pd.notna(c.get("tau_lo")) else ""
    return f"τ={c['kendall_tau']:+.2f}{ci}  n={c['n']}"


def _style(r: pd.Series) -> dict:
    """Line style of an objective's rank change: solid when significant (or no change), dashed
    and faded when not significant, dash-dot when partly."""
    verdict = r.get("rank_change_significance")
    if not isinstance(verdict, str) or verdict in ("no flip", "significant") or \
            verdict.startswith("unknown") or not r.get("rank_change"):
        return {"ls": "-", "alpha": 1.0}
    return {"ls": "--", "alpha": 0.45} if verdict == "not significant" else {"ls": "-.", "alpha": 0.7}


def rank_panel(ax, obj: pd.DataFrame, colors: dict, by: str) -> None:
    """Bump chart of the objectives' ranks by ``by``: every rank change is visible whatever the
    pass rates, and its line style says whether it is significant."""
    labels = []
    for _, r in obj.iterrows():
        ys = [r.get("offline_rank", np.nan), r.get("online_rank", np.nan)]
        ax.plot([0, 1], ys, marker="o", color=colors[r["policy"]], lw=2,
                **_style(r))
        if pd.notna(ys[1]):
            v = r.get("rank_change_significance")
            tag = "" if not isinstance(v, str) or v == "no flip" or not r["rank_change"] \
                else f", {v}"
            labels.append((ys[1], f"{r['policy']} ({int(r['rank_change']):+d}{tag})",
                           colors[r["policy"]]))
    for (y, text, c), ly in zip(labels, _spread([l[0] for l in labels], 0.45)):
        ax.annotate(text, (1.06, ly), fontsize=7, color=c, va="center", annotation_clip=False)
    n = max(2, len(obj))
    ax.set_ylim(n + 0.5, 0.5)
    ax.set_yticks(range(1, n + 1))
    ax.set_xticks([0, 1], ["after SFT\n(offline)", "after RL\n(online)"])
    ax.set_xlim(-0.15, 1.9)
    ax.set_ylabel(f"rank by {by} (1 = best)")
    ax.set_title("rank change (dashed: not significant)", fontsize=9)


def _limits(obj: pd.DataFrame, cols: tuple[str, str]) -> tuple[float, float]:
    """y range of the objectives' values and intervals only (reference lines may fall outside),
    padded; at least 2 points wide so that a tiny difference is not blown up."""
    vals = [obj[c + suf] for c in cols for suf in ("", "_lo", "_hi") if c + suf in obj]
    v = pd.concat(vals).dropna() if vals else pd.Series(dtype=float)
    if not len(v):
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    pad = max(0.1 * (hi - lo), 0.01)
    return lo - pad, hi + pad


def value_panel(ax, df: pd.DataFrame, obj: pd.DataFrame, colors: dict, m: str,
                ranked: bool) -> None:
    """``m`` offline → online per objective with intervals; ``ranked``: ``m`` is the rank
    metric, so the lines carry the rank change's significance style."""
    off, on = f"offline_{m}", f"online_{m}"
    dx = np.linspace(-0.05, 0.05, len(obj)) if len(obj) > 1 else np.zeros(len(obj))
    labels = []
    for i, (_, r) in enumerate(obj.iterrows()):
        c = colors[r["policy"]]
        xs, ys = [dx[i], 1 + dx[i]], [r.get(off, np.nan), r.get(on, np.nan)]
        ax.plot(xs, ys, marker="o", color=c, lw=1.8, **(_style(r) if ranked else {}))
        for x, col in zip(xs, (off, on)):
            e = _err(r, col)
            if e is not None:
                ax.errorbar([x], [r[col]], yerr=e, color=c, alpha=0.35, capsize=3)
        if pd.notna(ys[1]):
            labels.append((ys[1], r["policy"], c))
    lo, hi = _limits(obj, (off, on))
    ax.set_ylim(lo, hi)
    for _, r in df[df["kind"] != "objective"].iterrows():
        y = r.get(on if r["kind"] == "direct-RL" else off, np.nan)
        if pd.isna(y):
            continue
        name = r["policy"] + (" (RL from base)" if r["kind"] == "direct-RL" else " (start)")
        if lo <= y <= hi:
            ax.axhline(y, ls=":", lw=0.9, color="gray")
            ax.annotate(name, (0.02, y), xycoords=("axes fraction", "data"), fontsize=7,
                        color="dimgray", va="bottom")
        else:  # out of the objectives' range: named at the edge, not drawn
            ax.annotate(f"{name}: {100 * y:.1f}% {'↑' if y > hi else '↓'}",
                        (0.02, 0.97 if y > hi else 0.03), xycoords="axes fraction", fontsize=7,
                        color="dimgray", va="top" if y > hi else "bottom")
    for (y, text, c), ly in zip(labels, _spread([l[0] for l in labels], 0.05 * (hi - lo))):
        ax.annotate(text, (1.08, ly), fontsize=8, color=c, va="center", annotation_clip=False)
    ax.set_xticks([0, 1], ["after SFT\n(offline)", "after RL\n(online)"])
    ax.set_xlim(-0.2, 1.7)
    ax.set_ylabel(m)
    ax.set_title(f"{m}: offline → online (bars: bootstrap interval)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def slope_chart(df: pd.DataFrame, metrics: list[str], path: Path) -> None:
    """Figure 1 of the PEAR paper: a rank panel, then one value panel per metric, zoomed to the
    objectives (the starting models are named at the edge when they fall outside)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 1 + len(metrics), figsize=(5.2 * (1 + len(metrics)), 4.6),
                             squeeze=False)
    obj = df[df["kind"] == "objective"].reset_index(drop=True)
    colors = _colors(list(obj["policy"]))
    rank_panel(axes[0, 0], obj, colors, metrics[0])
    for ax, m in zip(axes[0, 1:], metrics):
        value_panel(ax, df, obj, colors, m, m == metrics[0])
    fig.suptitle(f"Offline vs online per objective (rank change by {metrics[0]}, + = better "
                 "after RL; dashed = not significant)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _xerr(row: pd.Series, col: str) -> list[list[float]] | None:
    e = _err(row, col)
    if e is None and pd.notna(row.get(f"{col}_std", np.nan)) and pd.notna(row.get(col)):
        e = [[row[f"{col}_std"]], [row[f"{col}_std"]]]
    return e


def proxy_scatter(df: pd.DataFrame, corr: pd.DataFrame, by: str, path: Path) -> None:
    """Each proxy vs online ``by`` with its uncertainty on both axes (bootstrap intervals, or ±
    std over seeds for per-checkpoint proxies); the axes span every bar, so a difference inside
    the noise shows as overlapping bars, never as a steep slope."""
    plt = _plt()
    shown = corr[corr["n"] >= 1]
    cols = min(3, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.5 * rows), squeeze=False)
    obj = df[df["kind"] == "objective"]
    colors = _colors(list(obj["policy"]))
    target = f"online_{by}"
    for ax, (_, c) in zip(axes.flat, shown.iterrows()):
        sub = obj.dropna(subset=[c["column"], target])
        for _, r in sub.iterrows():
            ax.errorbar(r[c["column"]], r[target], xerr=_xerr(r, c["column"]),
                        yerr=_err(r, target), fmt="o", color=colors[r["policy"]], ms=5,
                        capsize=2, elinewidth=1, alpha=0.85)
            ax.annotate(r["policy"], (r[c["column"]], r[target]), xytext=(3, 3),
                        textcoords="offset points", fontsize=7)
        ax.set_ylim(*_limits(sub, (target,)))
        ax.set_xlabel(c["proxy"])
        ax.set_ylabel(f"online {by}")
        ax.set_title(_tau_text(c), fontsize=8)
        ax.margins(x=0.2)
        ax.ticklabel_format(useOffset=False, style="sci", scilimits=(-3, 4))
        ax.xaxis.set_major_locator(_plt().MaxNLocator(4))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    if not len(shown):
        axes[0, 0].text(0.5, 0.5, "no objective has both a proxy and an online result",
                        ha="center", va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pass_at_k_plot(curves: pd.DataFrame, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.4, 4.6))
    refs = {"base": "silver", "behavior": "black"}
    names = [p for p in dict.fromkeys(curves["policy"]) if p not in refs]
    colors = _colors(names)
    for (policy, phase), g in curves.groupby(["policy", "phase"], sort=False):
        g = g.sort_values("k")
        ref = policy in refs
        ax.plot(g["k"], g["pass@k"], ls=":" if ref else "--" if phase == "offline" else "-",
                marker=".", color=refs.get(policy) or colors[policy], lw=1.2 if ref else 1.8,
                label=f"{policy} ({'start model' if ref else phase})")
    ks = sorted(curves["k"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("k (samples per item)")
    ax.set_ylabel("pass@k")
    ax.set_title("pass@k: after SFT (dashed), after RL (solid), start models (dotted)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def chart_specs(df: pd.DataFrame, corr: pd.DataFrame, curves: pd.DataFrame, by: str) -> list[dict]:
    obj = df[df["kind"] == "objective"].dropna(subset=[f"offline_{by}", f"online_{by}"]
                                               if f"online_{by}" in df else [f"offline_{by}"])
    specs = []
    if f"online_{by}" in obj and len(obj):
        specs.append({"key": f"slope/{by}", "kind": "line_series", "xs": [0, 1],
                      "ys": [[r[f"offline_{by}"], r[f"online_{by}"]] for _, r in obj.iterrows()],
                      "keys": list(obj["policy"]), "title": f"{by}: after SFT (0) → after RL (1)",
                      "xname": "0 = offline, 1 = online"})
    for _, c in corr[corr["n"] >= 1].iterrows():
        specs.append({"key": f"proxy/{c['column']}", "kind": "scatter", "table": "offline_online",
                      "x": c["column"], "y": f"online_{by}",
                      "title": f"{c['proxy']} vs online {by} ({_tau_text(c)})"})
    for phase in ("offline", "online"):
        sub = curves[curves["phase"] == phase]
        if len(sub):
            ks = sorted(sub["k"].unique())
            piv = sub.pivot(index="policy", columns="k", values="pass@k")
            specs.append({"key": f"pass_at_k/{phase}", "kind": "line_series", "xs": ks,
                          "ys": [list(piv.loc[p, ks]) for p in piv.index], "keys": list(piv.index),
                          "title": f"{phase} pass@k", "xname": "k"})
    return specs


def plot_all(df: pd.DataFrame, corr: pd.DataFrame, curves: pd.DataFrame, meta: dict, by: str,
             out: Path) -> dict[str, Path]:
    shown = [by] + [f"pass@{k}" for k in meta["report_ks"] if f"pass@{k}" != by][-1:]
    paths = {"offline_online": out / "offline_online.png", "proxies": out / "proxies.png",
             "pass_at_k": out / "pass_at_k.png"}
    slope_chart(df, shown, paths["offline_online"])
    proxy_scatter(df, corr, by, paths["proxies"])
    pass_at_k_plot(curves, paths["pass_at_k"])
    return paths
