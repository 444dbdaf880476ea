"""Teacher-forced behavior log-probs for every response token (DESIGN.md "score").

Reads ``verified.parquet``, scores each response under π_β with the configured engine and writes
``scored.parquet`` with ``behavior_logprobs`` (one per response token) and, when
``score.topk`` > 0 (objectives kd / pear_kd), the behavior's top-k token ids and log-probs per
position. Non-finite log-probs fail the stage naming the rows (``score.nan_policy: fail``) or
drop those rows (``drop``).
"""
from __future__ import annotations

import math
from pathlib import Path

from stages.common import progress, read_table, write_table
from stages.engines import make_engine


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    s = cfg["score"]
    topk = int(s.get("topk", 0) or 0)
    df = read_table(inputs["data"], "verified.parquet")
    engine = make_engine(inputs["model"], cfg["engine"])
    chunk = max(1, int(cfg["engine"].get("batch_size", 64))) * 4
    scored = []
    for start in progress(range(0, len(df), chunk), desc="score", unit="batch"):
        part = df.iloc[start:start + chunk]
        scored.extend(engine.score([list(x) for x in part["prompt_ids"]],
                                   [list(x) for x in part["response_ids"]], topk=topk))
    engine.close()
    df["behavior_logprobs"] = [r.logprobs for r in scored]
    if topk:
        df["behavior_topk_ids"] = [r.topk_ids for r in scored]
        df["behavior_topk_logprobs"] = [r.topk_logprobs for r in scored]
    bad = [i for i, lp in enumerate(df["behavior_logprobs"]) if not all(map(math.isfinite, lp))]
    if bad:
        ids = [f"{df.prompt_id[i]}#{df.sample_idx[i]}" for i in bad[:10]]
        if s.get("nan_policy", "fail") == "fail":
            raise ValueError(f"{len(bad)} responses have non-finite behavior log-probs, e.g. {ids}")
        df = df.drop(index=bad).reset_index(drop=True)
    gap = [abs(a - b) for lp, sp in zip(df["behavior_logprobs"], df["sample_logprobs"])
           for a, b in zip(lp, sp)]
    write_table(df, out, "scored.parquet")
    return {"responses": len(df), "dropped_non_finite": len(bad), "topk": topk,
            "mean_behavior_logprob": float(sum(map(sum, df["behavior_logprobs"]))
                                           / max(1, sum(map(len, df["behavior_logprobs"])))),
            "max_abs_gap_vs_sampled_logprobs": max(gap) if gap else 0.0}
