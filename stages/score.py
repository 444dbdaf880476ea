"""Teacher-forced behavior log-probs for every response token.

Reads ``verified.parquet``, scores each response under π_β with the configured engine and writes
``scored.parquet`` with ``behavior_logprobs`` (one per response token) and, when
``score.topk`` > 0 (objectives kd / pear_kd), the behavior's top-k token ids and log-probs per
position. Responses are scored in shards of ``score.shard_size`` rows saved under ``work/``; a
re-run after a crash resumes from the missing ones. Missing shards run on ``sampler.workers``
engines at once (``stages.common.parallel_map``), with the same rows for any worker count.
``vocab.json`` records the behavior tokenizer's vocabulary so that the sft stage can refuse a base
model with another one (PEAR's ratios compare the two models token by token). Non-finite
log-probs fail the stage naming the rows (``score.nan_policy: fail``) or drop those rows
(``drop``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from stages.common import (load_tokenizer, note, parallel_map, progress, read_table,
                           worker_options, write_shard, write_table)
from stages.engines import make_engine


@dataclass
class ScoreShard:
    """One shard of responses to score (sent to a worker as is)."""

    index: int
    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    topk: int


def score_shard(engine, job: ScoreShard) -> pd.DataFrame:
    """Teacher-forced behavior log-probs (and top-k) of one shard's responses."""
    res = engine.score(job.prompt_ids, job.response_ids, topk=job.topk)
    cols = {"behavior_logprobs": [r.logprobs for r in res]}
    if job.topk:
        cols["behavior_topk_ids"] = [r.topk_ids for r in res]
        cols["behavior_topk_logprobs"] = [r.topk_logprobs for r in res]
    return pd.DataFrame(cols)


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    s = cfg["score"]
    topk = int(s.get("topk", 0) or 0)
    df = read_table(inputs["data"], "verified.parquet")
    chunk = max(1, int(s.get("shard_size", 1024)))
    shards: dict[int, pd.DataFrame] = {}
    jobs = []
    for k, start in enumerate(range(0, len(df), chunk)):
        path = Path(work) / f"shard-{k:05d}.parquet"
        if path.is_file():  # finished shards survive a crash; resume from the missing ones
            shards[k] = pd.read_parquet(path)
            continue
        part = df.iloc[start:start + chunk]
        jobs.append(ScoreShard(k, [list(x) for x in part["prompt_ids"]],
                               [list(x) for x in part["response_ids"]], topk))
    if shards:  # finished shards survive a crash or Ctrl-C
        total = len(shards) + len(jobs)
        note(f"resumed from shard {jobs[0].index} of {total} ({len(shards)} done before)" if jobs
             else f"resumed: all {total} shards were done before")
    bar = progress(total=len(shards) + len(jobs), desc="score", unit="shard", initial=len(shards))
    for i, part in parallel_map(partial(make_engine, inputs["model"], cfg["engine"]), score_shard,
                                jobs, **worker_options(cfg["engine"])):
        write_shard(part, Path(work) / f"shard-{jobs[i].index:05d}.parquet")
        shards[jobs[i].index] = part
        bar.update(1)
    bar.close()
    vocab = load_tokenizer(inputs["model"]).get_vocab()
    (Path(out) / "vocab.json").write_text(json.dumps(vocab, sort_keys=True))
    df = pd.concat([df.reset_index(drop=True),
                    pd.concat([shards[k] for k in sorted(shards)], ignore_index=True)], axis=1)
    # parquet stores NaN inside lists as null: both count as non-finite
    bad = [i for i, lp in enumerate(df["behavior_logprobs"])
           if not all(v is not None and math.isfinite(v) for v in lp)]
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
