"""The report's PNG plots, readable without W&B (``stages/report.py`` builds their data).

* ``offline_online.png``  Figure 1 of the PEAR paper: one line per objective from its offline
  (after SFT) to its online (after RL) pass@k, with bootstrap intervals; direct RL and the
  starting models as references.
* ``proxies.png``  each offline proxy vs online pass@1 over the objectives, with τ and ρ.
* ``pass_at_k.png``  pass@k against k per policy, offline dashed, online solid.
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


def slope_chart(df: pd.DataFrame, metrics: list[str], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.6 * len(metrics), 4.6), squeeze=False)
    obj = df[df["kind"] == "objective"].reset_index(drop=True)
    colors = _colors(list(obj["policy"]))
    # a small horizontal offset per objective keeps tied points and their intervals apart
    dx = np.linspace(-0.05, 0.05, len(obj)) if len(obj) > 1 else np.zeros(len(obj))
    for ax, m in zip(axes[0], metrics):
        off, on = f"offline_{m}", f"online_{m}"
        labels = []
        for i, r in obj.iterrows():
            c = colors[r["policy"]]
            xs, ys = [dx[i], 1 + dx[i]], [r.get(off, np.nan), r.get(on, np.nan)]
            ax.plot(xs, ys, marker="o", color=c, lw=1.8)
            for x, col in zip(xs, (off, on)):
                e = _err(r, col)
                if e is not None:
                    ax.errorbar([x], [r[col]], yerr=e, color=c, alpha=0.35, capsize=3)
            change = r.get("rank_change")
            tag = "" if pd.isna(change) or m != metrics[0] else f" ({int(change):+d})" if change \
                else " (0)"
            if pd.notna(ys[1]):
                labels.append((ys[1], r["policy"] + tag, c))
        for _, r in df[df["kind"] != "objective"].iterrows():
            y = r.get(on if r["kind"] == "direct-RL" else off, np.nan)
            if pd.notna(y):
                ax.axhline(y, ls=":", lw=0.9, color="gray")
                direct = r["kind"] == "direct-RL"  # an online reference: label it on the right
                ax.annotate(r["policy"] + (" (RL from base)" if direct else " (start)"),
                            (0.98 if direct else 0.02, y), fontsize=7, color="dimgray",
                            va="bottom", ha="right" if direct else "left")
        lo, hi = ax.get_ylim()
        for (y, text, c), ly in zip(labels, _spread([l[0] for l in labels], 0.05 * (hi - lo))):
            ax.annotate(text, (1.08, ly), fontsize=8, color=c, va="center",
                        annotation_clip=False)
        ax.set_xticks([0, 1], ["after SFT\n(offline)", "after RL\n(online)"])
        ax.set_xlim(-0.2, 1.7)
        ax.set_ylabel(m)
        ax.set_title(f"{m}: offline → online")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Offline vs online per objective (label: rank change by "
                 f"{metrics[0]}, + = better after RL; bars: bootstrap interval)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def proxy_scatter(df: pd.DataFrame, corr: pd.DataFrame, by: str, path: Path) -> None:
    plt = _plt()
    shown = corr[corr["n"] >= 1]
    cols = min(3, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.5 * rows), squeeze=False)
    obj = df[df["kind"] == "objective"]
    colors = _colors(list(obj["policy"]))
    target = f"online_{by}"
    for ax, (_, c) in zip(axes.flat, shown.iterrows()):
        sub = obj[[c["column"], target, "policy"]].dropna()
        for _, r in sub.iterrows():
            ax.scatter(r[c["column"]], r[target], color=colors[r["policy"]], s=30)
            ax.annotate(r["policy"], (r[c["column"]], r[target]), xytext=(3, 3),
                        textcoords="offset points", fontsize=7)
        ax.set_xlabel(c["proxy"])
        ax.set_ylabel(f"online {by}")
        ax.set_title(f"τ={c['kendall_tau']:.2f}  ρ={c['spearman_rho']:.2f}  n={c['n']}", fontsize=9)
        ax.margins(x=0.2, y=0.12)
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


def plot_all(df: pd.DataFrame, corr: pd.DataFrame, curves: pd.DataFrame, meta: dict, by: str,
             out: Path) -> dict[str, Path]:
    shown = [by] + [f"pass@{k}" for k in meta["report_ks"] if f"pass@{k}" != by][-1:]
    paths = {"offline_online": out / "offline_online.png", "proxies": out / "proxies.png",
             "pass_at_k": out / "pass_at_k.png"}
    slope_chart(df, shown, paths["offline_online"])
    proxy_scatter(df, corr, by, paths["proxies"])
    pass_at_k_plot(curves, paths["pass_at_k"])
    return paths
