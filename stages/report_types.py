"""Pass rates per task type: the eval's ``by_type`` and the report's "By task type" section.

A suite with several kinds of puzzle (SynLogic's 33 task types, reasoning-gym's games) can
gain on some and lose on others while the mean moves little; the PEAR paper's logic results
(§4.1.1) are means over SynLogic's types, so the report shows the split too. An item's type is
its ``task`` (SynLogic) or ``game`` (reasoning-gym) metadata; suites with one kind of item
(toy, math) give one type, ``all``, and the report leaves the section out.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from stages.metrics import summarize


def item_type(item) -> str:
    """The task type of an item (SynLogic ``task``, reasoning-gym ``game``), else ``all``."""
    meta = item.metadata or {}
    return str(meta.get("task") or meta.get("game") or "all")


def pass_by_type(df: pd.DataFrame, items_by_id: dict, ks: list[int]) -> dict:
    """``{type: {pass@k..., items}}`` from judged samples (``prompt_id``, ``extracted``, ``correct``)."""
    types = df["prompt_id"].map(lambda pid: item_type(items_by_id[pid]))
    out = {}
    for t, rows in df.groupby(types, sort=True):
        groups = [(list(g["extracted"]), list(g["correct"])) for _, g in rows.groupby("prompt_id", sort=False)]
        m = summarize(groups, ks)
        out[str(t)] = {**{k: v for k, v in m.items() if k.startswith("pass@")}, "items": m["items"]}
    return out


def type_table(parsed: dict) -> pd.DataFrame:
    """One row per task type, one column per policy and phase (``sft/offline``...): pass@1 in
    [0, 1], the mean over seeds, from each eval's ``metrics.json``; empty if no eval has types."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (kind, name, _seed), path in sorted(parsed.items(), key=lambda kv: str(kv[0])):
        file = Path(path) / "metrics.json"
        if not kind.startswith("eval") or not file.is_file():
            continue
        phase = "online" if kind == "eval/rl" else "offline"
        for t, m in (json.loads(file.read_text()).get("by_type") or {}).items():
            if "pass@1" in m:
                values[(t, f"{name}/{phase}")].append(float(m["pass@1"]))
    if not values:
        return pd.DataFrame()
    cells = {key: float(np.mean(v)) for key, v in values.items()}
    table = pd.Series(cells).unstack()
    return table.reindex(sorted(table.columns, key=lambda c: (c.split("/")[1], c)), axis=1)


def section(parsed: dict) -> str:
    """The report's "By task type" markdown ("" when the evals hold one type or none)."""
    table = type_table(parsed)
    if len(table.index) < 2:
        return ""
    cols = list(table.columns)
    lines = ["", "## By task type", "",
             "pass@1 in % per task type (mean over seeds); offline = after SFT, online = after RL.", "",
             "| task type | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for t, row in table.iterrows():
        lines.append(f"| {t} | " + " | ".join("—" if pd.isna(v) else f"{100 * v:.1f}" for v in row) + " |")
    return "\n".join(lines) + "\n"


def append_section(report_md: Path, parsed: dict) -> None:
    text = section(parsed)
    if text:
        with open(report_md, "a", encoding="utf-8") as f:
            f.write(text)
