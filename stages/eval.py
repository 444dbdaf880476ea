"""Evaluate a model on the task's held-out split: pass@k, avg@n, maj@n.

Samples ``eval.n`` completions per eval item with the configured engine, judges them with the
task verifier and writes ``samples.parquet`` (every sample with its verdict) and
``metrics.json``. The eval split never shares a prompt with the train or rl split (the suites
guarantee it; this stage checks it again and fails if they overlap).

maj@n votes only among extracted answers, grouped by the suite's ``same_answer`` (math-verify
equivalence for math, normalised strings for games, integers for the toy task);
``samples.parquet``'s ``answer_group`` holds each sample's group for the report: the position,
among its prompt's samples, of the first one with an equal answer; -1 where none was extracted.

Items are sampled in shards of ``eval.shard_size`` prompts (default: one shard of all items),
each seeded by its index and saved under ``work/`` (a re-run resumes), and the shards run on
``sampler.workers`` engines at once; the rows never depend on the worker count.

Judging runs on as many processes as the stage has CPUs (``stages/judging.py``), under
``eval.timeout_s`` per math-verify call with one retry under ``eval.retry_timeout_s`` (both
default to ``verify``'s); ``metrics.json`` counts the timeouts per suite (``timeouts``) and
``samples.parquet`` marks what still timed out (``timed_out``).

Per benchmark: ``samples.parquet``'s ``benchmark`` column is each item's benchmark or task type
(math: its source file, e.g. ``aime2024``; SynLogic: its task; reasoning-gym: its game), and
``metrics.json``'s ``by_benchmark`` holds avg@n and pass@k of each with their macro average
(the PEAR paper's Table 2 layout; ``stages/report_groups.py`` builds the report's table).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from stages.common import load_tokenizer, worker_options, write_json, write_table
from stages.engines import make_engine
from stages.judging import Judge, bounds, stage_cpus
from stages.metrics import answer_groups, summarize
from stages.report_types import item_benchmark, pass_by_benchmark, pass_by_type
from stages.sample import generate_rows, prompt_strings
from verifiers import build_suite
from verifiers.base import prompt_text


def check_disjoint(suite, split: str) -> None:
    held = {prompt_text(it.prompt) for it in suite.items(split)}
    for other in ("train", "rl"):
        if other != split:
            shared = held & {prompt_text(it.prompt) for it in suite.items(other)}
            if shared:
                raise ValueError(f"eval split {split!r} shares {len(shared)} prompts with the "
                                 f"{other!r} split, e.g. {sorted(shared)[:3]}; results would be "
                                 "contaminated")


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    e = cfg["eval"]
    suite = build_suite(cfg["task"])
    check_disjoint(suite, e["split"])
    items = suite.items(e["split"])
    prompts = prompt_strings(items, load_tokenizer(inputs["model"]))
    df = generate_rows(partial(make_engine, inputs["model"], cfg["engine"]), items, prompts,
                       int(e["n"]), e, int(cfg["seed"]) + 7919,
                       shard_size=int(e.get("shard_size") or len(items)), work=work, desc="eval",
                       workers=worker_options(cfg["engine"]))
    by_id = {it.id: it for it in items}
    with Judge(cfg["task"], stage_cpus(), *bounds(e, "eval"), suite=suite) as judge:
        verdicts, _ = judge.score([(by_id[p], r) for p, r in zip(df["prompt_id"], df["response"])])
    df["reward"] = [v.reward for v in verdicts]
    df["correct"] = [v.correct for v in verdicts]
    df["extracted"] = [v.extracted for v in verdicts]
    df["reason"] = [v.reason for v in verdicts]
    df["timed_out"] = [bool(v.timed_out) for v in verdicts]
    df["benchmark"] = df["prompt_id"].map(lambda pid: item_benchmark(by_id[pid]))
    # maj@n votes: per prompt, the group of each sample's answer by the task's own equality
    df["answer_group"] = df.groupby("prompt_id", sort=False)["extracted"].transform(
        lambda x: answer_groups(list(x), suite.same_answer)).astype("int64")
    write_table(df.drop(columns=["prompt_ids", "sample_logprobs"]), out, "samples.parquet")
    groups = [(list(g["extracted"]), list(g["correct"]))
              for _, g in df.groupby("prompt_id", sort=False)]
    metrics = summarize(groups, [int(k) for k in e["ks"]], suite.same_answer)
    metrics["mean_response_tokens"] = float(df["response_ids"].map(len).mean())
    metrics["by_type"] = pass_by_type(df, by_id, [int(k) for k in e["ks"]])  # task metadata per item
    metrics["by_benchmark"] = pass_by_benchmark(df, [int(k) for k in e["ks"]])
    metrics["timeouts"] = judge.timeouts()
    write_json(metrics, Path(out) / "metrics.json")
    return metrics
