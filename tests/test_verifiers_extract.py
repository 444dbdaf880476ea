"""Answer extraction helpers shared by the suites (verifiers/extract.py)."""
from __future__ import annotations

import time

import pytest

from verifiers.extract import answer_tag, final_boxed, final_region, last_boxed

ANSWER_CASES = [  # completion, which, expected text (None = no answer), reason fragment
    ("<answer>42</answer>", "last", "42", ""),
    ("<think>try <answer>1</answer></think> <answer> 42 </answer>", "last", "42", ""),
    ("<answer>1</answer> then <answer>2</answer>", "last", "2", ""),
    ("<answer>1</answer> then <answer>2</answer>", "first", "1", ""),
    ("<think>still thinking <answer>1</answer>", "last", None, "unclosed <think>"),
    ("no tags at all", "last", None, "no <answer>"),
    ("<answer>never closed", "last", None, "unclosed <answer>"),
    ("<answer>  </answer>", "last", None, "empty"),
    ("</think></think><answer>x</answer>", "first", "x", ""),
    ("<answer>a<answer>b</answer>", "last", "b", ""),
    (None, "last", None, "not str"),
    (b"<answer>1</answer>", "last", None, "not str"),
]


@pytest.mark.parametrize("completion,which,text,reason", ANSWER_CASES)
def test_answer_tag(completion, which, text, reason):
    got = answer_tag(completion, which=which)
    assert got.text == text
    assert reason in got.reason


def test_answer_too_long_is_rejected():
    got = answer_tag("<answer>" + "x" * 30_000 + "</answer>")
    assert got.text is None and "longer than" in got.reason


@pytest.mark.parametrize("text,expected", [
    ("so \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("\\boxed{1} and finally \\boxed{2}", "2"),
    ("\\fbox{7}", "7"),
    ("\\boxed{1} then \\boxed{{unbalanced", None),
    ("nothing", None),
    ("\\boxed{}", None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text).text == expected


def test_final_boxed_ignores_reasoning():
    assert final_boxed("<think>\\boxed{1}</think>\\boxed{2}").text == "2"
    assert final_boxed("<think>\\boxed{1}").text is None
    assert final_region("a</think>b").text == "b"


def test_extraction_is_linear_on_huge_inputs():
    huge = ["<answer>" * 200_000, "{" * 1_000_000, "</think>" * 100_000 + "<answer>1", "\\boxed{" * 100_000]
    for text in huge:
        t = time.perf_counter()
        answer_tag(text)
        final_boxed(text)
        assert time.perf_counter() - t < 0.5
