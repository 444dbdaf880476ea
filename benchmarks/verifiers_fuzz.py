"""Verifier robustness and speed (issue 4): adversarial completions against every suite.

    python benchmarks/verifiers_fuzz.py                  # 10,000 per suite, markdown
    python benchmarks/verifiers_fuzz.py --n 500 --suites logic math

For each suite (toy, logic, synlogic on tests/data rows: one row of each of its 33 task types,
math) it scores ``--n`` adversarial
completions (empty, huge, random unicode, unclosed/nested/many ``<answer>`` and ``<think>`` tags,
deeply nested braces and LaTeX, power towers, regex killers, Python payloads, near misses of the
real answer) twice, and a set of real answers (correct and near-miss, well formatted). It checks
that no call raises, that every call takes under ``--limit`` seconds, that the second pass
gives the same verdict (reward, correct, extracted) and that every real answer is judged right,
and reports items/s for both sets (timing covers ``score`` only, not building the inputs), and
for synlogic the worst and mean latency per task type.
Exit status 1 if a check fails.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from verifiers import build_suite  # noqa: E402
from verifiers.base import Item  # noqa: E402

DATA = ROOT / "tests" / "data"
PAYLOAD_FILE = "/tmp/verifiers_fuzz_pwned"
PAYLOADS = [
    f"__import__('os').system('touch {PAYLOAD_FILE}')",
    f"open('{PAYLOAD_FILE}', 'w').write('x')",
    "().__class__.__bases__[0].__subclasses__()",
    "[[1, 2], [3, __import__('os').getcwd()]]",
    "{'A': [(1, 1)], 'B': exec('x=1')}",
    "lambda: 0",
]
SKIP_TYPES = ["zebra_puzzle", "arc_agi"]  # rows of tests/data/synlogic_rows.jsonl without a checker
TAGS = ["<answer>", "</answer>", "<think>", "</think>", "\\boxed{", "}", "{", "```python\n", "```", "[[", "]]", "**"]


def _unicode(rng: random.Random, n: int) -> str:
    pools = [(0x20, 0x7E), (0xA0, 0x2FF), (0x370, 0x3FF), (0x4E00, 0x4FFF), (0x1F300, 0x1F64F),
             (0xD800, 0xDFFF), (0x0, 0x1F), (0x200B, 0x200F)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(pools)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def _wrap(rng: random.Random, inner: str) -> str:
    """Put ``inner`` where a verifier looks for an answer, in one of many (mal)formed ways."""
    style = rng.randrange(8)
    if style == 0:
        return f"<answer>{inner}</answer>"
    if style == 1:
        return f"<think>{_unicode(rng, 20)}</think><answer>{inner}</answer>"
    if style == 2:
        return f"\\boxed{{{inner}}}"
    if style == 3:
        return f"<answer>\\boxed{{{inner}}}</answer>"
    if style == 4:
        return f"<answer>```python\n{inner}\n```</answer>"
    if style == 5:
        return f"<answer>{inner}"  # unclosed
    if style == 6:
        return f"<think>{inner}"  # unclosed think
    return inner


def adversarial(rng: random.Random, answer: str) -> str:
    """One adversarial completion; ``answer`` is the item's true answer (for near misses)."""
    kind = rng.randrange(18)
    if kind == 0:
        return rng.choice(["", " ", "\n", "\x00", "<answer></answer>", "\\boxed{}", "</think>", "<think>"])
    if kind == 1:  # huge
        unit = rng.choice(["a", "9", "<answer>", "{", "\\frac{", "</think>", "( ", "1 + ", "yes, "])
        return unit * rng.randint(50_000, 400_000) + _wrap(rng, answer)
    if kind == 2:
        return _unicode(rng, rng.randint(1, 3000))
    if kind == 3:
        return _wrap(rng, _unicode(rng, rng.randint(1, 300)))
    if kind == 4:  # many answer tags
        return "".join(f"<answer>{rng.choice([answer, _unicode(rng, 5)])}</answer>" for _ in range(rng.randint(2, 3000)))
    if kind == 5:  # nested / interleaved tags
        return "".join(rng.choice(TAGS + [answer, _unicode(rng, 3)]) for _ in range(rng.randint(1, 400)))
    if kind == 6:  # deep braces
        d = rng.randint(10, 20_000)
        return _wrap(rng, "{" * d + answer + "}" * rng.choice([d, d - 1, 0]))
    if kind == 7:  # deep LaTeX
        d = rng.randint(5, 3000)
        macro = rng.choice(["\\frac{1}{", "\\sqrt{", "\\left(", "\\boxed{", "x^{", "\\text{"])
        return _wrap(rng, macro * d + "2" + "}" * d)
    if kind == 8:  # power towers and big numbers
        return _wrap(rng, rng.choice(["9^{9^{9^{9}}}", "9**9**9**9", "10^{10^{100}}", "2^3^4^5^6", "99999999!",
                                      "(10!)!", "9" * 20_000, "1e999999", "10^{123456789}", "\\infty^{\\infty}"]))
    if kind == 9:  # regex killers
        n = rng.choice([300, 3000, 9000])  # below and above the 20,000-character answer cap
        return _wrap(rng, rng.choice(["1" * 3 * n + "=", "1 +" * n, "1+" * n + "=", "1=" * n, "(" * n,
                                      "[" * n + "]" * (n - 1), "**" * n, "a" * 5 * n + "!", ",\n" * n,
                                      " " * 10 * n, "yes, " * n, "```" * n, "[[1 2," * n, "{'A': [(1, 1)]," * n]))
    if kind == 10:  # code payloads where literals are parsed
        return _wrap(rng, rng.choice(PAYLOADS))
    if kind == 11:  # near miss: one character changed
        if answer:
            i = rng.randrange(len(answer))
            return _wrap(rng, answer[:i] + rng.choice("0123456789XabQ_ ,") + answer[i + 1:])
        return _wrap(rng, "x")
    if kind == 12:  # truncated answer
        return _wrap(rng, answer[: rng.randint(0, max(0, len(answer) - 1))])
    if kind == 13:  # answer buried in noise / wrong place
        return _unicode(rng, 200) + answer + _unicode(rng, 200)
    if kind == 14:  # many thinks
        return "</think>" * rng.randint(1, 5000) + _wrap(rng, answer)
    if kind == 15:  # random LaTeX soup
        toks = ["\\frac", "{", "}", "^", "_", "\\sqrt", "x", "2", "\\pi", "+", "-", "\\cdot", "(", ")", "\\infty",
                "\\int", "\\sum", "\\left", "\\right", "=", "\\le", ",", "\\{", "\\}", "!", "e", "\\log"]
        return _wrap(rng, "".join(rng.choice(toks) for _ in range(rng.randint(1, 120))))
    if kind == 16:  # binary-ish junk
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 500))).decode("latin-1")
    return _wrap(rng, answer) * rng.randint(1, 3)  # the answer, possibly repeated


# -- suites under test -----------------------------------------------------------------------
def near_miss(answer: str) -> str:
    """A wrong answer in the right format: the first digit bumped, else the last word replaced."""
    for i, c in enumerate(answer):
        if c.isdigit():
            return answer[:i] + str((int(c) + 1) % 10) + answer[i + 1:]
    words = answer.split(" ")
    return " ".join(words[:-1] + ["zzz"])


def suite_and_items(name: str):
    """A small instance of each suite, its items, and real answers as (item, text, is_correct)."""
    if name == "toy":
        suite = build_suite({"suite": "toy", "sizes": {"train": 50, "rl": 0, "eval": 0}, "pretrain_size": 0})
        items = suite.items("train")
        real = [(it, f"{it.prompt}A{it.answer}", True) for it in items]
        real += [(it, f"A{int(it.answer) + 1}", False) for it in items]
        return suite, items, real
    if name == "logic":
        suite = build_suite({"suite": "logic", "seed": 7, "sizes": {"train": 0, "rl": 0, "eval": 52}})
        items = suite.items("eval")
        real = [(it, f"<think>...</think><answer>{it.answer}</answer>", True) for it in items]
        real += [(it, f"<answer>{near_miss(it.answer)}</answer>", False) for it in items]
        return suite, items, real
    if name == "synlogic":
        suite = build_suite({"suite": "synlogic", "path": str(DATA / "synlogic_rows.jsonl"), "skip_types": SKIP_TYPES,
                             "sizes": {"train": None, "rl": 0, "eval": 0}})
        items = suite.items("train")
        answers = json.loads((DATA / "synlogic_answers.json").read_text())
        real = [(it, f"<think>...</think><answer>{answers[it.metadata['task']][k]}</answer>", k == "correct")
                for it in items for k in ("correct", "near_miss")]
        return suite, items, real
    if name == "math":
        suite = build_suite({"suite": "math", "sizes": {"train": 0, "rl": 0, "eval": None},
                             "eval": [{"name": "builtin"}, {"name": "math500", "path": str(DATA / "math500_sample.jsonl")}]})
        items = suite.items("eval")
        real = [(it, f"<think>...</think>The answer is $\\boxed{{{it.answer}}}$.", True) for it in items]
        real += [(it, f"\\boxed{{{it.answer}+1}}", False) for it in items]
        return suite, items, real
    raise ValueError(name)


def run_suite(name: str, n: int, seed: int = 0, limit: float = 1.0) -> dict:
    suite, items, real = suite_and_items(name)
    rng = random.Random(seed)
    cases: list[tuple[Item, str]] = []
    for i in range(n):
        it = items[i % len(items)]
        cases.append((it, adversarial(rng, it.answer)))
    if name == "math":  # start the math-verify workers before timing (about a second, once)
        suite.score(items[0], "\\boxed{0}")
    for it in items:  # synlogic's operation checker uses the same workers
        if it.metadata.get("task") == "operation":
            suite.score(it, "<answer>\\boxed{x+1}</answer>")
    by_type: dict[str, list[float]] = {}
    errors, slow, unstable, errors_unstable = [], [], 0, []
    first, t_all, t_max = [], 0.0, 0.0
    for it, text in cases:
        t = time.perf_counter()
        try:
            v = suite.score(it, text)
        except Exception as e:  # must never happen
            errors.append(f"{type(e).__name__}: {e}")
            v = None
        dt = time.perf_counter() - t
        t_all += dt
        t_max = max(t_max, dt)
        by_type.setdefault(str(it.metadata.get("task") or it.metadata.get("game") or name), []).append(dt)
        if dt > limit:
            slow.append((round(dt, 3), text[:80]))
        first.append(None if v is None else (v.reward, v.correct, v.extracted))
    for (it, text), before in zip(cases, first):
        try:
            v = suite.score(it, text)
            if (v.reward, v.correct, v.extracted) != before:
                unstable += 1
                errors_unstable.append(f"unstable: {text[:80]!r}: {before} then {v}")
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
    t = time.perf_counter()
    real_ok = sum(suite.score(it, text).correct == want for it, text, want in real)
    t_real = time.perf_counter() - t
    return {"suite": name, "n": n, "errors": len(errors), "slow": len(slow), "unstable": unstable,
            "by_type": {t: (len(v), max(v), 1000 * sum(v) / len(v)) for t, v in sorted(by_type.items())},
            "max_s": round(t_max, 3),
            "fuzz_items_per_s": round(n / t_all, 1), "real_n": len(real),
            "real_items_per_s": round(len(real) / t_real, 1), "real_ok": real_ok,
            "examples": errors[:3] + [str(s) for s in slow[:3]] + errors_unstable[:3]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--suites", nargs="+", default=["toy", "logic", "synlogic", "math"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=float, default=1.0)
    args = ap.parse_args(argv)
    Path(PAYLOAD_FILE).unlink(missing_ok=True)
    rows = [run_suite(s, args.n, args.seed, args.limit) for s in args.suites]
    print("| suite | fuzz n | errors | calls > limit | max s | unstable | fuzz items/s | real n | real judged right | real items/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['suite']} | {r['n']} | {r['errors']} | {r['slow']} | {r['max_s']} | {r['unstable']} | {r['fuzz_items_per_s']} "
              f"| {r['real_n']} | {r['real_ok']} | {r['real_items_per_s']} |")
        for e in r["examples"]:
            print(f"  - {e}")
    for r in rows:
        if r["suite"] == "synlogic":
            print("\n| synlogic task type | fuzz calls | max s | mean ms |\n|---|---|---|---|")
            for t, (k, worst, mean) in r["by_type"].items():
                print(f"| {t} | {k} | {worst:.3f} | {mean:.2f} |")
    pwned = Path(PAYLOAD_FILE).exists()
    if pwned:
        print(f"PAYLOAD EXECUTED: {PAYLOAD_FILE} exists")
    bad = pwned or any(r["errors"] or r["slow"] or r["unstable"] or r["real_ok"] != r["real_n"] for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
