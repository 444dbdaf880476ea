"""task=logic: reasoning-gym games (verifiers/logic.py)."""
from __future__ import annotations

import dataclasses
import os
import time

import pytest

from verifiers import build_suite
from verifiers.base import SPLITS, Item, prompt_text
from verifiers.logic import GAMES, LogicSuite, puzzle, score_logic

SMALL = {"train": 13, "rl": 13, "eval": 13}  # one item per game and split


@pytest.fixture(scope="module")
def suite() -> LogicSuite:
    return build_suite({"suite": "logic", "seed": 3, "sizes": SMALL})


def test_every_game_in_every_split_and_no_shared_prompt(suite):
    seen: dict[str, str] = {}
    for split in SPLITS:
        items = suite.items(split)
        assert len(items) == SMALL[split]
        assert {it.metadata["game"] for it in items} == set(GAMES)
        for it in items:
            key = prompt_text(it.prompt)
            assert seen.setdefault(key, split) == split, f"prompt shared by {seen[key]} and {split}"
            assert "<answer>" in it.prompt[-1]["content"]


def test_same_seed_same_items_and_eval_ignores_train_size():
    a = LogicSuite(seed=5, sizes={"train": 4, "rl": 2, "eval": 4}, games={"maze": {}, "survo": {}})
    b = LogicSuite(seed=5, sizes={"train": 9, "rl": 0, "eval": 4}, games={"maze": {}, "survo": {}})
    assert [it.id for it in a.items("eval")] == [it.id for it in b.items("eval")]
    assert {it.id for it in a.items("train")} < {it.id for it in b.items("train")}


def test_weights_and_config_validation():
    s = LogicSuite(sizes={"train": 6, "rl": 0, "eval": 0},
                   games={"maze": {"weight": 2}, "survo": {"weight": 1}, "sudoku": {"weight": 0}})
    games = [it.metadata["game"] for it in s.items("train")]
    assert games.count("maze") == 4 and games.count("survo") == 2
    with pytest.raises(ValueError, match="unknown config keys"):
        LogicSuite(games={"maze": {"config": {"nonsense": 1}}})
    with pytest.raises(ValueError, match="unknown reasoning-gym game"):
        LogicSuite(games={"not_a_game": {}})


def _corruptions(answer: str) -> list[str]:
    out = [answer + " extra", answer[:-1], "0", answer.upper(), answer.lower(), "\n".join(answer.splitlines()[::-1])]
    if len(answer) > 2:
        out.append(answer[1] + answer[0] + answer[2:])
    for i, c in enumerate(answer):
        if c.isdigit():
            out.append(answer[:i] + str((int(c) + 1) % 10) + answer[i + 1:])
            break
    return [c for c in out if c.strip()]


@pytest.mark.parametrize("game", sorted(GAMES))
def test_verdict_equals_reasoning_gym_on_fresh_seeds(game):
    """Correct iff reasoning-gym's own score_answer == 1.0, for oracle and corrupted answers."""
    fresh = LogicSuite(seed=1000 + len(game), sizes={"train": 0, "rl": 0, "eval": 3}, games={game: {}})
    compared = 0
    for item in fresh.items("eval"):
        entry, dataset = puzzle(item)
        for answer in [item.answer, *_corruptions(item.answer)]:
            ours = score_logic(item, f"<think>hmm</think><answer>{answer}</answer>")
            theirs = dataset.score_answer(answer.strip(), entry) == 1.0
            if game == "puzzle24" and theirs and not ours.correct:
                # stricter on purpose: reasoning-gym never checks that the numbers are the puzzle's
                assert sorted(map(int, __import__("re").findall(r"\d+", answer))) != sorted(entry["metadata"]["numbers"])
                continue
            assert ours.correct == theirs, (game, answer, ours)
            assert ours.reward == float(theirs)
            compared += 1
        assert score_logic(item, f"<answer>{item.answer}</answer>").reason == "correct"
    assert compared >= 6


FORMAT_FAILURES = [
    ("", "no <answer>"),
    ("the answer is 8", "no <answer>"),
    ("<think>long thought <answer>8</answer>", "unclosed <think>"),
    ("<answer>8", "unclosed <answer>"),
    ("<answer></answer>", "empty"),
]


@pytest.mark.parametrize("completion,reason", FORMAT_FAILURES)
def test_format_failures_score_zero_with_a_reason(suite, completion, reason):
    v = suite.score(suite.items("eval")[0], completion)
    assert (v.reward, v.correct) == (0.0, False) and reason in v.reason


def test_partial_credit_is_binarised(suite):
    item = next(it for it in suite.items("eval") if it.metadata["game"] == "countdown")
    entry, dataset = puzzle(item)
    assert 0 < dataset.score_answer("1+1", entry) < 1  # reasoning-gym gives partial credit
    v = suite.score(item, "<answer>1+1</answer>")
    assert (v.reward, v.correct) == (0.0, False)


def test_mismatched_item_is_reported(suite):
    item = suite.items("eval")[0]
    moved = dataclasses.replace(item, metadata={**item.metadata, "index": item.metadata["index"] + 1})
    v = suite.score(moved, f"<answer>{item.answer}</answer>")
    assert not v.correct and "does not match" in v.reason


@pytest.mark.parametrize("game", ["n_queens", "countdown", "puzzle24"])
def test_answers_are_never_executed(suite, game, tmp_path):
    """reasoning-gym eval()s n_queens answers and sympy-parses countdown/puzzle24 ones; we don't."""
    item = next(it for it in suite.items("eval") if it.metadata["game"] == game)
    target = tmp_path / "pwned"
    for payload in [f"__import__('os').system('touch {target}')", f"open('{target}', 'w')",
                    "9**9**9**9**9", "(" * 500 + "1" + ")" * 500]:
        t = time.perf_counter()
        v = suite.score(item, f"<answer>{payload}</answer>")
        assert time.perf_counter() - t < 1.0
        assert not v.correct
    assert not os.path.exists(target)


def test_score_needs_only_the_item(suite):
    """A copy of the item (e.g. rebuilt by the verl reward in another process) scores the same."""
    item = suite.items("rl")[0]
    copy = Item(id="", prompt="", answer=item.answer, metadata=dict(item.metadata))
    assert score_logic(copy, f"<answer>{item.answer}</answer>").correct
