"""Validate SynLogic rows before training on them: is the stored answer a solution of the puzzle?

For the task types whose checker applies the rules (``RULE_CHECKED``), the stored solution
(``metadata.solution``, ``complete_sudoku``, ``solved_grid``, ``filled_matrix``, ``ref_expr``,
``solutions[0]`` or the row's ``answer``) is rendered in the answer format and checked like a
model's answer. A futoshiki row whose stored answer fails is also searched for any solution
(backtracking over the latin square, the givens and the inequalities), which tells an
unsolvable puzzle from a wrong stored answer: SynLogic's futoshiki generator draws its
inequality signs independently of its grid, so both happen.

``validate_row`` returns one of ``ok``, ``broken_answer`` (no solution stored or the stored one
breaks the rules, the puzzle is solvable or not known to be unsolvable), ``unsolvable`` (no
solution exists), ``unchecked`` (a type compared with a stored answer, or no stored solution).
"""
from __future__ import annotations

import json
from typing import Any

from verifiers.synlogic_checks import CHECKS, RULE_CHECKED

STATUSES = ("ok", "broken_answer", "unsolvable", "unchecked")
_SOLUTION_KEYS = ("solution", "complete_sudoku", "solved_grid", "filled_matrix")
MAX_SEARCH_NODES = 200_000


def reference_answer(task: str, game: dict) -> str | None:
    """The row's stored solution written as an answer to ``task``, or None if it has none."""
    meta = game.get("metadata") or {}
    if task == "math_path" and meta.get("ref_expr"):
        return f"[[{meta['ref_expr']}]]"
    if task == "game_of_24":
        sols = meta.get("solutions") or []
        return str(sols[0]) if sols else None
    value: Any = next((meta[k] for k in _SOLUTION_KEYS if meta.get(k)), None)
    if value is None:
        value = game.get("answer")
    if value in (None, "", [], {}):
        return None
    if task == "futoshiki" and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    return value if isinstance(value, str) else repr(value)


def validate_row(task: str, game: dict) -> str:
    if task not in RULE_CHECKED:
        return "unchecked"
    ref = reference_answer(task, game)
    ok = False
    if ref is not None:
        try:
            ok = CHECKS[task](ref, game)[0]
        except (ValueError, TypeError, KeyError, IndexError):
            ok = False
    if ok:
        return "ok"
    if task == "futoshiki" and futoshiki_solvable(game) is False:
        return "unsolvable"
    return "broken_answer" if ref is not None else "unchecked"


def futoshiki_solvable(game: dict) -> bool | None:
    """Whether the futoshiki row has a solution (backtracking); None if the search is too large."""
    from verifiers.synlogic_grids import _futoshiki_givens

    meta = game["metadata"]
    n = int(meta["grid_size"])
    grid = [[0] * n for _ in range(n)]
    try:
        givens = _futoshiki_givens(game, n)
        for r, c in meta.get("prefilled_coords", []):
            grid[r][c] = int(givens[r][c])
    except (ValueError, TypeError, IndexError):
        return None
    signs = [((r1, c1), (r2, c2), s) for (r1, c1), (r2, c2), s in meta.get("constraints", [])]
    budget = [MAX_SEARCH_NODES]
    found = _search(grid, n, signs, 0, budget)
    return True if found else (None if budget[0] < 0 else False)


def _fits(grid: list[list[int]], signs: list, r: int, c: int) -> bool:
    for (r1, c1), (r2, c2), s in signs:
        if (r, c) in ((r1, c1), (r2, c2)):
            a, b = grid[r1][c1], grid[r2][c2]
            if a and b and not ((s == ">" and a > b) or (s == "<" and a < b)):
                return False
    return True


def _search(grid: list[list[int]], n: int, signs: list, pos: int, budget: list[int]) -> bool:
    if pos == n * n:
        return True
    budget[0] -= 1
    if budget[0] < 0:
        return False
    r, c = divmod(pos, n)
    if grid[r][c]:
        v = grid[r][c]
        unique = grid[r].count(v) == 1 and sum(grid[i][c] == v for i in range(n)) == 1
        return unique and _fits(grid, signs, r, c) and _search(grid, n, signs, pos + 1, budget)
    used = set(grid[r]) | {grid[i][c] for i in range(n)}
    for v in range(1, n + 1):
        if v not in used:
            grid[r][c] = v
            if _fits(grid, signs, r, c) and _search(grid, n, signs, pos + 1, budget):
                return True
    grid[r][c] = 0
    return False
