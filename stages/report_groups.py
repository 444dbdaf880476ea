"""The report per benchmark (the PEAR paper's Table 2 layout) and the verifier's timeouts.

Per benchmark: for every policy and phase, avg@n and pass@k (each k of ``report.ks`` with
1 < k <= n) of each benchmark (math: MATH-500, Minerva, AIME-2024, AIME-2025, AMC-2023; SynLogic
and reasoning-gym: each task type), the mean over seeds, and their macro average (the plain
mean over benchmarks, Table 2's "Pass@k Avg." rows), recomputed from each eval's
``samples.parquet`` (its ``benchmark`` column, ``stages/report_types.py``). It goes to
``report.md`` (rows benchmark × metric, columns policy/phase), to ``results.csv`` as columns
``<phase>_<benchmark>/<metric>`` (``online_aime2024/pass@8``, ``online_macro/avg@64``) and to
W&B as the ``by_benchmark`` table. With one benchmark there is nothing to split: no section,
no columns.

Timeouts: the verify manifest's and every eval's ``timeouts`` (answers math-verify did not
judge in time on the first try, those a retry under a longer bound judged, and those still
timed out, which count as wrong) as a table per stage and suite.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from stages.report_types import group_metrics

MACRO = "macro"


def long_table(parsed: dict, ks: list[int]) -> pd.DataFrame:
    """``policy, phase, benchmark, metric, value, seeds`` (mean over seeds), macro rows included;
    empty when no eval has two benchmarks or more."""
    values: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for (kind, name, _seed), path in sorted(parsed.items(), key=lambda kv: str(kv[0])):
        file = Path(path) / "samples.parquet"
        if not kind.startswith("eval") or not file.is_file():
            continue
        names = pq.read_schema(file).names
        df = pd.read_parquet(file, columns=[c for c in ("prompt_id", "correct", "benchmark") if c in names])
        table = group_metrics(df, ks)
        if len(table) < 2:
            continue
        phase = "online" if kind == "eval/rl" else "offline"
        metrics = [c for c in table.columns if c != "items"]
        table.loc[MACRO] = pd.Series({**{m: table[m].mean() for m in metrics}, "items": table["items"].sum()})
        for bench, row in table.iterrows():
            for m in metrics:
                values[(name, phase, str(bench), m)].append(float(row[m]))
    rows = [{"policy": p, "phase": ph, "benchmark": b, "metric": m, "value": sum(v) / len(v), "seeds": len(v)}
            for (p, ph, b, m), v in values.items()]
    return pd.DataFrame(rows, columns=["policy", "phase", "benchmark", "metric", "value", "seeds"])


def add_columns(df: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
    """``df`` (one row per policy) with a column ``<phase>_<benchmark>/<metric>`` per cell of ``long``."""
    if long.empty:
        return df
    wide = long.assign(column=long["phase"] + "_" + long["benchmark"] + "/" + long["metric"]) \
        .pivot(index="policy", columns="column", values="value")
    return df.merge(wide, left_on="policy", right_index=True, how="left")


def section(long: pd.DataFrame, order: list[str]) -> list[str]:
    """The markdown section (rows benchmark × metric, macro last; columns policy/phase in
    ``order`` of policies, after RL first); [] when there is nothing to split."""
    if long.empty:
        return []
    cols = [(p, ph) for ph in ("online", "offline") for p in order
            if ((long["policy"] == p) & (long["phase"] == ph)).any()]
    cell = long.set_index(["benchmark", "metric", "policy", "phase"])["value"]
    benches = sorted(set(long["benchmark"]) - {MACRO}) + [MACRO]
    metrics = sorted(set(long["metric"]), key=lambda m: (not m.startswith("avg@"), int(m.split("@")[1])))
    lines = ["## Per benchmark", "",
             "Each benchmark (math: its source; SynLogic, reasoning-gym: each task type) in %, mean "
             "over seeds; avg@n = mean accuracy over the n samples of each item; macro = the plain "
             "mean over benchmarks (the PEAR paper's Table 2 layout). online = after RL, offline = "
             "after SFT.", "",
             "| benchmark | metric | " + " | ".join(f"{p}/{ph}" for p, ph in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for b in benches:
        for i, m in enumerate(metrics):
            label = (b if b != MACRO else "**macro**") if i == 0 else ""
            vals = [cell.get((b, m, p, ph)) for p, ph in cols]
            lines.append(f"| {label} | {m} | " + " | ".join(
                "—" if v is None or pd.isna(v) else f"{100 * v:.1f}" for v in vals) + " |")
    return lines + [""]


def timeouts_table(parsed: dict) -> pd.DataFrame:
    """``stage, suite, first_try, recovered, after_retry``: verify's, and each eval's summed
    over seeds (``eval <policy>/<phase>``); empty when no input recorded timeouts."""
    rows: dict[tuple[str, str], dict[str, int]] = {}
    for (kind, name, _seed), path in sorted(parsed.items(), key=lambda kv: str(kv[0])):
        if kind == "verify":
            found, stage = _read(Path(path) / "manifest.json").get("metrics", {}).get("timeouts"), "verify"
        elif kind.startswith("eval"):
            phase = {"eval/rl": "online", "eval/sft": "offline"}.get(kind, "start")
            found, stage = _read(Path(path) / "metrics.json").get("timeouts"), f"eval {name}/{phase}"
        else:
            continue
        for suite, c in (found or {}).items():
            acc = rows.setdefault((stage, suite), {"first_try": 0, "recovered": 0, "after_retry": 0})
            for k in acc:
                acc[k] += int(c.get(k, 0))
    return pd.DataFrame([{"stage": s, "suite": su, **c} for (s, su), c in rows.items()],
                        columns=["stage", "suite", "first_try", "recovered", "after_retry"])


def timeouts_section(table: pd.DataFrame) -> list[str]:
    if table.empty:
        return []
    lines = ["## Verifier timeouts", "",
             "Answers the verifier (math-verify) did not judge within its bound on the first try, "
             "those a retry under the longer bound judged, and those still timed out (counted as "
             "wrong; verify keeps them out of the failures pear_neg learns from).", "",
             "| stage | suite | first try | recovered by the retry | still timed out |", "|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['stage']} | {r['suite']} | {r['first_try']} | {r['recovered']} | {r['after_retry']} |")
    return lines + [""]


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
