"""Validate SynLogic rows before training on them: is the stored answer a solution of the puzzle?

For the task types whose checker applies the rules (``RULE_CHECKED``), the stored solution
(``metadata.solution``, ``complete_sudoku``, ``solved_grid``, ``filled_matrix``, ``ref_expr``,
``solutions[0]`` or the row's ``answer``; star placement's ``[[A(1,2) B(3,1)]]`` is read as a
dict of stars) is rendered in the answer format and checked like a
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
import re
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
        return _game_of_24_expression(str(sols[0])) if sols else None
    value: Any = next((meta[k] for k in _SOLUTION_KEYS if meta.get(k)), None)
    if value is None:
        value = game.get("answer")
    if value in (None, "", [], {}):
        return None
    if task == "star_placement_puzzle" and isinstance(value, str) and "{" not in value:
        stars: dict[str, list[tuple[int, int]]] = {}
        for region, r, c in re.findall(r"([A-Za-z]\w*)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)", value[:20_000]):
            stars.setdefault(region, []).append((int(r), int(c)))
        if not stars:
            return None
        value = stars
    if task == "futoshiki" and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if task in ("futoshiki", "calcudoko") and isinstance(value, list):  # the prompt's [[1 2 3,2 3 1,3 1 2]]
        return "[[" + ",".join(" ".join(str(x) for x in row) for row in value) + "]]"
    if task == "norinori" and isinstance(value, list):  # the prompt's [[(r, c), (r, c)], ...]
        return "[" + ", ".join(f"[({a[0]}, {a[1]}), ({b[0]}, {b[1]})]" for a, b in value) + "]"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _game_of_24_expression(solution: str) -> str | None:
    """SynLogic stores ``nums: (8, 5, 2, 2), ops: ('+', '*', '-')``: applied left to right."""
    found = re.fullmatch(r"\s*nums:\s*\(([^)]*)\),\s*ops:\s*\(([^)]*)\)\s*", solution)
    if not found:
        return solution
    nums = re.findall(r"\d+", found.group(1))
    ops = re.findall(r"[-+*/]", found.group(2))
    if len(ops) != len(nums) - 1:
        return None
    expr = nums[0] if nums else ""
    for op, num in zip(ops, nums[1:]):
        expr = f"({expr} {op} {num})"
    return expr


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
