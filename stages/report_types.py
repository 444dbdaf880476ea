"""Pass rates per task type and per benchmark, from judged samples (eval's ``metrics.json``).

A suite with several kinds of puzzle (SynLogic's 33 task types, reasoning-gym's games) can
gain on some and lose on others while the mean moves little; a math study evaluates on five
benchmarks of very different sizes (MATH-500's 500 problems against AIME's 30), so one mean over
all items is MATH-500's. The PEAR paper reports math per benchmark with their macro average
(Table 2: avg@64 and pass@k) and logic as means over SynLogic's types (§4.1.1).

An item's *type* is its ``task`` (SynLogic) or ``game`` (reasoning-gym) metadata, else ``all``;
its *benchmark* is its type, else its ``source`` (math: the file it came from), else ``all``.
The report's per-benchmark table is ``stages/report_groups.py``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from stages.metrics import pass_at_k_items, summarize


def item_type(item) -> str:
    """The task type of an item (SynLogic ``task``, reasoning-gym ``game``), else ``all``."""
    meta = item.metadata or {}
    return str(meta.get("task") or meta.get("game") or "all")


def item_benchmark(item) -> str:
    """The group an item is reported in: its task type, else its ``source`` (math), else ``all``."""
    meta = item.metadata or {}
    return str(meta.get("task") or meta.get("game") or meta.get("source") or "all")


def pass_by_type(df: pd.DataFrame, items_by_id: dict, ks: list[int]) -> dict:
    """``{type: {pass@k..., items}}`` from judged samples (``prompt_id``, ``extracted``, ``correct``)."""
    types = df["prompt_id"].map(lambda pid: item_type(items_by_id[pid]))
    out = {}
    for t, rows in df.groupby(types, sort=True):
        groups = [(list(g["extracted"]), list(g["correct"])) for _, g in rows.groupby("prompt_id", sort=False)]
        m = summarize(groups, ks)
        out[str(t)] = {**{k: v for k, v in m.items() if k.startswith("pass@")}, "items": m["items"]}
    return out


def group_metrics(df: pd.DataFrame, ks: list[int]) -> pd.DataFrame:
    """One row per benchmark (``benchmark`` column of judged samples: ``prompt_id``,
    ``correct``): ``avg@n`` (mean accuracy over each item's n samples), ``pass@k`` for every
    k in ``ks`` with 1 < k <= n (unbiased, per item), and ``items``; n = the fewest samples of
    any item. Without a ``benchmark`` column, one row ``all``."""
    bench = df["benchmark"] if "benchmark" in df else pd.Series("all", index=df.index)
    per_item = df.assign(benchmark=bench).groupby(["benchmark", "prompt_id"], sort=True)["correct"]
    n_items, c_items = per_item.size(), per_item.sum()
    n = int(n_items.min())
    rows = {}
    for b in n_items.index.get_level_values(0).unique():
        nb, cb = n_items.loc[b].to_numpy(), c_items.loc[b].to_numpy()
        row = {f"avg@{n}": float(np.mean(cb / nb))}
        for k in ks:
            if 1 < k <= n:
                row[f"pass@{k}"] = float(pass_at_k_items(nb, cb, k).mean())
        row["items"] = len(nb)
        rows[str(b)] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def pass_by_benchmark(df: pd.DataFrame, ks: list[int]) -> dict:
    """``{"benchmarks": {name: {avg@n, pass@k..., items}}, "macro": {avg@n, pass@k...}}``: the
    macro average is the plain mean over benchmarks, whatever their sizes (Table 2's "Avg.")."""
    table = group_metrics(df, ks)
    metrics = [c for c in table.columns if c != "items"]
    return {"benchmarks": {b: {k: (int(v) if k == "items" else float(v)) for k, v in row.items()}
                           for b, row in table.iterrows()},
            "macro": {m: float(table[m].mean()) for m in metrics}}
