"""The study's answer: offline vs online per objective, and which offline number predicts RL.

Reproduces the comparison of the PEAR paper's Figure 1 and Tables 6-7, and asks the Quagmires
question (Kang et al. 2025): which offline proxy ranks the objectives the way online pass@1 does?
Offline = the SFT checkpoint, online = after identical RL from it; ``direct`` is RL from the base.

Inputs (names the DAG gives them; any may be missing, e.g. when ``pipeline report`` gathers what
exists): ``eval/base``, ``eval/behavior``, ``eval/sft/<objective>/<seed>``,
``eval/rl/<objective|direct>/<seed>``, ``sft/<objective>/<seed>`` (held-out NLL),
``analysis/sft/<objective>/<seed>`` and ``analysis/rl/<objective|direct>/<seed>`` (Appendix A).

Every pass@k is recomputed from the eval's ``samples.parquet`` (unbiased estimator per item), so
any k <= n is available, including pass@large-k (``report.large_k``, default n); maj@n votes
with the eval's ``answer_group`` (the task's answer equality; missing answers never vote).
Per-policy intervals: a percentile bootstrap over eval items of the item values averaged over
seeds (``_lo``/``_hi``) and, with several seeds, the std across seeds (``_std``). Ranks
(1 = best) are over objectives by ``report.rank_by``; ``rank_change`` = offline rank − online
rank (> 0: better online).

How sure the answer is (``stages/report_stats.py``): one paired bootstrap over eval items and,
with several seeds, seeds (``report.bootstrap`` resamples, level ``report.ci``), the same draw
for every objective and both phases, gives the intervals of Kendall τ and Spearman ρ of every
proxy, and of every pairwise difference offline and online. A pair of objectives whose order
flips between offline and online is a significant flip when both its offline and its online
difference exclude 0; ``rank_change_significance`` says whether all, some (``k of m``) or none
of an objective's flips are. The best online objective is significant when its lead over the
runner-up excludes 0. Correlations over fewer than four objectives are "too few to judge"
(``judgeable`` false), never printed as ±1.00. ``report.md`` opens with an Answer section in
sentences (``stages/report_answer.py``). Addition to the paper, whose Figure 1 and Tables 6-7
show rank changes without intervals: every rank change here says whether it is significant.

Per benchmark (math's five, logic's task types): avg@n, pass@k and their macro average, the
paper's Table 2 layout, and the verifier's timeouts, from ``stages/report_groups.py``.

Writes ``results.csv`` (one row per policy, every column), ``correlations.csv`` (Kendall τ-b and
Spearman ρ of each proxy vs online ``rank_by`` over the objectives, with intervals),
``differences.csv`` (every pair's difference per phase with its interval), ``pass_at_k.csv``,
``report.md`` and the plots of ``stages/report_plots.py``; the same tables and W&B charts go to
the tracker (a no-op unless the runner installs one).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from stages import report_answer, report_groups, report_markdown, report_plots, report_stats
from stages.common import tracker, write_json
from stages.metrics import (bootstrap_ci, kendall_tau, maj_at_n, pass_at_k_items,
                            spearman_rho)
from verifiers.base import normalized_answer

PHASES = ("offline", "online")
# analysis.json key -> report column, for the SFT-vs-base and the RL-vs-start comparisons
ANALYSIS_SFT = {"forward_kl": "kl_to_base", "sparsity": "sparsity_vs_base", "nss": "nss_base_sft",
                "gradient_rotation": "grad_rotation"}
ANALYSIS_RL = {"forward_kl": "kl_rl", "sparsity": "sparsity_rl", "nss": "nss_sft_rl"}
# proxy column -> label; the offline pass@k and maj@n columns are added per run. NSS SFT↔RL is
# measured after RL (paper Fig. 9d): shown for analysis, it cannot predict before RL runs.
PROXIES = {"heldout_nll": "held-out NLL", "kl_to_base": "KL(base‖SFT)",
           "sparsity_vs_base": "update sparsity SFT vs base", "nss_base_sft": "NSS base↔SFT",
           "grad_rotation": "gradient rotation offline↔online (°)", "nss_sft_rl": "NSS SFT↔RL (post-RL)"}


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def parse_inputs(inputs: dict[str, str]) -> dict[tuple[str, str, int | None], Path]:
    """``{(kind, name, seed): path}``; kind is eval/sft, eval/rl, sft, analysis/sft, ...;
    ``eval/base`` and ``eval/behavior`` become ``("eval/ref", name, None)``, ``verify``
    ``("verify", "verify", None)``."""
    out = {}
    for key, path in inputs.items():
        parts = key.split("/")
        if len(parts) == 1:  # ``verify``: its manifest's timeouts
            out[(key, key, None)] = Path(path)
        elif parts[0] == "eval" and len(parts) == 2:
            out[("eval/ref", parts[1], None)] = Path(path)
        else:
            out[("/".join(parts[:-2]), parts[-2], int(parts[-1]))] = Path(path)
    return out


def item_table(eval_dir: Path, ks: list[int]) -> pd.DataFrame:
    """Per eval item: pass@k for every k <= n and maj@n (as 0/1), indexed by prompt_id.

    maj@n votes with the eval's ``answer_group`` (answers grouped by the task's equality); an
    eval written before that column existed votes with normalised answer strings. Samples
    without an extracted answer never vote."""
    path = eval_dir / "samples.parquet"
    cols = ["prompt_id", "correct", "extracted"]
    grouped = "answer_group" in pq.read_schema(path).names
    df = pd.read_parquet(path, columns=cols + ["answer_group"] * grouped)
    g = df.groupby("prompt_id", sort=True)
    n, c = g["correct"].size(), g["correct"].sum()
    out = pd.DataFrame(index=n.index)
    for k in ks:
        if k <= n.min():
            out[f"pass@{k}"] = pass_at_k_items(n.values, c.values, k)
    out[f"maj@{n.min()}"] = [float(maj_at_n(
        list(x["extracted"]), list(x["correct"]), normalized_equal,
        list(x["answer_group"]) if grouped else None)) for _, x in g]
    return out


def normalized_equal(a: str, b: str) -> bool:
    return normalized_answer(a) == normalized_answer(b)


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
    by_seed: dict[tuple[str, str, int], pd.DataFrame] = {}
    for (kind, name, seed), path in sorted(evals.items(), key=lambda kv: str(kv[0])):
        phase = "online" if kind == "eval/rl" else "offline"
        items[(phase, name)].append(item_table(path, ks))
        if seed is not None:
            by_seed[(phase, name, seed)] = items[(phase, name)][-1]

    names = sorted({name for (kind, name, _) in parsed if kind in ("eval/sft", "eval/rl", "sft")})
    per_seed = seed_values(parsed)
    df = pd.DataFrame([policy_row(name, parsed, items, per_seed, r)
                       for name in ["base", "behavior", *names]
                       if any(items.get((phase, name)) for phase in PHASES)])
    by = r.get("rank_by", "pass@1")
    for col in (f"offline_{by}", f"online_{by}"):  # e.g. no RL finished yet: keep the columns
        if col not in df:
            df[col] = np.nan
    add_ranks(df, by)
    report_ks = [int(k) for k in r["ks"] if int(k) <= n]
    return df, {"n": n, "ks": ks, "report_ks": report_ks, "large_k": large_k, "items": items,
                "item_count": len(next(iter(items.values()))[0]), "by_seed": by_seed,
                "seed_values": per_seed}


def seed_values(parsed: dict) -> dict[str, dict[tuple[str, int], float | None]]:
    """``{column: {(policy, seed): value}}`` of the per-seed quantities: held-out NLL (sft
    manifest) and the Appendix A proxies (analysis outputs)."""
    out: dict[str, dict] = {c: {} for c in ("heldout_nll", *ANALYSIS_SFT.values(),
                                            *ANALYSIS_RL.values())}
    for (kind, name, seed), path in parsed.items():
        if kind == "sft":
            nll = _json(path / "manifest.json").get("metrics", {}).get("heldout_nll")
            out["heldout_nll"][(name, seed)] = nll
        columns = {"analysis/sft": ANALYSIS_SFT, "analysis/rl": ANALYSIS_RL}.get(kind, {})
        found = _json(path / "analysis.json") if columns else {}
        for src, dst in columns.items():
            out[dst][(name, seed)] = found.get(src)
    return out


def policy_row(name: str, parsed: dict, items: dict, per_seed: dict, r: dict) -> dict:
    """Everything the report knows about one policy, aggregated over its seeds."""
    kind = {"base": "reference", "behavior": "reference", "direct": "direct-RL"}.get(name, "objective")
    seeds = {s for (_, nm, s) in parsed if nm == name and s is not None}
    row: dict = {"policy": name, "kind": kind, "seeds": len(seeds) or 1}
    for phase in PHASES:
        if items.get((phase, name)):
            row.update({f"{phase}_{k}": v for k, v in aggregate(items[(phase, name)], r).items()})
    for col, values in per_seed.items():
        row[col], row[f"{col}_std"] = _mean_std([v for (nm, _), v in values.items() if nm == name])
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
                     "spearman_rho": spearman_rho(x, y) if len(both) >= 2 else np.nan,
                     "judgeable": len(both) >= report_stats.MIN_OBJECTIVES})
    return pd.DataFrame(rows, columns=["proxy", "column", "n", "kendall_tau", "spearman_rho",
                                       "judgeable"])


def uncertainty(df: pd.DataFrame, meta: dict, proxies: dict, cfg: dict) -> report_stats.Uncertainty:
    """The paired bootstrap over eval items and seeds behind every interval of the answer."""
    r = cfg["report"]
    by = r.get("rank_by", "pass@1")
    objectives = list(df.loc[df["kind"] == "objective", "policy"])
    study = report_stats.build_study(
        meta["by_seed"], objectives, by, [c for c in proxies if c.startswith("offline_")],
        {c: meta["seed_values"][c] for c in proxies if c in meta["seed_values"]})
    return report_stats.analyse(study, df.set_index("policy"), by, int(r.get("bootstrap", 1000)),
                                float(r.get("ci", 0.95)))


def pass_at_k_curves(meta: dict) -> pd.DataFrame:
    """Long table: policy, phase, k, pass@k (mean over seeds)."""
    rows = []
    for (phase, name), tables in sorted(meta["items"].items()):
        for k in meta["ks"]:
            if f"pass@{k}" in tables[0]:
                rows.append({"policy": name, "phase": phase, "k": k,
                             "pass@k": float(np.mean([t[f"pass@{k}"].mean() for t in tables]))})
    return pd.DataFrame(rows, columns=["policy", "phase", "k", "pass@k"])


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    out = Path(out)
    by = cfg["report"].get("rank_by", "pass@1")
    df, meta = build_table(inputs, cfg)
    proxies = proxy_columns(df, meta)
    unc = uncertainty(df, meta, proxies, cfg)
    df, corr = report_stats.attach(df, correlations(df, proxies, f"online_{by}"), unc)
    facts = report_answer.facts(df, corr, unc, by)
    curves = pass_at_k_curves(meta)
    parsed = parse_inputs(inputs)
    benches = report_groups.long_table(parsed, meta["report_ks"])
    df = report_groups.add_columns(df, benches)
    timeouts = report_groups.timeouts_table(parsed)
    df.to_csv(out / "results.csv", index=False)
    corr.to_csv(out / "correlations.csv", index=False)
    unc.differences.to_csv(out / "differences.csv", index=False)
    curves.to_csv(out / "pass_at_k.csv", index=False)
    (out / "report.md").write_text(report_markdown.markdown(
        df, corr, meta, cfg, report_answer.section(facts, df, unc, by),
        report_groups.section(benches, list(df["policy"])),
        report_groups.timeouts_section(timeouts)))
    images = report_plots.plot_all(df, corr, curves, meta, by, out)
    tracker().log_report({"offline_online": df, "correlations": corr, "pass_at_k": curves,
                          "differences": unc.differences, "by_benchmark": benches, "timeouts": timeouts},
                         report_plots.chart_specs(df, corr, curves, by), images)
    rows = df.astype(object).where(pd.notna(df), None).to_dict(orient="records")
    write_json(rows, out / "results.json")
    obj = df[df["kind"] == "objective"]
    best = {f"best_{p}": (obj.loc[obj[f"{p}_{by}"].idxmax(), "policy"]
                          if f"{p}_{by}" in obj and obj[f"{p}_{by}"].notna().any() else None)
            for p in PHASES}
    return {"objectives": len(obj), "seeds": int(df["seeds"].max()), **best,
            "correlations": {c["column"]: {k: c[k] for k in ("kendall_tau", "tau_lo", "tau_hi",
                                                              "spearman_rho", "rho_lo", "rho_hi")}
                             | {"n": int(c["n"]), "judgeable": bool(c["judgeable"])}
                             for _, c in corr.iterrows()},
            "answer": facts, "rows": rows}
