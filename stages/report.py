"""The study's answer: offline vs online per objective, and which offline number predicts RL.

Reproduces the comparison of the PEAR paper's Figure 1 and Tables 6-7, and asks the Quagmires
question (Kang et al. 2025): which offline proxy ranks the objectives the way online pass@1 does?
Offline = the SFT checkpoint, online = after identical RL from it; ``direct`` is RL from the base.

Inputs (names the DAG gives them; any may be missing, e.g. when ``pipeline report`` gathers what
exists): ``eval/base``, ``eval/behavior``, ``eval/sft/<objective>/<seed>``,
``eval/rl/<objective|direct>/<seed>``, ``sft/<objective>/<seed>`` (held-out NLL),
``analysis/sft/<objective>/<seed>`` and ``analysis/rl/<objective|direct>/<seed>`` (Appendix A).

Every pass@k is recomputed from the eval's ``samples.parquet`` (unbiased estimator per item), so
any k <= n is available, including pass@large-k (``report.large_k``, default n). Intervals: a
percentile bootstrap over eval items of the item values averaged over seeds (``_lo``/``_hi``)
and, with several seeds, the std across seeds (``_std``). Ranks (1 = best) are over objectives
by ``report.rank_by``; ``rank_change`` = offline rank − online rank (> 0: better online).

Writes ``results.csv`` (one row per policy, every column), ``correlations.csv`` (Kendall τ-b and
Spearman ρ of each proxy vs online ``rank_by`` over the objectives), ``pass_at_k.csv``,
``report.md`` and the plots of ``stages/report_plots.py``; the same tables and W&B charts go to
the tracker (a no-op unless the runner installs one).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from stages import report_plots, report_types
from stages.common import tracker, write_json
from stages.metrics import (bootstrap_ci, kendall_tau, maj_at_n, pass_at_k_items,
                            spearman_rho)

PHASES = ("offline", "online")
# analysis.json key -> report column, for the SFT-vs-base and the RL-vs-start comparisons
ANALYSIS_SFT = {"forward_kl": "kl_to_base", "sparsity": "sparsity_vs_base", "nss": "nss_base_sft"}
ANALYSIS_RL = {"forward_kl": "kl_rl", "sparsity": "sparsity_rl", "nss": "nss_sft_rl"}
# proxy column -> label; the offline pass@k and maj@n columns are added per run. NSS SFT↔RL is
# measured after RL (paper Fig. 9d): shown for analysis, it cannot predict before RL runs.
PROXIES = {"heldout_nll": "held-out NLL", "kl_to_base": "KL(base‖SFT)",
           "sparsity_vs_base": "update sparsity SFT vs base", "nss_base_sft": "NSS base↔SFT",
           "nss_sft_rl": "NSS SFT↔RL (post-RL)"}


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def parse_inputs(inputs: dict[str, str]) -> dict[tuple[str, str, int | None], Path]:
    """``{(kind, name, seed): path}``; kind is eval/sft, eval/rl, sft, analysis/sft, ...;
    ``eval/base`` and ``eval/behavior`` become ``("eval/ref", name, None)``."""
    out = {}
    for key, path in inputs.items():
        parts = key.split("/")
        if parts[0] == "eval" and len(parts) == 2:
            out[("eval/ref", parts[1], None)] = Path(path)
        else:
            out[("/".join(parts[:-2]), parts[-2], int(parts[-1]))] = Path(path)
    return out


def item_table(eval_dir: Path, ks: list[int]) -> pd.DataFrame:
    """Per eval item: pass@k for every k <= n and maj@n (as 0/1), indexed by prompt_id."""
    df = pd.read_parquet(eval_dir / "samples.parquet", columns=["prompt_id", "correct", "extracted"])
    df["extracted"] = df["extracted"].astype(object).where(df["extracted"].notna(), None)
    g = df.groupby("prompt_id", sort=True)
    n, c = g["correct"].size(), g["correct"].sum()
    out = pd.DataFrame(index=n.index)
    for k in ks:
        if k <= n.min():
            out[f"pass@{k}"] = pass_at_k_items(n.values, c.values, k)
    out[f"maj@{n.min()}"] = [float(maj_at_n(list(x["extracted"]), list(x["correct"]))) for _, x in g]
    return out


def aggregate(tables: list[pd.DataFrame], cfg: dict, seed: int = 0) -> dict[str, float]:
    """Mean over seeds of each column's item mean, its std across seeds, and a bootstrap
    interval over the items shared by all seeds (item values averaged over seeds)."""
    out: dict[str, float] = {}
    common_items = sorted(set.intersection(*(set(t.index) for t in tables)))
    for col in tables[0].columns:
        if not all(col in t for t in tables):
            continue
        per_seed = np.array([t[col].mean() for t in tables])
        out[col] = float(per_seed.mean())
        out[f"{col}_std"] = float(per_seed.std(ddof=1)) if len(tables) > 1 else np.nan
        items = np.mean([t.loc[common_items, col].values for t in tables], axis=0)
        out[f"{col}_lo"], out[f"{col}_hi"] = bootstrap_ci(
            items, int(cfg.get("bootstrap", 1000)), float(cfg.get("ci", 0.95)), seed)
    return out


def _mean_std(values: list[float | None]) -> tuple[float, float]:
    v = np.array([x for x in values if x is not None], dtype=float)
    if not len(v):
        return np.nan, np.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else np.nan


def build_table(inputs: dict[str, str], cfg: dict) -> tuple[pd.DataFrame, dict]:
    """One row per policy (the starting models, every objective, direct RL), and ``meta``:
    ``n``, the ks computed, ``large_k``, ``items[(phase, policy)]`` = item tables per seed."""
    r = cfg["report"]
    parsed = parse_inputs(inputs)
    evals = {k: v for k, v in parsed.items() if k[0].startswith("eval") and
             (v / "samples.parquet").is_file()}
    if not evals:
        raise ValueError("no eval output with samples.parquet among the report's inputs")
    n = int(min(pd.read_parquet(p / "samples.parquet", columns=["prompt_id"])
            .groupby("prompt_id").size().min() for p in evals.values()))
    large_k = min(int(r.get("large_k") or n), n)
    ks = sorted({int(k) for k in r["ks"] if int(k) <= n} | {large_k} |
                {1 << i for i in range(n.bit_length()) if 1 << i <= n} | {n})
    items: dict[tuple[str, str], list[pd.DataFrame]] = defaultdict(list)
    for (kind, name, seed), path in sorted(evals.items(), key=lambda kv: str(kv[0])):
        phase = "online" if kind == "eval/rl" else "offline"
        items[(phase, name)].append(item_table(path, ks))

    names = sorted({name for (kind, name, _) in parsed if kind in ("eval/sft", "eval/rl", "sft")})
    df = pd.DataFrame([policy_row(name, parsed, items, r) for name in ["base", "behavior", *names]
                       if any(items.get((phase, name)) for phase in PHASES)])
    by = r.get("rank_by", "pass@1")
    for col in (f"offline_{by}", f"online_{by}"):  # e.g. no RL finished yet: keep the columns
        if col not in df:
            df[col] = np.nan
    add_ranks(df, by)
    report_ks = [int(k) for k in r["ks"] if int(k) <= n]
    return df, {"n": n, "ks": ks, "report_ks": report_ks, "large_k": large_k, "items": items,
                "item_count": len(next(iter(items.values()))[0])}


def policy_row(name: str, parsed: dict, items: dict, r: dict) -> dict:
    """Everything the report knows about one policy, aggregated over its seeds."""
    kind = {"base": "reference", "behavior": "reference", "direct": "direct-RL"}.get(name, "objective")
    seeds = {s for (_, nm, s) in parsed if nm == name and s is not None}
    row: dict = {"policy": name, "kind": kind, "seeds": len(seeds) or 1}
    for phase in PHASES:
        if items.get((phase, name)):
            row.update({f"{phase}_{k}": v for k, v in aggregate(items[(phase, name)], r).items()})

    def outputs(kind_: str, file: str) -> list[dict]:
        return [_json(p / file) for (kd, nm, _), p in parsed.items() if kd == kind_ and nm == name]

    nll = [m.get("metrics", {}).get("heldout_nll") for m in outputs("sft", "manifest.json")]
    row["heldout_nll"], row["heldout_nll_std"] = _mean_std(nll)
    for kind_, columns in (("analysis/sft", ANALYSIS_SFT), ("analysis/rl", ANALYSIS_RL)):
        found = outputs(kind_, "analysis.json")
        for src, dst in columns.items():
            row[dst], row[f"{dst}_std"] = _mean_std([a.get(src) for a in found])
    return row


def add_ranks(df: pd.DataFrame, metric: str) -> None:
    """Offline / online rank of each objective (1 = best, ties share the best rank) and the
    change offline − online (> 0: the objective ranks better after RL than before)."""
    obj = df["kind"] == "objective"
    for phase in PHASES:
        df[f"{phase}_rank"] = df.loc[obj, f"{phase}_{metric}"].rank(ascending=False, method="min")
    df["rank_change"] = df["offline_rank"] - df["online_rank"]


def proxy_columns(df: pd.DataFrame, meta: dict) -> dict[str, str]:
    """Every offline quantity the report correlates with the online outcome."""
    n = meta["n"]
    keep = {1, meta["large_k"], *meta["report_ks"]}
    cols = {f"offline_pass@{k}": f"offline pass@{k}" for k in meta["ks"] if k in keep}
    cols[f"offline_maj@{n}"] = f"offline maj@{n}"
    cols.update(PROXIES)
    return {c: v for c, v in cols.items() if c in df}


def correlations(df: pd.DataFrame, proxies: dict, target: str) -> pd.DataFrame:
    """Kendall τ-b and Spearman ρ between each proxy and ``target`` over the objectives that
    have both (pairwise complete); ``n`` = how many objectives the numbers rest on."""
    obj = df[df["kind"] == "objective"]
    rows = []
    for col, label in proxies.items():
        both = obj[[col, target]].dropna() if target in obj else obj.iloc[:0]
        x, y = both[col].to_numpy(float), both[target].to_numpy(float)
        rows.append({"proxy": label, "column": col, "n": len(both),
                     "kendall_tau": kendall_tau(x, y) if len(both) >= 2 else np.nan,
                     "spearman_rho": spearman_rho(x, y) if len(both) >= 2 else np.nan})
    return pd.DataFrame(rows, columns=["proxy", "column", "n", "kendall_tau", "spearman_rho"])


def pass_at_k_curves(meta: dict) -> pd.DataFrame:
    """Long table: policy, phase, k, pass@k (mean over seeds)."""
    rows = []
    for (phase, name), tables in sorted(meta["items"].items()):
        for k in meta["ks"]:
            if f"pass@{k}" in tables[0]:
                rows.append({"policy": name, "phase": phase, "k": k,
                             "pass@k": float(np.mean([t[f"pass@{k}"].mean() for t in tables]))})
    return pd.DataFrame(rows, columns=["policy", "phase", "k", "pass@k"])


# --- markdown ---------------------------------------------------------------------------------

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


def markdown(df: pd.DataFrame, corr: pd.DataFrame, meta: dict, cfg: dict) -> str:
    r, n, lk = cfg["report"], meta["n"], meta["large_k"]
    ks = meta["report_ks"]
    off = [f"pass@{k}" for k in ks] + ([f"pass@{lk}"] if lk not in ks else []) + [f"maj@{n}"]
    on = [f"pass@{k}" for k in ks]
    by = r.get("rank_by", "pass@1")
    level = int(round(100 * float(r.get("ci", 0.95))))
    seeds = int(df["seeds"].max())
    head = (["policy"] + [f"offline {m}" for m in off] + ["held-out NLL"] +
            [f"online {m}" for m in on] + ["offline rank", "online rank", "change"])
    lines = [f"# Offline vs online: {cfg['experiment']}", "",
             f"Offline = after SFT, online = after identical RL from that checkpoint; `direct` is RL "
             f"from the base model, `base`/`behavior` are the starting models. Pass rates in %, "
             f"{'mean ± std over ' + str(seeds) + ' seeds, ' if seeds > 1 else ''}"
             f"[{level}% bootstrap interval over {meta['item_count']} eval "
             f"items]; n = {n} samples per item. Ranks by {by} over the objectives (1 = best); "
             "change = offline rank − online rank (> 0: better after RL).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in df.iterrows():
        cells = ([row["policy"]] + [_pct(row, f"offline_{m}", m == by) for m in off] +
                 [_num(row, "heldout_nll")] + [_pct(row, f"online_{m}", m == by) for m in on] +
                 [_rank(row["offline_rank"]).lstrip("+"), _rank(row["online_rank"]).lstrip("+"),
                  _rank(row["rank_change"])])
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"## Which offline number predicts online {by}?", "",
              "Rank correlation over the objectives (n = how many); NaN where n < 2 or a "
              "column is constant. Lower held-out NLL is expected to predict better RL "
              "(negative correlation).", "",
              "| proxy | Kendall τ | Spearman ρ | n |", "|---|---|---|---|"]
    for _, c in corr.iterrows():
        lines.append(f"| {c['proxy']} | {c['kendall_tau']:.2f} | {c['spearman_rho']:.2f} | {c['n']} |")
    lines += ["", "## RL-readiness proxies (PEAR Appendix A)", "",
              "KL on a calibration set of verified behavior responses; sparsity = fraction of "
              "linear-layer entries that moved less than ε; NSS = normalized spectrum shift.", "",
              "| policy | KL(base‖SFT) | sparsity SFT vs base | NSS base↔SFT | KL(start‖RL) | "
              "sparsity RL vs start | NSS start↔RL |", "|---|---|---|---|---|---|---|"]
    for _, row in df[df["kind"] != "reference"].iterrows():
        cells = [_num(row, c) for c in ("kl_to_base", "sparsity_vs_base", "nss_base_sft",
                                        "kl_rl", "sparsity_rl", "nss_sft_rl")]
        lines.append(f"| {row['policy']} | " + " | ".join(cells) + " |")
    lines += ["", "![offline vs online](offline_online.png)", "",
              "![proxies vs online](proxies.png)", "", "![pass@k](pass_at_k.png)", ""]
    return "\n".join(lines)


# --- W&B charts (built by the tracker from these specs) --------------------------------------

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
                      "title": f"{c['proxy']} vs online {by} (τ={c['kendall_tau']:.2f})"})
    for phase in PHASES:
        sub = curves[curves["phase"] == phase]
        if len(sub):
            ks = sorted(sub["k"].unique())
            piv = sub.pivot(index="policy", columns="k", values="pass@k")
            specs.append({"key": f"pass_at_k/{phase}", "kind": "line_series", "xs": ks,
                          "ys": [list(piv.loc[p, ks]) for p in piv.index], "keys": list(piv.index),
                          "title": f"{phase} pass@k", "xname": "k"})
    return specs


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    out = Path(out)
    by = cfg["report"].get("rank_by", "pass@1")
    df, meta = build_table(inputs, cfg)
    corr = correlations(df, proxy_columns(df, meta), f"online_{by}")
    curves = pass_at_k_curves(meta)
    df.to_csv(out / "results.csv", index=False)
    corr.to_csv(out / "correlations.csv", index=False)
    curves.to_csv(out / "pass_at_k.csv", index=False)
    (out / "report.md").write_text(markdown(df, corr, meta, cfg))
    report_types.append_section(out / "report.md", parse_inputs(inputs))
    images = report_plots.plot_all(df, corr, curves, meta, by, out)
    tracker().log_report({"offline_online": df, "correlations": corr, "pass_at_k": curves},
                         chart_specs(df, corr, curves, by), images)
    rows = df.astype(object).where(pd.notna(df), None).to_dict(orient="records")
    write_json(rows, out / "results.json")
    obj = df[df["kind"] == "objective"]
    best = {f"best_{p}": (obj.loc[obj[f"{p}_{by}"].idxmax(), "policy"]
                          if f"{p}_{by}" in obj and obj[f"{p}_{by}"].notna().any() else None)
            for p in PHASES}
    return {"objectives": len(obj), "seeds": int(df["seeds"].max()), **best,
            "correlations": {c["column"]: {"kendall_tau": c["kendall_tau"], "spearman_rho":
                                           c["spearman_rho"], "n": int(c["n"])}
                             for _, c in corr.iterrows()},
            "rows": rows}
