"""SynLogic checkers for number-grid puzzles, checked against the puzzle's rules.

A valid solution other than the generator's counts as correct, as in SynLogic.

  sudoku, survo, skyscraper_puzzle, kukurasu, numbrix   a Python literal grid (tuple or list),
                    usually in a ```python block; read with ``ast.literal_eval`` only
  star_placement_puzzle   a dict ``{region: [(row, col), ...]}`` (1-based)
  futoshiki, calcudoko    "[[1 2 3,2 3 1,3 1 2]]" (or a Python list of lists)

Rules: latin squares (sudoku boxes, futoshiki inequalities and givens, calcudoko cages with
+ - * ÷ targets, no repeat inside a cage); skyscraper views; kukurasu weighted sums; star
placement (k stars per row, column and region, none touching); survo (givens kept, candidate
numbers used once each, row and column sums); numbrix (1..n² once each, givens kept,
consecutive numbers orthogonally adjacent).
Leniencies relative to SynLogic: a literal may come without its code block; numbrix cells may
be digit strings (SynLogic strips the quotes too).
"""
from __future__ import annotations

import json
import re
from collections import Counter

from verifiers.synlogic_parse import (bracket_rows, grid_literal, int_grid, latin_square, meta, outer_literal,
                                      result, str_grid)

_result, _meta = result, meta  # short local names; checkers use ``meta`` as a variable


def sudoku(answer: str, game: dict) -> tuple[bool, str]:
    given = _meta(game)["original_sudoku"]
    n = len(given)
    box = {4: (2, 2), 6: (2, 3), 9: (3, 3)}.get(n)
    if box is None:
        return False, f"unsupported sudoku size {n}"
    grid = int_grid(grid_literal(answer), n)
    if not latin_square(grid, n):
        return False, "a row or column repeats a digit"
    bh, bw = box
    for r0 in range(0, n, bh):
        for c0 in range(0, n, bw):
            if {grid[r][c] for r in range(r0, r0 + bh) for c in range(c0, c0 + bw)} != set(range(1, n + 1)):
                return False, "a box repeats a digit"
    for r in range(n):
        for c in range(n):
            g = given[r][c]
            if g not in (0, "0", "X", "x", None, "") and grid[r][c] != int(g):
                return False, "changes a given digit"
    return True, "correct"


def _futoshiki_givens(game: dict, n: int) -> list[list[int | None]]:
    """The prefilled values: from the generator's solution grid, else from the question's grid."""
    solution = game.get("answer")
    if isinstance(solution, str):
        try:
            solution = json.loads(solution)
        except ValueError:
            solution = None
    if isinstance(solution, list) and len(solution) == n:
        return solution
    lines = str(game.get("question", "")).splitlines()
    for i, line in enumerate(lines):  # the grid follows "Current puzzle:" / "当前题目："
        if "Current puzzle" in line or "当前题目" in line:
            rows = [ln.split() for ln in lines[i + 1:i + 1 + n]]
            if len(rows) == n and all(len(r) == n for r in rows):
                return [[int(x) if x.isdigit() else None for x in r] for r in rows]
    raise ValueError("cannot read the prefilled numbers of this futoshiki row")


def futoshiki(answer: str, game: dict) -> tuple[bool, str]:
    meta = _meta(game)
    n = int(meta["grid_size"])
    grid = bracket_rows(answer, n)
    if not latin_square(grid, n):
        return False, "a row or column is not 1..n"
    givens = _futoshiki_givens(game, n)
    for r, c in meta.get("prefilled_coords", []):
        if grid[r][c] != givens[r][c]:
            return False, "changes a prefilled number"
    for (r1, c1), (r2, c2), sign in meta.get("constraints", []):
        a, b = grid[r1][c1], grid[r2][c2]
        if (sign == ">" and not a > b) or (sign == "<" and not a < b):
            return False, "breaks an inequality"
    return True, "correct"


def kukurasu(answer: str, game: dict) -> tuple[bool, str]:
    meta = _meta(game)
    n, m = int(meta["n"]), int(meta["m"])
    raw = grid_literal(answer)
    if not isinstance(raw, (list, tuple)) or len(raw) != n:
        return False, f"expected {n} rows"
    cells = {"1": 1, 1: 1, "X": 0, "x": 0, "0": 0, 0: 0}
    grid = []
    for row in raw:
        if not isinstance(row, (list, tuple)) or len(row) != m:
            return False, f"expected rows of {m} cells"
        if any(type(c) not in (int, str) or c not in cells for c in row):
            return False, 'cells must be "1" or "X"'
        grid.append([cells[c] for c in row])
    rows = [sum(j + 1 for j in range(m) if grid[i][j]) for i in range(n)]
    cols = [sum(i + 1 for i in range(n) if grid[i][j]) for j in range(m)]
    return _result(rows == list(meta["row_sums"]) and cols == list(meta["col_sums"]), "wrong row or column sums")


def _visible(heights: list[int]) -> int:
    seen, top = 0, 0
    for h in heights:
        if h > top:
            seen, top = seen + 1, h
    return seen


def skyscraper_puzzle(answer: str, game: dict) -> tuple[bool, str]:
    meta = _meta(game)
    n = int(meta["n"])
    grid = int_grid(grid_literal(answer), n)
    if not latin_square(grid, n):
        return False, "a row or column is not 1..n"
    cols = [[grid[i][j] for i in range(n)] for j in range(n)]
    views = ([_visible(c) for c in cols], [_visible(c[::-1]) for c in cols],
             [_visible(r) for r in grid], [_visible(r[::-1]) for r in grid])
    want = tuple(list(meta[k]) for k in ("top", "bottom", "left", "right"))
    return _result(views == want, "wrong number of visible skyscrapers")


def star_placement_puzzle(answer: str, game: dict) -> tuple[bool, str]:
    meta = _meta(game)
    n, k, regions = int(meta["n"]), int(meta["k"]), meta["region_grid"]
    placed = outer_literal(answer, "{", "}")
    if not isinstance(placed, dict):
        return False, "expected a dict {region: [(row, col), ...]}"
    stars = set()
    for coords in placed.values():
        if not isinstance(coords, (list, tuple)):
            return False, "region stars must be a list of (row, col)"
        for rc in coords:
            if not (isinstance(rc, (list, tuple)) and len(rc) == 2 and all(type(x) is int for x in rc)):
                return False, "a star is not a (row, col) pair"
            r, c = rc[0] - 1, rc[1] - 1  # the answer is 1-indexed
            if not (0 <= r < n and 0 <= c < n):
                return False, "a star is off the grid"
            stars.add((r, c))
    rows, cols = Counter(r for r, _ in stars), Counter(c for _, c in stars)
    if any(rows[i] != k or cols[i] != k for i in range(n)):
        return False, f"a row or column does not have {k} stars"
    per_region = Counter(regions[r][c] for r, c in stars)
    if any(per_region[g] != k for g in {x for row in regions for x in row}):
        return False, f"a region does not have {k} stars"
    if any((r + dr, c + dc) in stars for r, c in stars for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc):
        return False, "two stars touch"
    return True, "correct"


def survo(answer: str, game: dict) -> tuple[bool, str]:
    meta = _meta(game)
    original = meta["original_matrix"]
    n = len(original)
    grid = int_grid(grid_literal(answer), n, len(original[0]))
    filled = []
    for i in range(n):
        for j in range(len(original[i])):
            if original[i][j] != 0:
                if grid[i][j] != original[i][j]:
                    return False, "changes a given number"
            else:
                filled.append(grid[i][j])
    if sorted(filled) != sorted(meta["candidate_numbers"]):
        return False, "does not use exactly the candidate numbers"
    m = len(original[0])
    rows_ok = all(sum(grid[i][:m - 1]) == grid[i][m - 1] for i in range(n - 1))
    cols_ok = all(sum(grid[i][j] for i in range(n - 1)) == grid[n - 1][j] for j in range(m - 1))
    return _result(rows_ok and cols_ok, "a row or column sum is wrong")


_CAGE_CELL = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def _cage_ok(values: list[int], target, op: str) -> bool:
    if op == "+":
        return sum(values) == target
    if op in ("*", "×", "x"):
        prod = 1
        for v in values:
            prod *= v
        return prod == target
    if len(values) != 2:
        return False
    a, b = values
    if op in ("-", "−"):
        return abs(a - b) == target
    return op in ("÷", "/") and (a == b * target or b == a * target)


def calcudoko(answer: str, game: dict) -> tuple[bool, str]:
    m = _meta(game)
    n = int(m.get("grid_size", 4))
    grid = bracket_rows(answer, n)
    if not latin_square(grid, n):
        return False, "a row or column is not 1..n"
    for region in m["regions"]:
        cells = [_CAGE_CELL.fullmatch(c.strip()) if isinstance(c, str) else None for c in region["cells"]]
        coords = [(int(c.group(1)) - 1, int(c.group(2)) - 1) if c else tuple(x - 1 for x in rc)
                  for c, rc in zip(cells, region["cells"])]
        if any(not (0 <= r < n and 0 <= c < n) for r, c in coords):
            raise ValueError("a cage cell is off the grid")
        values = [grid[r][c] for r, c in coords]
        if len(set(values)) != len(values):
            return False, "a cage repeats a number"
        if not _cage_ok(values, int(region["target"]), str(region["operator"]).strip()):
            return False, "a cage misses its target"
    return True, "correct"


def numbrix(answer: str, game: dict) -> tuple[bool, str]:
    given = _meta(game)["grid"]
    n = len(given)
    raw = str_grid(grid_literal(answer), n)
    grid = [[int(c) if isinstance(c, str) and c.isdigit() and len(c) < 6 else c for c in row] for row in raw]
    if any(type(c) is not int for row in grid for c in row):
        return False, "cells must be integers"
    where = {grid[i][j]: (i, j) for i in range(n) for j in range(n)}
    if sorted(where) != list(range(1, n * n + 1)) or len(where) != n * n:
        return False, f"does not hold 1..{n * n} once each"
    if any(given[i][j] not in ("X", "x", 0, "0", None, "") and int(given[i][j]) != grid[i][j]
           for i in range(n) for j in range(n)):
        return False, "changes a given number"
    for k in range(1, n * n):
        (r1, c1), (r2, c2) = where[k], where[k + 1]
        if abs(r1 - r2) + abs(c1 - c2) != 1:
            return False, f"{k} and {k + 1} are not adjacent"
    return True, "correct"
