"""Each SynLogic checker on its own rules (verifiers/synlogic_{text,arith,grids,place}.py).

Two tables: answers to the hand-built row of each type in tests/data/synlogic_rows.jsonl
(format variants that must pass, wrong answers and answers breaking one rule each), and
small hand-built puzzles for rules the shared row cannot break alone. Then malformed and
adversarial text against every type: never correct, never raised, never executed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from verifiers.synlogic import SynLogicSuite, score_synlogic
from verifiers.synlogic_checks import CHECKS

ROWS = Path(__file__).parent / "data" / "synlogic_rows.jsonl"
ALL = {"train": None, "rl": 0, "eval": 0}


@pytest.fixture(scope="module")
def items() -> dict:
    suite = SynLogicSuite(path=str(ROWS), sizes=ALL, skip_types=["zebra_puzzle", "arc_agi"])
    return {it.metadata["task"]: it for it in suite.items("train")}


ROW_CASES = [  # (task, answer, correct, part of the reason)
    ("arrow_maze", '[["2","→","↗"],["↓","2","→"]]', True, "correct"),
    ("arrow_maze", '[[2, "→", "↗"], ["↓", 2, "→"]]', True, "correct"),
    ("arrow_maze", '[["2","X","↗"],["↓","2","→"]]', False, "not filled with an arrow"),
    ("arrow_maze", '[["3","→","↗"],["↓","2","→"]]', False, "changes a number"),
    ("arrow_maze", '[["2","→","↗"],["↓","2","↑"]]', False, "arrow runs"),
    ("arrow_maze", '[["2","→","↗"],["↓","2"]]', False, "expected rows of 3"),
    ("buggy_tables", "42.50", True, "correct"),
    ("buggy_tables", "The answer is 42.5", False, "two decimals"),
    ("buggy_tables", "-42.50", False, "wrong value"),
    ("calcudoko", "[[1, 2, 3], [2, 3, 1], [3, 1, 2]]", True, "correct"),
    ("calcudoko", "[[1 2 3，2 3 1，3 1 2]]", True, "correct"),
    ("calcudoko", "[[1 2 3,2 3 1]]", False, "expected 3 rows"),
    ("calcudoko", "[[1 2 3,1 2 3,3 1 2]]", False, "not 1..n"),
    ("campsite", '```python\n[["T","C","X"],["X","X","X"],["X","C","T"]]\n```', True, "correct"),
    ("campsite", '[["X","C","T"],["X","X","X"],["X","C","T"]]', False, "trees moved"),
    ("campsite", '[["T","C","X"],["X","X","X"],["C","X","T"]]', False, "in a column"),
    ("cipher", '[["HELLO WORLD"]]', True, "correct"),
    ("cipher", '```python\n[["hello world"]]\n```', False, "wrong text"),
    ("cipher", '[["HELLO WORLD", "X"]]', False, "wrong text"),
    ("cipher", "HELLO WORLD", False, "literal"),
    ("dyck_language_errors", "\\boxed{5}", True, "correct"),
    ("dyck_language_errors", "5.", True, "correct"),
    ("dyck_language_errors", "valid", False, "not valid"),
    ("dyck_language_errors", "the fifth", False, "not a position"),
    ("dyck_language_reasoning_errors", "10, 3", True, "correct"),
    ("dyck_language_reasoning_errors", '"3,10"', True, "correct"),
    ("dyck_language_reasoning_errors", "3,10,11", False, "wrong set"),
    ("dyck_language_reasoning_errors", "no errors", False, "there are wrong thoughts"),
    ("dyck_language_reasoning_errors", "unclear, maybe 3", False, "unsure"),
    ("game_of_24", "(7 - 8 / 8) * 4", True, "correct"),
    ("game_of_24", "```python\n7 * 8 - 8 * 4\n```", True, "correct"),  # another solution counts
    ("game_of_24", "(7 - 8 / 8) * 4 + 0", False, "exactly once"),
    ("game_of_24", "(7 - 8 / 8) ** 4", False, "not allowed"),
    ("game_of_24", "8 / (8 - 8) * 4 + 7", False, "division by zero"),
    ("game_of_24", "(7 - 8 / 8) * 4 = 24", False, "not an arithmetic expression"),
    ("goods_exchange", "(('Bob','blue pen'),('Alice','red book'))", True, "correct"),
    ("goods_exchange", "```python\n[['alice', 'red book'], ['bob', 'BLUE PEN']]\n```", True, "correct"),
    ("goods_exchange", "(('Alice','red book'),)", False, "wrong owner"),
    ("goods_exchange", "(('Alice','red book'),('Alice','blue pen'))", False, "listed twice"),
    ("math_path", "[[2+4*3-4=10]]", True, "correct"),
    ("math_path", "so [[2 + 4 * 3 - 4 = 10]] holds", True, "correct"),
    ("math_path", "[[2 + 4 + 3 - 4 = 10]]", False, "operators differ"),
    ("math_path", "[[12 + 4 * 3 - 4 = 10]]", False, "digits differ"),
    ("math_path", "2 + 4 * 3 - 4 = 10", False, "no [["),
    ("math_path", "[[2 + 4 * 3 - 4 == 10]]", False, "one '='"),
    ("minesweeper", "[(2, 2), (0, 1)]", True, "correct"),
    ("minesweeper", "[[0, 1], [2, 2]]", True, "correct"),
    ("minesweeper", "Mines at (0,1) and (2,2).", True, "correct"),
    ("minesweeper", "[(0, 1), (2, 2), (1, 1)]", False, "wrong set"),
    ("minesweeper", "none", False, "no (row, col)"),
    ("norinori", "[[(1, 1), (1, 2)], [(1, 4), (2, 4)], [(3, 1), (4, 1)], [(4, 3), (4, 4)]]", True, "correct"),
    ("norinori", "[[(1,1),(1,2)], [(1,2),(2,2)], [(3,1),(4,1)], [(4,3),(4,4)]]", False, "overlap"),
    ("norinori", "[[(1,1),(2,2)], [(1,4),(2,4)], [(3,1),(4,1)], [(4,3),(4,4)]]", False, "not two adjacent"),
    ("norinori", "[[(1,1),(1,2)], [(1,4),(2,4)], [(3,1),(4,1)], [(4,4),(4,5)]]", False, "off the grid"),
    ("norinori", "[[(1,1),(1,2)], [(1,4),(2,4)], [(3,1),(4,1)]]", False, "exactly 2"),  # SynLogic lets this pass
    ("number_wall", '[["1", "A", "2"], ["A", "A", "X"], ["1", "A", "A"]]', True, "correct"),
    ("number_wall", '[[1, "A", 2], ["A", "A", 1], [1, "A", "A"]]', False, "adds a clue"),
    ("number_wall", '[[1, "A", 2], ["A", "A", "B"], [1, "A", "A"]]', False, "cells must be"),
    ("numbrix", '[["1","2","3"],["6","5","4"],["7","8","9"]]', True, "correct"),
    ("numbrix", "[[1, 2, 3], [6, 5, 4], [7, 8, 8]]", False, "once each"),
    ("numbrix", "[[9, 8, 7], [4, 5, 6], [3, 2, 1]]", False, "changes a given"),
    ("numbrix", "[[1, 2, 3], [6, 5, 4], [7, 8, 'x']]", False, "integers"),
    ("object_properties", "7", True, "correct"),
    ("object_properties", "\\boxed{ 7 }", True, "correct"),
    ("object_properties", "\\boxed{seven}", False, "not an integer"),
    ("operation", "\\boxed{12.0}", True, "correct"),
    ("operation", "\\boxed{24/2}", True, "correct"),
    ("space_reasoning", "\\boxed{RED BOX}", True, "correct"),
    ("space_reasoning", "red box", True, "correct"),
    ("space_reasoning", "\\boxed{box}", False, "wrong item"),
    ("space_reasoning_tree", "\\boxed{node3，node7}", True, "correct"),
    ("space_reasoning_tree", "\\boxed{node3, node7, node9}", False, "wrong set"),
    ("word_sorting_mistake", "\\boxed{04}", True, "correct"),
    ("word_sorting_mistake", "\\boxed{3}", False, "wrong thought"),
    ("wordscapes", '[["c","a","t"],["o"," "," "],["w"," "," "]]', True, "correct"),
    ("wordscapes", '[["C","A","T"],["O","A","0"],["W","0","0"]]', False, "empty cell"),
    ("wordscapes", '[["C","AT","0"],["O","0","0"],["W","0","0"]]', False, "not one letter"),
    ("wordscapes", '[["C","A","T"],["O","0","0"],["WW","0","0"]]', False, "not one letter"),
    ("wordscapes", '[["C","A","T"],["A","0","0"],["W","0","0"]]', False, "down word"),
]


@pytest.mark.parametrize("task,answer,correct,reason", ROW_CASES)
def test_answers_to_the_hand_built_rows(items, task, answer, correct, reason):
    v = score_synlogic(items[task], f"<think>…</think><answer>{answer}</answer>")
    assert (v.correct, v.reward) == (correct, float(correct)) and reason in v.reason, v


def game(**meta) -> dict:
    answer = meta.pop("answer", "")
    return {"question": "q", "answer": answer, "metadata": meta}


RULE_CASES = [  # (task, game, answer, correct, part of the reason): one rule broken each
    ("arrow_maze", game(maze=[["1", "X", "X"]]), '[["1","→","←"]]', False, "on no run"),
    ("campsite", game(grid=[["T", "X"], ["X", "T"]], row_constraints=[1, 1], col_constraints=[1, 1]),
     '[["T","C"],["C","T"]]', False, "touch"),
    ("campsite", game(grid=[["T", "X", "X"]], row_constraints=[1], col_constraints=[0, 0, 1]),
     '[["T","X","C"]]', False, "pair up"),
    ("calcudoko", game(grid_size=2, regions=[{"cells": ["(1,1)", "(2,2)"], "target": 2, "operator": "+"}]),
     "[[1 2,2 1]]", False, "repeats"),
    ("calcudoko", game(grid_size=2, regions=[{"cells": ["(1,1)", "(1,2)"], "target": 2, "operator": "÷"},
                                             {"cells": ["(2,1)", "(2,2)"], "target": 1, "operator": "-"}]),
     "[[1 2,2 1]]", True, "correct"),
    ("dyck_language_errors", game(is_valid=True, first_error_pos=None), "-1", True, "correct"),
    ("dyck_language_errors", game(is_valid=True, first_error_pos=None), "valid", True, "correct"),
    ("dyck_language_errors", game(is_valid=True, first_error_pos=None), "3", False, "wrong position"),
    ("dyck_language_reasoning_errors", game(error_indices=[]), '""', True, "correct"),
    ("dyck_language_reasoning_errors", game(error_indices=[]), "no errors", True, "correct"),
    ("dyck_language_reasoning_errors", game(error_indices=[]), "3", False, "wrong set"),
    ("norinori", game(region_grid=[["X", "A"], ["B", "B"]]), "[[(2,1),(2,2)]]", False, "shaded cell"),
    ("number_wall", game(grid=[[1, "X"], ["X", 1]]), '[[1,"A"],["A",1]]', False, "diagonally"),
    ("number_wall", game(grid=[["X", "X"], ["X", "X"]]), '[["A","A"],["A","A"]]', False, "2x2"),
    ("number_wall", game(grid=[[2, "X"], ["X", "X"]]), '[[2,"X"],["A","A"]]', True, "correct"),
    ("number_wall", game(grid=[[3, "X"], ["X", "X"]]), '[[3,"X"],["A","A"]]', False, "equal to its size"),
    ("word_sorting_mistake", game(answer="No"), "\\boxed{no}", True, "correct"),
    ("word_sorting_mistake", game(answer="No"), "\\boxed{4}", False, "wrong thought"),
    ("game_of_24", game(numbers=[3, 3, 8, 8], operators=["+", "-", "*", "/"], result=24), "8 / (3 - 8 / 3)", True,
     "correct"),  # exact fractions: 8 / (1/3) is 24, where floats give 23.999…
]


@pytest.mark.parametrize("task,game_data,answer,correct,reason", RULE_CASES)
def test_one_rule_at_a_time(task, game_data, answer, correct, reason):
    got, why = CHECKS[task](answer, game_data)
    assert got is correct and reason in why, why


def test_an_empty_answer_is_right_only_where_no_error_is_the_answer(items):
    from verifiers.base import Item

    row = items["dyck_language_reasoning_errors"]
    assert score_synlogic(row, "<answer></answer>").reason == "there are wrong thoughts"
    meta = {**row.metadata, "game_data_str": json.dumps(game(error_indices=[]))}
    assert score_synlogic(Item("x", "p", "", meta), "<think>ok</think><answer> </answer>").correct
    assert not score_synlogic(items["object_properties"], "<answer></answer>").correct


ADVERSARIAL = ["", "[[", "]]", "{", "```python\n```", "\\boxed{}", "[" * 5000 + "]" * 4999, "9" * 30_000,
               "((" * 2000 + "1" + "))" * 2000, "[[1 2,3]]", "[(1,", "None", "True", "𝟙𝟚𝟛 ١٢٣", "\x00\x01",
               "1e308 * 1e308", "10**10**10", "[[" + "1 " * 5000 + "]]", "(" * 200 + "7" + ")" * 200]


@pytest.mark.parametrize("task", sorted(CHECKS))
def test_malformed_and_adversarial_text_is_wrong_and_never_raises(items, task, tmp_path):
    target = tmp_path / "pwned"
    payloads = [f"__import__('os').system('touch {target}')", f"[[open('{target}', 'w')]]",
                f"```python\n(lambda: open('{target}', 'w'))()\n```", f"[[2 + 4 * __import__('os').getpid() - 4 = 10]]"]
    for text in ADVERSARIAL + payloads:
        v = score_synlogic(items[task], f"<answer>{text}</answer>")
        assert v.correct is False and v.reward == 0.0 and v.reason, (task, text[:40], v)
    assert not target.exists()
