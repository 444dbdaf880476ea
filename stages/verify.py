"""Verify every sampled response with the task's verifier.

Adds ``reward``, ``correct``, ``extracted``, ``reason`` and ``timed_out`` to each row of
``responses.parquet`` and writes ``verified.parquet`` (positives and verified failures; the sft
stage picks what its objective needs, and never takes an answer that timed out as a failure).
Malformed rows (no prompt id known to the task, missing response) are dropped, counted and
reported; above ``verify.max_bad_fraction`` the stage fails. Fewer than ``verify.min_correct``
correct responses fails the stage: SFT would have nothing to learn from.

Judging runs on a pool of as many processes as the stage has CPUs (``resources.verify``;
``stages/judging.py``), results in input order and the same as one loop's, in resumable shards
of ``SHARD`` responses saved under ``work/``. math-verify gets ``verify.timeout_s`` per answer;
an answer that runs out of it is judged once more under ``verify.retry_timeout_s``. The
manifest counts those timeouts per suite (``timeouts``: first try, recovered by the retry,
still timed out) and says how many processes judged (``judge_workers``).

The manifest counts responses, correct ones and prompts per task type (``by_type``, from each
item's ``task``/``game`` metadata) and, for suites that report them (SynLogic), the rows per type
that were loaded, skipped on purpose, or whose stored answer failed validation (``suite_stats``).
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd

from stages.common import note, progress, read_table, write_shard, write_table
from stages.judging import Judge, bounds, stage_cpus
from stages.report_types import item_type
from verifiers import build_suite

log = logging.getLogger(__name__)
SHARD = 4096  # responses per resumable shard of verdicts
COLUMNS = ["reward", "correct", "extracted", "reason", "timed_out_first", "timed_out"]


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    v = cfg["verify"]
    first, retry = bounds(v, "verify")
    suite = build_suite(cfg["task"])
    items = {it.id: it for it in suite.items("train")}
    df = read_table(inputs["responses"], "responses.parquet")
    bad = ~df["prompt_id"].isin(items.keys()) | df["response"].isna()
    n_bad = int(bad.sum())
    if len(df) and n_bad / len(df) > float(v["max_bad_fraction"]):
        raise ValueError(f"{n_bad} of {len(df)} response rows are malformed (unknown prompt id or "
                         f"missing response), above verify.max_bad_fraction={v['max_bad_fraction']}")
    df = df[~bad].reset_index(drop=True)
    pairs = [(items[pid], resp) for pid, resp in zip(df["prompt_id"], df["response"])]
    with Judge(cfg["task"], stage_cpus(), first, retry, suite=suite) as judge:
        verdicts = judge_shards(judge, pairs, Path(work))
    df = pd.concat([df, verdicts], axis=1)
    # counted from the columns: shards read back from work/ count as well
    timeouts = judge.timeouts({"first_try": int(df["timed_out_first"].sum()),
                               "recovered": int((df["timed_out_first"] & ~df["timed_out"]).sum()),
                               "after_retry": int(df["timed_out"].sum())})
    if df["timed_out_first"].any():
        log.warning("verify: answers that ran out of time (judged wrong if still so after the "
                    "retry): %s", timeouts)
    df = df.drop(columns=["timed_out_first"])
    n_correct = int(df["correct"].sum())
    if n_correct < int(v["min_correct"]):
        top = Counter(df["reason"]).most_common(3)
        raise ValueError(f"only {n_correct} of {len(df)} responses verified correct "
                         f"(verify.min_correct={v['min_correct']}); most common reasons: {top}. "
                         "The behavior policy is too weak for this task, or the verifier and "
                         "the answer format disagree.")
    write_table(df, out, "verified.parquet")
    per_prompt = df.groupby("prompt_id")["correct"].any()
    manifest = {"responses": len(df), "malformed_rows": n_bad, "correct": n_correct,
                "accuracy": n_correct / max(1, len(df)),
                "prompts_with_a_correct_response": int(per_prompt.sum()),
                "reasons": dict(Counter(df["reason"]).most_common(10)),
                "by_type": counts_by_type(df, items), "timeouts": timeouts,
                "judge_workers": judge.workers}
    if hasattr(suite, "stats"):
        manifest["suite_stats"] = suite.stats()
    return manifest


def judge_shards(judge: Judge, pairs: list, work: Path) -> pd.DataFrame:
    """The verdict columns (``COLUMNS``) of every pair, judged in shards of ``SHARD`` pairs; a
    finished shard is saved under ``work`` and read back on a re-run instead of judged again."""
    parts = []
    starts = range(0, len(pairs), SHARD)
    done = [k for k in range(len(starts)) if (work / f"verdicts-{k:05d}.parquet").is_file()]
    if done:  # finished shards survive a crash or Ctrl-C
        note(f"resumed: {len(done)} of {len(starts)} shards of verdicts were done before")
    bar = progress(total=len(pairs), desc="verify", unit="resp")
    for k, start in enumerate(starts):
        path = work / f"verdicts-{k:05d}.parquet"
        chunk = pairs[start:start + SHARD]
        if path.is_file():
            parts.append(pd.read_parquet(path))
            bar.update(len(chunk))
            continue
        verdicts, first = judge.score(chunk, on_done=bar.update)
        part = pd.DataFrame({"reward": [x.reward for x in verdicts],
                             "correct": [bool(x.correct) for x in verdicts],
                             "extracted": [x.extracted for x in verdicts],
                             "reason": [x.reason for x in verdicts],
                             "timed_out_first": first,
                             "timed_out": [bool(x.timed_out) for x in verdicts]})
        write_shard(part, path)
        parts.append(part)
    bar.close()
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(COLUMNS, [float, bool, object, object, bool, bool])})
    return pd.concat(parts, ignore_index=True)


def counts_by_type(df, items: dict) -> dict:
    """``{type: {responses, correct, prompts}}`` for the verified rows."""
    types = df["prompt_id"].map(lambda pid: item_type(items[pid]))
    out = {}
    for t, g in df.groupby(types, sort=True):
        out[str(t)] = {"responses": len(g), "correct": int(g["correct"].sum()), "prompts": int(g["prompt_id"].nunique())}
    return out
