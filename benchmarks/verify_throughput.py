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
once on ``--workers`` processes; each time includes its start-up (math-verify workers, the
pool's processes). Prints responses/s of each, the ratio, the timeouts of each, and whether
every verdict is identical (exit status 1 if not).
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
    pairs = [(items[i % len(items)], REASONING + forms[(i // len(items)) % 3].format(a=items[i % len(items)].answer))
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


def timed(task: dict, pairs: list, workers: int) -> tuple[float, list, dict]:
    t = time.perf_counter()
    with Judge(task, workers, pool_min=0) as judge:
        verdicts, _ = judge.score(pairs)
    return time.perf_counter() - t, verdicts, judge.counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=["math", "synlogic"], default="math")
    ap.add_argument("--n", type=int, default=4000, help="responses to judge")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="pool processes (default: the CPUs)")
    args = ap.parse_args()
    task, pairs = (math_case if args.suite == "math" else synlogic_case)(args.n)
    loop_s, loop_v, loop_t = timed(task, pairs, 1)
    pool_s, pool_v, pool_t = timed(task, pairs, args.workers)
    same = sum(a == b for a, b in zip(loop_v, pool_v))
    print(f"| suite | responses | CPUs here | one loop | pool of {args.workers} | pool / loop | identical verdicts |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.suite} | {len(pairs)} | {os.cpu_count()} | {len(pairs) / loop_s:.0f} resp/s ({loop_s:.1f} s) | "
          f"{len(pairs) / pool_s:.0f} resp/s ({pool_s:.1f} s) | {loop_s / pool_s:.2f}x | {same} of {len(pairs)} |")
    print(f"timeouts: loop {loop_t}, pool {pool_t}; correct: {sum(v.correct for v in loop_v)} of {len(pairs)}")
    return 0 if same == len(pairs) else 1


if __name__ == "__main__":
    sys.exit(main())
