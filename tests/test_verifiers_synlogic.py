"""task=synlogic: SynLogic rows in the verl-style schema (verifiers/synlogic.py, synlogic_checks.py).

tests/data/synlogic_rows.jsonl holds one hand-written row per covered task type (puzzles built by
hand to satisfy each task's rules) and three rows of types without a checker (zebra_puzzle,
arc_agi: SynLogic corpus tasks outside its games/);
tests/data/synlogic_answers.json holds a correct and a near-miss answer per task.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pandas as pd
import pytest

from verifiers import build_suite
from verifiers.base import SPLITS, prompt_text
from verifiers.synlogic import SynLogicSuite, score_synlogic
from verifiers.synlogic_checks import CHECKS

DATA = Path(__file__).parent / "data"
ROWS = DATA / "synlogic_rows.jsonl"
ANSWERS = json.loads((DATA / "synlogic_answers.json").read_text())
ALL = {"train": None, "rl": 0, "eval": 0}
SKIP = ["zebra_puzzle", "arc_agi"]


@pytest.fixture(scope="module")
def items() -> dict:
    suite = SynLogicSuite(path=str(ROWS), sizes=ALL, skip_types=SKIP)
    return {it.metadata["task"]: it for it in suite.items("train")}


def test_every_covered_task_has_a_row(items):
    assert set(items) == set(CHECKS) == set(ANSWERS)


@pytest.mark.parametrize("task", sorted(ANSWERS))
def test_correct_scores_one_and_near_miss_zero(items, task):
    item = items[task]
    ok = score_synlogic(item, f"<think>work</think>\n<answer>{ANSWERS[task]['correct']}</answer>")
    assert (ok.reward, ok.correct, ok.reason) == (1.0, True, "correct"), ok
    bad = score_synlogic(item, f"<think>work</think><answer>{ANSWERS[task]['near_miss']}</answer>")
    assert (bad.reward, bad.correct) == (0.0, False) and bad.reason, bad


# rule-specific near misses for the grid puzzles, and lenient-but-valid forms
EXTRA = [
    ("futoshiki", "[[1 2 3 4,4 3 2 1,3 4 1 2,2 1 4 3]]", False, "breaks an inequality"),
    ("futoshiki", "[[1, 2, 3, 4], [2, 3, 4, 1], [3, 4, 1, 2], [4, 1, 2, 3]]", True, "correct"),
    ("futoshiki", "[[1 2 3 4,2 3 4 1,3 4 1 2]]", False, "expected 4 rows"),
    ("sudoku", "no code block, just ((1,2))", False, "expected 9 rows"),
    ("kukurasu", '[["1","X","X","1"],["X","1","X","X"],["X","X","1","Y"]]', False, '"1" or "X"'),
    ("skyscraper_puzzle", "```python\n[[1,2,3,4],[2,3,4,1],[3,4,1,2],[4,1,2,2]]\n```", False, "not 1..n"),
    ("star_placement_puzzle", "```python\n{'A': [(1, 1), (2, 2)]}\n```", False, "stars"),
    ("survo", "```python\n[[1,2,3,6],[4,5,6,15],[7,8,9,24]]\n```", False, "expected 4 rows"),
    ("object_counting", "\\boxed{five}", False, "not an integer"),
    ("object_counting", "5", True, "correct"),
    ("web_of_lies", "yes, no, yes", True, "correct"),
    ("web_of_lies", "The answer is **maybe**.", False, "no yes/no"),
    ("dyck_language", '"([]){<>}"', True, "correct"),
    ("cryptarithm", "The answer is: 12+34=46.", True, "correct"),
    ("cryptarithm", "I could not solve it", False, "no numeric equation"),
    ("time_sequence", "45 and 3", False, "no [duration, count]"),
]


@pytest.mark.parametrize("task,answer,correct,reason", EXTRA)
def test_specific_rules(items, task, answer, correct, reason):
    v = score_synlogic(items[task], f"<answer>{answer}</answer>")
    assert v.correct is correct and reason in v.reason, v


FORMAT_FAILURES = [
    ("", "no <answer>"),
    ("The answer is **yes, no, yes**.", "no <answer>"),
    ("<think>The answer is <answer>x</answer>", "unclosed <think>"),
    ("<answer>The answer is **yes", "unclosed <answer>"),
    ("<answer>\n</answer>", "empty"),
]


@pytest.mark.parametrize("completion,reason", FORMAT_FAILURES)
def test_format_failures(items, completion, reason):
    v = score_synlogic(items["web_of_lies"], completion)
    assert (v.reward, v.correct) == (0.0, False) and reason in v.reason


def test_first_answer_after_think_counts(items):
    item, right = items["object_counting"], ANSWERS["object_counting"]
    assert score_synlogic(item, f"<think><answer>\\boxed{{9}}</answer></think><answer>{right['correct']}</answer>").correct
    assert not score_synlogic(item, f"<answer>{right['near_miss']}</answer><answer>{right['correct']}</answer>").correct


@pytest.mark.parametrize("task", ["sudoku", "survo", "skyscraper_puzzle", "kukurasu", "star_placement_puzzle"])
def test_python_literals_are_never_executed(items, task, tmp_path):
    target = tmp_path / "pwned"
    for payload in [f"__import__('os').system('touch {target}')", f"open('{target}', 'w').write('x')",
                    f"[[1, 2], [3, __import__('os').system('touch {target}')]]",
                    f"{{'A': [(1, 1)], 'B': exec(\"open('{target}', 'w')\")}}"]:
        v = score_synlogic(items[task], f"<answer>```python\n{payload}\n```</answer>")
        assert not v.correct
    assert not target.exists()


def test_types_without_a_checker_fail_unless_listed_in_skip_types(caplog):
    with pytest.raises(ValueError, match=r"no checker for task types \{'zebra_puzzle': 2, 'arc_agi': 1\}.*skip_types"):
        SynLogicSuite(path=str(ROWS), sizes=ALL).items("train")
    with pytest.raises(ValueError, match="arc_agi"):  # every unknown type must be listed
        SynLogicSuite(path=str(ROWS), sizes=ALL, skip_types=["zebra_puzzle"]).items("train")
    suite = SynLogicSuite(path=str(ROWS), sizes=ALL, skip_types=SKIP)
    with caplog.at_level(logging.WARNING, logger="verifiers.synlogic"):
        items = suite.items("train")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "zebra_puzzle: 2" in warnings[0].getMessage() and "arc_agi: 1" in warnings[0].getMessage()
    assert dict(suite.skipped) == {"zebra_puzzle": 2, "arc_agi": 1}
    assert len(items) == len(CHECKS)  # none of the skipped rows became an item
    stats = suite.stats()
    assert stats["rows_by_type"] == {t: 1 for t in CHECKS} and stats["skipped_types"] == {"zebra_puzzle": 2, "arc_agi": 1}


def test_parquet_and_jsonl_give_the_same_items(tmp_path):
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
    pd.DataFrame(rows).to_parquet(tmp_path / "rows.parquet")
    from_parquet = SynLogicSuite(path=str(tmp_path / "rows.parquet"), sizes=ALL, skip_types=SKIP).items("train")
    from_jsonl = SynLogicSuite(path=str(ROWS), sizes=ALL, skip_types=SKIP).items("train")
    assert sorted(from_parquet, key=lambda i: i.id) == sorted(from_jsonl, key=lambda i: i.id)
    answers = {it.metadata["task"]: it for it in from_parquet}
    assert score_synlogic(answers["sudoku"], f"<answer>{ANSWERS['sudoku']['correct']}</answer>").correct


def test_splits_never_share_a_prompt(tmp_path):
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:3]))  # overlaps the pool
    suite = build_suite({"suite": "synlogic", "path": str(ROWS), "eval_path": str(tmp_path / "eval.jsonl"), "skip_types": SKIP,
                         "sizes": {"train": 5, "rl": None, "eval": None}, "seed": 1})
    seen: dict[str, str] = {}
    for split in SPLITS:
        for it in suite.items(split):
            assert seen.setdefault(prompt_text(it.prompt), split) == split
    assert len(suite.items("eval")) == 3 and len(suite.items("train")) == 5
    assert len(suite.items("rl")) == len(CHECKS) - 3 - 5


def test_task_filter_and_errors():
    suite = SynLogicSuite(path=str(ROWS), sizes=ALL, tasks=["val/sudoku", "survo"], skip_types=SKIP)
    assert sorted(it.metadata["task"] for it in suite.items("train")) == ["sudoku", "survo"]
    assert suite.stats()["filtered_types"] == {t: 1 for t in CHECKS if t not in ("sudoku", "survo")}
    with pytest.raises(ValueError, match="no verifier"):
        SynLogicSuite(path=str(ROWS), tasks=["zebra_puzzle"])
    with pytest.raises(ValueError, match="validate"):
        SynLogicSuite(path=str(ROWS), validate="sometimes")
    with pytest.raises(FileNotFoundError):
        SynLogicSuite(path="/nonexistent/synlogic").items("train")
    assert not os.path.exists("/nonexistent/synlogic")


def test_futoshiki_reads_givens_from_the_question_without_a_solution(items):
    from verifiers.synlogic_checks import futoshiki

    game = json.loads(items["futoshiki"].metadata["game_data_str"])
    del game["answer"]
    assert futoshiki(ANSWERS["futoshiki"]["correct"], game) == (True, "correct")
    assert futoshiki(ANSWERS["futoshiki"]["near_miss"], game)[0] is False
