"""task=math: math-verify equivalence, dataset loaders, thread safety (verifiers/math_suite.py)."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from verifiers import build_suite
from verifiers.base import SPLITS, Item, prompt_text
from verifiers.math_suite import gold_answer, load_source, score_math, too_large

DATA = Path(__file__).parent / "data"


def item(answer: str) -> Item:
    return Item(id="t", prompt="", answer=answer, metadata={"source": "test"})


CASES = [  # gold, completion, correct
    ("\\frac{1}{2}", "so \\boxed{\\frac{1}{2}}", True),
    ("\\frac{1}{2}", "\\boxed{0.5}", True),
    ("\\frac{1}{2}", "\\boxed{\\dfrac{1}{2}}", True),
    ("\\frac{1}{2}", "\\boxed{2/4}", True),
    ("\\frac{1}{2}", "\\boxed{0.51}", False),
    ("26000", "$\\boxed{26{,}000}$", True),
    ("26000", "\\boxed{26001}", False),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{(3, \\pi/2)}", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{(3, \\pi)}", False),
    ("5\\sqrt{2}", "\\boxed{\\sqrt{50}}", True),
    ("x^2+2x+1", "\\boxed{(x+1)^2}", True),
    ("x^2+2x+1", "\\boxed{x^2+2x}", False),
    ("(3, \\infty)", "\\boxed{(3,\\infty)}", True),
    ("9\\pi", "\\boxed{9 \\pi}", True),
    ("720", "\\boxed{720^\\circ}", True),
    ("42", "<think>maybe \\boxed{41}</think> final: \\boxed{42}", True),
    ("42", "<think>\\boxed{42}</think> final: \\boxed{41}", False),
]


@pytest.mark.parametrize("gold,completion,correct", CASES)
def test_equivalence_table(gold, completion, correct):
    v = score_math(item(gold), completion)
    assert v.correct is correct and v.reward == float(correct), v
    assert v.reason


FORMAT_FAILURES = [
    ("the answer is 42", "no \\boxed{}"),
    ("\\boxed{}", "empty"),
    ("\\boxed{42", "unbalanced"),
    ("<think>\\boxed{42}", "unclosed <think>"),
    ("\\boxed{" + "1+" * 300 + "1}", "longer than"),
    ("\\boxed{" + "(" * 20 + "42" + ")" * 20 + "}", "nested deeper"),
    ("\\boxed{9^{9^{9}}}", "too large"),
]


@pytest.mark.parametrize("completion,reason", FORMAT_FAILURES)
def test_format_failures(completion, reason):
    v = score_math(item("42"), completion)
    assert (v.reward, v.correct) == (0.0, False) and reason in v.reason, v


def test_infinity_is_never_a_finite_answer():
    """math-verify 0.9.0 sometimes calls \\infty^{\\infty} equal to 45 (sympy simplify); guarded."""
    for gold in ["45", "\\frac{8}{21}", "9\\pi", "\\sqrt{2}", "0.75"] * 3:
        for pred in ["\\infty^{\\infty}", "-\\infty^{\\infty}", "\\infty - \\infty"]:
            assert not score_math(item(gold), f"\\boxed{{{pred}}}").correct
    assert score_math(item("\\infty"), "\\boxed{\\infty}").correct


def test_too_large_spares_ordinary_powers():
    assert not any(map(too_large, ["x^2+y^2", "e^{x^2}", "2^{2023}", "10^{-3}", "2^{10}\\cdot 3^{5}"]))
    assert all(map(too_large, ["9^{9^9}", "2^3^4", "9**9**9", "10^{123456}", "100000!", "(10!)!"]))


def test_slow_answers_are_cut_off_within_a_second():
    for pathological in ["\\int_0^1 x^{1000} e^{x} dx", "\\sum_{k=1}^{10^{4}} k^{k}"]:
        t = time.perf_counter()
        v = score_math(item("1"), f"\\boxed{{{pathological}}}")
        assert time.perf_counter() - t < 1.0 and not v.correct


def test_safe_in_worker_threads():
    """math-verify's own timeouts (signal.alarm) fail off the main thread; ours must not."""
    results: list = []
    t = threading.Thread(target=lambda: results.append(score_math(item("\\frac{1}{2}"), "\\boxed{0.5}")))
    t.start()
    t.join(30)
    assert results and results[0].correct, results
    golds = ["\\frac{1}{2}", "3", "x^2+2x+1", "\\sqrt{2}"] * 4
    preds = ["\\boxed{0.5}", "\\boxed{3.0}", "\\boxed{(x+1)^2}", "\\boxed{2^{1/2}}"] * 4
    with ThreadPoolExecutor(4) as pool:  # verl calls compute_score from a thread pool
        verdicts = list(pool.map(lambda gp: score_math(item(gp[0]), gp[1]), zip(golds, preds)))
    assert all(v.correct for v in verdicts), [v for v in verdicts if not v.correct]


def test_builtin_suite_splits_are_disjoint():
    suite = build_suite({"suite": "math", "sizes": {"train": 8, "rl": 8, "eval": 8}})
    seen: dict[str, str] = {}
    for split in SPLITS:
        items = suite.items(split)
        assert len(items) == 8
        for it in items:
            assert seen.setdefault(prompt_text(it.prompt), split) == split
            assert "\\boxed{}" in it.prompt[0]["content"]
            assert suite.score(it, f"\\boxed{{{it.answer}}}").correct


def test_loaders_with_default_and_configured_fields(tmp_path):
    math500 = load_source({"name": "math500", "path": str(DATA / "math500_sample.jsonl")})
    assert len(math500) == 6 and math500[0].id.startswith("math-math500-test/precalculus/807.json")
    olympiad = load_source({"name": "olympiadbench", "path": str(DATA / "olympiadbench_sample.jsonl")})
    assert [it.answer for it in olympiad] == ["15", "2, 3", "1"]
    aime = load_source({"name": "aime2024", "path": str(DATA / "aime_sample.jsonl")})
    assert [it.answer for it in aime] == ["1011", "420"]
    rows = [json.loads(line) for line in (DATA / "aime_sample.jsonl").read_text().splitlines()]
    pd.DataFrame([{"q": r["Problem"], "gold": r["Answer"]} for r in rows]).to_parquet(tmp_path / "x.parquet")
    custom = load_source({"name": "mine", "path": str(tmp_path / "x.parquet"), "problem_field": "q",
                          "answer_field": "gold", "limit": 1})
    assert len(custom) == 1 and custom[0].answer == "1011"
    with pytest.raises(ValueError, match="problem_field"):
        load_source({"name": "mine", "path": str(tmp_path / "x.parquet")})
    assert gold_answer("$\\boxed{\\frac12}$") == "\\frac12"


def test_eval_sources_and_shared_file_splits():
    path = str(DATA / "math500_sample.jsonl")
    suite = build_suite({"suite": "math", "sizes": {"train": 3, "rl": None, "eval": 2},
                         "train": [{"name": "math500", "path": path}], "rl": [{"name": "math500", "path": path}],
                         "eval": [{"name": "math500", "path": path}]})
    sizes = {s: len(suite.items(s)) for s in SPLITS}
    assert sizes == {"train": 3, "rl": 1, "eval": 2}
    keys = [prompt_text(it.prompt) for s in SPLITS for it in suite.items(s)]
    assert len(keys) == len(set(keys))
    with pytest.raises(ValueError, match="needs a path"):
        build_suite({"suite": "math", "eval": [{"name": "math500"}]})
