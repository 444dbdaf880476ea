"""The native checker of every SynLogic task type, by name (written from the task rules, not
SynLogic's code; see each family's module for answer formats, rules and leniencies).

  verifiers/synlogic_text.py    question-answer tasks (compared with the stored answer)
  verifiers/synlogic_arith.py   arithmetic tasks (equations parsed, never executed)
  verifiers/synlogic_grids.py   number-grid puzzles (checked against the rules)
  verifiers/synlogic_place.py   placement puzzles (checked against the rules)

Each checker takes the text inside ``<answer>…</answer>`` and the row's game data (the parsed
``extra_info.game_data_str``: ``{question, answer, difficulty, metadata}``) and returns
``(correct, reason)``; it may raise ``ValueError`` on unreadable input (the suite scores 0).
``RULE_CHECKED`` names the types whose checker applies the puzzle's rules rather than comparing
with a stored answer (SynLogic does the same for these); ``EMPTY_ANSWER_OK`` the types whose
correct answer can be empty (dyck_language_reasoning_errors: "no wrong thought").
"""
from __future__ import annotations

from verifiers.synlogic_arith import cryptarithm, game_of_24, last_equation, math_path, operation, safe_value
from verifiers.synlogic_grids import (calcudoko, futoshiki, kukurasu, numbrix, skyscraper_puzzle, star_placement_puzzle,
                                      sudoku, survo)
from verifiers.synlogic_parse import Check
from verifiers.synlogic_place import arrow_maze, campsite, minesweeper, norinori, number_wall, wordscapes
from verifiers.synlogic_text import (boolean_expressions, buggy_tables, cipher, dyck_language, dyck_language_errors,
                                     dyck_language_reasoning_errors, goods_exchange, object_counting,
                                     object_properties, space_reasoning, space_reasoning_tree, time_sequence,
                                     web_of_lies, word_sorting, word_sorting_mistake)

CHECKS: dict[str, Check] = {
    "arrow_maze": arrow_maze,
    "boolean_expressions": boolean_expressions,
    "buggy_tables": buggy_tables,
    "calcudoko": calcudoko,
    "campsite": campsite,
    "cipher": cipher,
    "cryptarithm": cryptarithm,
    "dyck_language": dyck_language,
    "dyck_language_errors": dyck_language_errors,
    "dyck_language_reasoning_errors": dyck_language_reasoning_errors,
    "futoshiki": futoshiki,
    "game_of_24": game_of_24,
    "goods_exchange": goods_exchange,
    "kukurasu": kukurasu,
    "math_path": math_path,
    "minesweeper": minesweeper,
    "norinori": norinori,
    "number_wall": number_wall,
    "numbrix": numbrix,
    "object_counting": object_counting,
    "object_properties": object_properties,
    "operation": operation,
    "skyscraper_puzzle": skyscraper_puzzle,
    "space_reasoning": space_reasoning,
    "space_reasoning_tree": space_reasoning_tree,
    "star_placement_puzzle": star_placement_puzzle,
    "sudoku": sudoku,
    "survo": survo,
    "time_sequence": time_sequence,
    "web_of_lies": web_of_lies,
    "word_sorting": word_sorting,
    "word_sorting_mistake": word_sorting_mistake,
    "wordscapes": wordscapes,
}

RULE_CHECKED = frozenset({"arrow_maze", "calcudoko", "campsite", "futoshiki", "game_of_24", "kukurasu", "math_path",
                          "norinori", "number_wall", "numbrix", "skyscraper_puzzle", "star_placement_puzzle", "sudoku",
                          "survo", "wordscapes"})
EMPTY_ANSWER_OK = frozenset({"dyck_language_reasoning_errors"})

__all__ = ["CHECKS", "EMPTY_ANSWER_OK", "RULE_CHECKED", "Check", "last_equation", "safe_value", *CHECKS]
