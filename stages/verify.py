"""Verify every sampled response with the task's verifier.

Adds ``reward``, ``correct``, ``extracted`` and ``reason`` to each row of ``responses.parquet``
and writes ``verified.parquet`` (positives and verified failures; the sft stage picks what its
objective needs). Malformed rows (no prompt id known to the task, missing response) are
dropped, counted and reported; above ``verify.max_bad_fraction`` the stage fails. Fewer than
``verify.min_correct`` correct responses fails the stage: SFT would have nothing to learn from.

The manifest counts responses, correct ones and prompts per task type (``by_type``, from each
item's ``task``/``game`` metadata) and, for suites that report them (SynLogic), the rows per type
that were loaded, skipped on purpose, or whose stored answer failed validation (``suite_stats``).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from stages.common import progress, read_table, write_table
from stages.report_types import item_type
from verifiers import build_suite


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    v = cfg["verify"]
    suite = build_suite(cfg["task"])
    items = {it.id: it for it in suite.items("train")}
    df = read_table(inputs["responses"], "responses.parquet")
    bad = ~df["prompt_id"].isin(items.keys()) | df["response"].isna()
    n_bad = int(bad.sum())
    if len(df) and n_bad / len(df) > float(v["max_bad_fraction"]):
        raise ValueError(f"{n_bad} of {len(df)} response rows are malformed (unknown prompt id or "
                         f"missing response), above verify.max_bad_fraction={v['max_bad_fraction']}")
    df = df[~bad].reset_index(drop=True)
    verdicts = [suite.score(items[pid], resp)
                for pid, resp in progress(list(zip(df["prompt_id"], df["response"])), desc="verify")]
    df["reward"] = [x.reward for x in verdicts]
    df["correct"] = [bool(x.correct) for x in verdicts]
    df["extracted"] = [x.extracted for x in verdicts]
    df["reason"] = [x.reason for x in verdicts]
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
                "by_type": counts_by_type(df, items)}
    if hasattr(suite, "stats"):
        manifest["suite_stats"] = suite.stats()
    return manifest


def counts_by_type(df, items: dict) -> dict:
    """``{type: {responses, correct, prompts}}`` for the verified rows."""
    types = df["prompt_id"].map(lambda pid: item_type(items[pid]))
    out = {}
    for t, g in df.groupby(types, sort=True):
        out[str(t)] = {"responses": len(g), "correct": int(g["correct"].sum()), "prompts": int(g["prompt_id"].nunique())}
    return out
