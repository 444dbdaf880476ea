"""Verification throughput: the judging pool against one loop, in the same run.

    python benchmarks/verify_throughput.py                        # math, 4000 responses, all CPUs
    python benchmarks/verify_throughput.py --n 20000 --workers 8
    python benchmarks/verify_throughput.py --suite synlogic --n 4000

Builds ``--n`` responses of the size of real ones (a few thousand characters of reasoning, then
the answer) over a suite's items: for math the built-in items and the MATH-500 sample in
``tests/data``, answered in their gold form (the normalised fast path), in a form math-verify
must prove equal (``x + 0``) and wrong (``x + 1``); for synlogic the hand-made rows of
``tests/data`` with their right answers and near misses. Then judges them twice with
``stages.judging.Judge``: once in this process (``workers=1``, the verify stage's old loop) and
once on ``--workers`` processes, each time in two passes over all ``--n``: the first includes
the start-up (the math-verify workers, the pool's processes: paid once per stage), the second
runs warm (what a stage of 200k responses sees). Prints responses/s of the warm passes, the
ratio, the first passes' seconds, the timeouts, and whether every verdict of the warm passes is
identical (exit status 1 if not).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stages.judging import Judge  # noqa: E402
from verifiers import build_suite  # noqa: E402

DATA = ROOT / "tests" / "data"
REASONING = "Let me work through this carefully, one step at a time, checking each step. " * 40


def math_case(n: int) -> tuple[dict, list]:
    task = {"suite": "math", "sizes": {"train": None, "rl": 0, "eval": 0},
            "train": [{"name": "builtin"}, {"name": "math500", "path": str(DATA / "math500_sample.jsonl")}]}
    items = build_suite({**task, "warm": False}).items("train")
    forms = ["\\boxed{{{a}}}", "\\boxed{{{a} + 0}}", "\\boxed{{{a} + 1}}"]
    pairs = [(items[(i // 3) % len(items)], REASONING + forms[i % 3].format(a=items[(i // 3) % len(items)].answer))
             for i in range(n)]
    return task, pairs


def synlogic_case(n: int) -> tuple[dict, list]:
    task = {"suite": "synlogic", "path": str(DATA / "synlogic_rows.jsonl"), "skip_types": ["zebra_puzzle", "arc_agi"],
            "sizes": {"train": None, "rl": 0, "eval": 0}}
    items = build_suite(task).items("train")
    answers = json.loads((DATA / "synlogic_answers.json").read_text())
    cases = [(it, answers[it.metadata["task"]][k]) for it in items for k in ("correct", "near_miss")]
    pairs = [(cases[i % len(cases)][0], f"<think>{REASONING}</think><answer>{cases[i % len(cases)][1]}</answer>")
             for i in range(n)]
    return task, pairs


def timed(task: dict, pairs: list, workers: int) -> tuple[float, float, list, dict]:
    """(seconds of a first pass over all pairs, start-up included: the math-verify workers, the
    pool's processes; seconds of a second pass on the warm judge; its verdicts; timeouts)."""
    t = time.perf_counter()
    with Judge(task, workers, pool_min=0) as judge:
        judge.score(pairs)
        warm = time.perf_counter()
        verdicts, _ = judge.score(pairs)
        done = time.perf_counter()
    return warm - t, done - warm, verdicts, judge.counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=["math", "synlogic"], default="math")
    ap.add_argument("--n", type=int, default=4000, help="responses to judge")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="pool processes (default: the CPUs)")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    task, pairs = (math_case if args.suite == "math" else synlogic_case)(args.n)
    loop_cold, loop_s, loop_v, loop_t = timed(task, pairs, 1)
    pool_cold, pool_s, pool_v, pool_t = timed(task, pairs, args.workers)
    same = sum(a == b for a, b in zip(loop_v, pool_v))
    n = len(pairs)
    print(f"| suite | responses | CPUs here | one loop | pool of {args.workers} | pool / loop | "
          "first pass (start-up included): loop, pool, ratio | identical verdicts |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.suite} | {n} | {os.cpu_count()} | {n / loop_s:.0f} resp/s ({loop_s:.1f} s) | "
          f"{n / pool_s:.0f} resp/s ({pool_s:.1f} s) | {loop_s / pool_s:.2f}x | "
          f"{loop_cold:.1f} s, {pool_cold:.1f} s, {loop_cold / pool_cold:.2f}x | {same} of {n} |")
    print(f"timeouts (both passes): loop {loop_t}, pool {pool_t}; correct: {sum(v.correct for v in loop_v)} "
          f"of {n}; load average at the start: {load:.1f}")
    return 0 if same == len(pairs) else 1


if __name__ == "__main__":
    sys.exit(main())
