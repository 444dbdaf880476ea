"""The judging pool (stages/judging.py): the loop's verdicts in input order, timeouts retried under
the longer bound and counted, the bound reaching math-verify; the verify stage on top of it."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import verifiers
from stages import judging, verify
from stages.judging import Judge, bounds
from verifiers.base import Item, Verdict
from verifiers.mathbox import current_bound, mathbox, time_bound

DATA = Path(__file__).parent / "data"
MATH = {"suite": "math", "sizes": {"train": None, "rl": 0, "eval": 0},
        "train": [{"name": "builtin"}, {"name": "math500", "path": str(DATA / "math500_sample.jsonl")}]}


def math_pairs(n: int) -> list[tuple[Item, str]]:
    """Right answers in the gold form, right in a form math-verify must prove (``+ 0``), wrong,
    and none (items with whole-number answers)."""
    items = [it for it in verifiers.build_suite({**MATH, "warm": False}).items("train") if it.answer.isdigit()]
    forms = ["so \\boxed{{{a}}}", "\\boxed{{{a} + 0}}", "\\boxed{{{a} + 1}}", "no box: {a}"]
    return [(items[i % len(items)], forms[i % 4].format(a=items[i % len(items)].answer)) for i in range(n)]


TOY = {"suite": "toy", "seed": 0, "sizes": {"train": 40, "rl": 0, "eval": 0}, "pretrain_size": 0}


def test_the_pool_gives_the_loops_verdicts_in_input_order():
    items = verifiers.build_suite(TOY).items("train")
    pairs = [(it, f"A{int(it.answer) + i % 3}") for i, it in enumerate(items * 2)]  # right when i % 3 == 0
    with Judge(TOY, workers=1) as loop:
        want, _ = loop.score(pairs)
    done = []
    with Judge(TOY, workers=2, pool_min=0) as pool:
        got, first = pool.score(pairs, on_done=done.append)
        assert pool._pool is not None  # it really ran on processes
    assert got == want and sum(done) == len(pairs) and not any(first)
    assert [v.correct for v in got] == [i % 3 == 0 for i in range(len(pairs))]  # pair i's verdict at i
    assert pool.counts == {"first_try": 0, "recovered": 0, "after_retry": 0}


@pytest.mark.slow
def test_math_verify_in_the_pool_gives_the_loops_verdicts():
    pairs = math_pairs(48)
    with Judge(MATH, workers=1) as loop:
        want, _ = loop.score(pairs)
    with Judge(MATH, workers=2, pool_min=0) as pool:
        got, _ = pool.score(pairs)
    assert got == want and [v.correct for v in got[:4]] == [True, True, False, False]


class _SlowSuite:
    """A suite whose answer ``"s"`` takes s seconds to judge: it times out under a shorter bound."""
    name = "slow"

    def __init__(self, **kw):
        pass

    def items(self, split: str) -> list[Item]:
        return [Item("q", "", "1")]

    def score(self, item: Item, completion: str) -> Verdict:
        if current_bound() < float(completion):
            return Verdict(0.0, False, completion, "math-verify timed out", timed_out=True)
        return Verdict(1.0, True, completion, "correct")


def test_timeouts_are_judged_again_under_the_longer_bound_and_counted(monkeypatch):
    monkeypatch.setitem(verifiers.SUITES, "slow", _SlowSuite)
    it = Item("q", "", "1")
    pairs = [(it, s) for s in ("0.1", "2", "30", "0.5", "2")]
    with Judge({"suite": "slow"}, 1, timeout_s=1.0, retry_timeout_s=10.0) as judge:
        verdicts, first = judge.score(pairs)
    assert first == [False, True, True, False, True]
    assert [v.correct for v in verdicts] == [True, True, False, True, True]
    assert [v.timed_out for v in verdicts] == [False, False, True, False, False]
    assert judge.timeouts() == {"slow": {"first_try": 3, "recovered": 2, "after_retry": 1,
                                         "timeout_s": 1.0, "retry_timeout_s": 10.0}}
    with Judge({"suite": "slow"}, 1, timeout_s=1.0, retry_timeout_s=None) as judge:  # no retry
        assert [v.correct for v in judge.score(pairs)[0]] == [True, False, False, True, False]
    assert judge.counts == {"first_try": 3, "recovered": 0, "after_retry": 3}


def test_the_bound_reaches_math_verify_and_a_timeout_is_marked():
    slow = "\\boxed{\\int_0^1 x^{1000} e^{x} dx}"
    with time_bound(0.3):
        reply = mathbox().judge("1", "\\int_0^1 x^{1000} e^{x} dx")
        v = judging.judge_pairs(verifiers.build_suite(MATH), [(Item("q", "", "1"), slow)], current_bound())[0]
    assert reply["status"] == "timeout" and ("0.165 s of CPU" in reply["detail"] or "0.3 s" in reply["detail"]), reply
    assert v.timed_out and not v.correct and "timed out" in v.reason
    assert current_bound() == 0.9  # the context's bound is back to the default


@pytest.mark.parametrize("cfg,match", [({"timeout_s": 0}, "verify.timeout_s must be > 0"),
                                       ({"timeout_s": 2.0, "retry_timeout_s": 1.0}, "at least verify.timeout_s")])
def test_bad_bounds_are_refused(cfg, match):
    with pytest.raises(ValueError, match=match):
        bounds(cfg)
    assert bounds({}) == (0.9, 10.0) and bounds({"retry_timeout_s": None}) == (0.9, None)


def test_verify_counts_timeouts_keeps_a_timed_out_column_and_resumes_from_its_shards(tmp_path, monkeypatch):
    monkeypatch.setitem(verifiers.SUITES, "slow", _SlowSuite)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    responses = ["0.1", "2", "30", "0.5", "2"]
    df = pd.DataFrame({"prompt_id": "q", "sample_idx": range(5), "response": responses})
    (tmp_path / "in").mkdir()
    df.to_parquet(tmp_path / "in" / "responses.parquet")
    cfg = {"task": {"suite": "slow"}, "verify": {"min_correct": 1, "max_bad_fraction": 0.0, "timeout_s": 1.0,
                                                "retry_timeout_s": 5.0}}
    work = tmp_path / "work"
    work.mkdir()
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        runs.append(verify.run(cfg, {"responses": str(tmp_path / "in")}, tmp_path / name, work))
        if name == "a":  # the second run must read the finished shard, not judge again
            shard = pd.read_parquet(work / "verdicts-00000.parquet")
            shard.loc[0, "reason"] = "read back from the shard"
            shard.to_parquet(work / "verdicts-00000.parquet")
    for m in runs:  # the counts come from the shard's columns: the same when read back
        assert m["timeouts"] == {"slow": {"first_try": 3, "recovered": 2, "after_retry": 1, "timeout_s": 1.0,
                                          "retry_timeout_s": 5.0}}
        assert m["judge_workers"] == 1 and m["correct"] == 4 and json.dumps(m)
    out = pd.read_parquet(tmp_path / "b" / "verified.parquet")
    assert out["reason"][0] == "read back from the shard" and "timed_out_first" not in out
    assert out["timed_out"].tolist() == [False, False, True, False, False]
    assert out["correct"].tolist() == [True, True, False, True, True]


@pytest.mark.slow
def test_the_pool_runs_inside_a_ray_task():
    ray = pytest.importorskip("ray")
    pairs = math_pairs(16)
    with Judge(MATH, workers=1) as loop:
        want, _ = loop.score(pairs)

    @ray.remote(num_cpus=2)
    def judged_in_ray(task, pairs):
        with judging.Judge(task, workers=2, pool_min=0) as pool:
            return pool.score(pairs)[0], pool._pool is not None

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        got, pooled = ray.get(judged_in_ray.remote(MATH, pairs), timeout=300)
    finally:
        ray.shutdown()
    assert pooled and got == want
