"""Teacher-forced behavior log-probs for every response token (DESIGN.md "score").

Reads ``verified.parquet``, scores each response under π_β with the configured engine and writes
``scored.parquet`` with ``behavior_logprobs`` (one per response token) and, when
``score.topk`` > 0 (objectives kd / pear_kd), the behavior's top-k token ids and log-probs per
position. Responses are scored in shards of ``score.shard_size`` rows saved under ``work/``; a
re-run after a crash resumes from the first missing shard. ``vocab.json`` records the behavior
tokenizer's vocabulary so that the sft stage can refuse a base model with another one (PEAR's
ratios compare the two models token by token). Non-finite log-probs fail the stage naming the rows (``score.nan_policy: fail``) or
drop those rows (``drop``).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

from stages.common import progress, read_table, write_table
from stages.engines import make_engine


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    s = cfg["score"]
    topk = int(s.get("topk", 0) or 0)
    df = read_table(inputs["data"], "verified.parquet")
    engine = make_engine(inputs["model"], cfg["engine"])
    chunk = int(s.get("shard_size", 1024))
    shards = []
    for k, start in enumerate(progress(range(0, len(df), chunk), desc="score", unit="shard")):
        path = Path(work) / f"shard-{k:05d}.parquet"
        if not path.is_file():  # finished shards survive a crash; resume from the first missing
            part = df.iloc[start:start + chunk]
            res = engine.score([list(x) for x in part["prompt_ids"]],
                               [list(x) for x in part["response_ids"]], topk=topk)
            cols = {"behavior_logprobs": [r.logprobs for r in res]}
            if topk:
                cols["behavior_topk_ids"] = [r.topk_ids for r in res]
                cols["behavior_topk_logprobs"] = [r.topk_logprobs for r in res]
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            pd.DataFrame(cols).to_parquet(tmp, index=False)
            os.replace(tmp, path)
        shards.append(pd.read_parquet(path))
    (Path(out) / "vocab.json").write_text(json.dumps(engine.tokenizer.get_vocab(), sort_keys=True))
    engine.close()
    df = pd.concat([df.reset_index(drop=True), pd.concat(shards, ignore_index=True)], axis=1)
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
