"""Sample the behavior policy π_β on the task's train prompts.

Writes ``responses.parquet``: one row per (prompt, sample) with the prompt and response token
ids, the decoded response, the sampled tokens' log-probs under π_β and the finish reason.

Prompts are processed in shards of ``sample.shard_size``; each finished shard is saved under
``work/`` and a re-run after a crash resumes from the first missing shard. Every shard is seeded
from (seed, shard index), so a resumed run writes exactly the rows an uninterrupted one would.
Missing shards run on ``sampler.workers`` engines at once (``stages.common.parallel_map``: Ray
actors under the pipeline, ``pipeline/parallel.py``); the rows never depend on the worker count.

Sampling policy: PEAR's ratios (paper, Algorithm 1) need log π_β of the distribution the data
were drawn from, and the engines report temperature-1 full-vocabulary log-probs, so
``sample.temperature`` and ``sample.top_p`` other than 1 are refused before any work
(``check_sampling_policy``); the manifest's ``logprobs_of`` says which distribution was stored.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from stages.common import (load_tokenizer, note, parallel_map, progress, worker_options,
                           write_shard, write_table)
from stages.engines import make_engine
from verifiers import build_suite
from verifiers.base import Item

#: what the stored ``sample_logprobs`` (and the score stage's ``behavior_logprobs``) are
LOGPROBS_OF = "the sampling distribution: temperature 1, top_p 1 (full-vocabulary softmax)"


def check_sampling_policy(s: dict) -> None:
    """PEAR's ratios need log π_β of the distribution the data were sampled from. Both engines
    return (and the score stage recomputes) temperature-1, full-vocabulary log-probs, which are
    that distribution only when sampling at temperature 1 without top-p: anything else is
    refused before any work (eval may sample at any temperature; it stores no log-probs)."""
    t, p = float(s["temperature"]), float(s.get("top_p", 1.0))
    if t != 1.0 or p != 1.0:
        raise ValueError(f"sample.temperature={t:g}, sample.top_p={p:g}: behavior sampling must "
                         "use temperature 1 and top_p 1, because PEAR's importance ratios need "
                         "the log-probs of the distribution the responses were drawn from and "
                         "the engines report log-probs at temperature 1 over the whole "
                         "vocabulary (set both to 1.0)")


def prompt_strings(items: list[Item], tokenizer) -> list[str]:
    """Plain-text prompts; chat prompts go through the model's chat template."""
    out = []
    for it in items:
        if isinstance(it.prompt, str):
            out.append(it.prompt)
        else:
            out.append(tokenizer.apply_chat_template(list(it.prompt), tokenize=False,
                                                     add_generation_prompt=True))
    return out


@dataclass
class GenShard:
    """One shard of prompts and everything needed to sample it (sent to a worker as is)."""

    index: int
    items: list[Item]
    prompts: list[str]
    n: int
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int


def generate_shard(engine, job: GenShard) -> pd.DataFrame:
    """Sample one shard: n rows per prompt. Depends on the shard only (its own seed)."""
    gens = engine.generate(job.prompts, n=job.n, temperature=job.temperature, top_p=job.top_p,
                           max_new_tokens=job.max_new_tokens, seed=job.seed)
    rows = []
    for it, text, samples in zip(job.items, job.prompts, gens):
        p_ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
        for j, g in enumerate(samples):
            rows.append({"prompt_id": it.id, "sample_idx": j, "prompt": text,
                         "prompt_ids": p_ids, "response_ids": g.token_ids,
                         "response": g.text, "sample_logprobs": g.logprobs,
                         "finish_reason": g.finish_reason})
    return pd.DataFrame(rows)


def generate_rows(make_engine_fn: Callable[[], Any], items: list[Item], prompts: list[str],
                  n: int, s: dict, seed: int, shard_size: int, work: Path | None, desc: str,
                  workers: dict | None = None) -> pd.DataFrame:
    """Generate n samples per prompt, shard by shard, resuming from finished shards in ``work``.

    Missing shards go to ``parallel_map`` (one engine per worker, ``workers`` from
    ``worker_options``); each is saved as it arrives and the result is in prompt order.
    """
    shard_size = max(1, shard_size)
    frames: dict[int, pd.DataFrame] = {}
    jobs = []
    for k, start in enumerate(range(0, len(items), shard_size)):
        path = Path(work) / f"shard-{k:05d}.parquet" if work else None
        if path is not None and path.is_file():
            frames[k] = pd.read_parquet(path)
            continue
        jobs.append(GenShard(k, items[start:start + shard_size], prompts[start:start + shard_size],
                             n, float(s["temperature"]), float(s.get("top_p", 1.0)),
                             int(s["max_new_tokens"]), seed * 100_003 + k))
    if frames:  # finished shards survive a crash or Ctrl-C
        shards = len(frames) + len(jobs)
        note(f"resumed from shard {jobs[0].index} of {shards} ({len(frames)} done before)" if jobs
             else f"resumed: all {shards} shards were done before")
    bar = progress(total=len(items), desc=desc, unit="prompt",
                   initial=len(items) - sum(len(j.items) for j in jobs))
    for i, df in parallel_map(make_engine_fn, generate_shard, jobs, **(workers or {})):
        if work:
            write_shard(df, Path(work) / f"shard-{jobs[i].index:05d}.parquet")
        frames[jobs[i].index] = df
        bar.update(len(jobs[i].items))
    bar.close()
    return pd.concat([frames[k] for k in sorted(frames)], ignore_index=True)


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    s = cfg["sample"]
    check_sampling_policy(s)
    items = build_suite(cfg["task"]).items("train")
    prompts = prompt_strings(items, load_tokenizer(inputs["model"]))
    df = generate_rows(partial(make_engine, inputs["model"], cfg["engine"]), items, prompts,
                       int(s["n"]), s, int(cfg["seed"]), int(s["shard_size"]), work, "sample",
                       worker_options(cfg["engine"]))
    write_table(df, out, "responses.parquet")
    lengths = df["response_ids"].map(len)
    return {"prompts": len(items), "responses": len(df), "logprobs_of": LOGPROBS_OF,
            "mean_response_tokens": float(lengths.mean()),
            "truncated_fraction": float((df["finish_reason"] == "length").mean())}
