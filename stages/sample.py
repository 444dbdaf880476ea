"""Sample the behavior policy π_β on the task's train prompts (DESIGN.md "sample").

Writes ``responses.parquet``: one row per (prompt, sample) with the prompt and response token
ids, the decoded response, the sampled tokens' log-probs under π_β and the finish reason.

Prompts are processed in shards of ``sample.shard_size``; each finished shard is saved under
``work/`` and a re-run after a crash resumes from the first missing shard. Every shard is seeded
from (seed, shard index), so a resumed run writes exactly the rows an uninterrupted one would.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from stages.common import progress, write_table
from stages.engines import make_engine
from verifiers import build_suite
from verifiers.base import Item


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


def generate_rows(engine, items: list[Item], prompts: list[str], n: int, s: dict, seed: int,
                  shard_size: int, work: Path | None, desc: str) -> pd.DataFrame:
    """Generate n samples per prompt, shard by shard, resuming from finished shards in ``work``."""
    shards = range(0, len(items), shard_size)
    frames = []
    bar = progress(total=len(items), desc=desc, unit="prompt")
    for k, start in enumerate(shards):
        path = Path(work) / f"shard-{k:05d}.parquet" if work else None
        if path is not None and path.is_file():
            frames.append(pd.read_parquet(path))
            bar.update(min(shard_size, len(items) - start))
            continue
        chunk, texts = items[start:start + shard_size], prompts[start:start + shard_size]
        gens = engine.generate(texts, n=n, temperature=float(s["temperature"]),
                               top_p=float(s.get("top_p", 1.0)),
                               max_new_tokens=int(s["max_new_tokens"]), seed=seed * 100_003 + k)
        rows = []
        for it, text, samples in zip(chunk, texts, gens):
            p_ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
            for j, g in enumerate(samples):
                rows.append({"prompt_id": it.id, "sample_idx": j, "prompt": text,
                             "prompt_ids": p_ids, "response_ids": g.token_ids,
                             "response": g.text, "sample_logprobs": g.logprobs,
                             "finish_reason": g.finish_reason})
        df = pd.DataFrame(rows)
        if path is not None:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            df.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        frames.append(df)
        bar.update(len(chunk))
    bar.close()
    return pd.concat(frames, ignore_index=True)


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    s = cfg["sample"]
    items = build_suite(cfg["task"]).items("train")
    engine = make_engine(inputs["model"], cfg["engine"])
    prompts = prompt_strings(items, engine.tokenizer)
    df = generate_rows(engine, items, prompts, int(s["n"]), s, int(cfg["seed"]),
                       int(s["shard_size"]), work, "sample")
    engine.close()
    write_table(df, out, "responses.parquet")
    lengths = df["response_ids"].map(len)
    return {"prompts": len(items), "responses": len(df),
            "mean_response_tokens": float(lengths.mean()),
            "truncated_fraction": float((df["finish_reason"] == "length").mean())}
