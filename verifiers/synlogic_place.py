"""SynLogic checkers for placement puzzles, checked against the puzzle's rules.

A valid solution other than the generator's counts as correct, as in SynLogic. Answers are
Python literals (read with ``ast.literal_eval`` only), usually in a ```python block:

  arrow_maze    the grid with every "X" replaced by an arrow (↑ ↓ ← → ↖ ↗ ↘ ↙): numbers and
                given arrows kept; every arrow lies on a straight run of that arrow leaving a
                number; each number equals the total length of the runs leaving it
  campsite      the grid of "T" (trees, unchanged), "C" (tents) and "X": row/column tent counts,
                no two tents touching (diagonals too), tents and trees matched one-to-one by
                orthogonal adjacency
  minesweeper   a list of (row, col) mines, compared as a set with the stored mines (as SynLogic)
  norinori      a list of dominoes [[(r, c), (r, c)], ...] (1-based): no overlap, no two dominoes
                orthogonally adjacent, every shaded "X" cell covered, exactly 2 covered cells in
                every region
  number_wall   the grid with "A" walls: clue numbers kept (no new ones), no 2×2 wall block, every
                island holds exactly one number equal to its size, no two islands touch diagonally
  wordscapes    the letter grid: "0" cells empty, "X" cells one letter each, every across (down)
                word inside a row (column) run of letters

Deviations from SynLogic, stricter where SynLogic has a bug: norinori regions with no covered
cell fail (SynLogic only checks regions that some domino touches); number_wall answers may not
invent clue numbers; wordscapes words must lie inside one run of letters (SynLogic joins a
row's letters across empty cells). Leniencies: the literal may come without its code block;
arrow_maze numbers may be ints; minesweeper pairs may be written without an enclosing list.
"""
from __future__ import annotations

import re
from collections import deque

from verifiers.synlogic_parse import grid_literal, meta, outer_literal, result, str_grid

ARROWS = {"↑": (-1, 0), "↓": (1, 0), "←": (0, -1), "→": (0, 1),
          "↖": (-1, -1), "↗": (-1, 1), "↘": (1, 1), "↙": (1, -1)}
_PAIR = re.compile(r"[(\[]\s*(\d{1,4})\s*,\s*(\d{1,4})\s*[)\]]")
_N4 = ((0, 1), (1, 0), (0, -1), (-1, 0))


def _cell(value) -> str:
    return str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else "?"


def arrow_maze(answer: str, game: dict) -> tuple[bool, str]:
    maze = meta(game)["maze"]
    n, m = len(maze), len(maze[0])
    grid = [[_cell(c) for c in row] for row in str_grid(grid_literal(answer), n, m)]
    for i in range(n):
        for j in range(m):
            q, a = str(maze[i][j]), grid[i][j]
            if q != "X" and a != q:
                return False, "changes a number or a given arrow"
            if q == "X" and a not in ARROWS:
                return False, "a blank is not filled with an arrow"
    covered = set()
    for i in range(n):
        for j in range(m):
            if grid[i][j].isdigit():
                total = 0
                for arrow, (di, dj) in ARROWS.items():
                    r, c = i + di, j + dj
                    while 0 <= r < n and 0 <= c < m and grid[r][c] == arrow:
                        covered.add((r, c))
                        total, r, c = total + 1, r + di, c + dj
                if total != int(grid[i][j]):
                    return False, "a number does not equal the length of its arrow runs"
    stray = any(grid[i][j] in ARROWS and (i, j) not in covered for i in range(n) for j in range(m))
    return result(not stray, "an arrow is on no run from a number")


def _matching(tents: list, trees: set) -> bool:
    """A perfect tent-tree matching over orthogonal adjacency (Kuhn's augmenting paths)."""
    owner: dict = {}

    def augment(tent, seen) -> bool:
        for di, dj in _N4:
            tree = (tent[0] + di, tent[1] + dj)
            if tree in trees and tree not in seen:
                seen.add(tree)
                if tree not in owner or augment(owner[tree], seen):
                    owner[tree] = tent
                    return True
        return False

    return len(tents) == len(trees) and all(augment(t, set()) for t in tents)


def campsite(answer: str, game: dict) -> tuple[bool, str]:
    mt = meta(game)
    given = mt["grid"]
    n, m = len(given), len(given[0])
    grid = [[_cell(c) for c in row] for row in str_grid(grid_literal(answer), n, m)]
    if any((given[i][j] == "T") != (grid[i][j] == "T") for i in range(n) for j in range(m)):
        return False, "trees moved"
    tents = [(i, j) for i in range(n) for j in range(m) if grid[i][j] == "C"]
    if [sum(c == "C" for c in row) for row in grid] != list(mt["row_constraints"]):
        return False, "wrong number of tents in a row"
    if [sum(grid[i][j] == "C" for i in range(n)) for j in range(m)] != list(mt["col_constraints"]):
        return False, "wrong number of tents in a column"
    spots = set(tents)
    if any((i + di, j + dj) in spots for i, j in tents for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj):
        return False, "two tents touch"
    trees = {(i, j) for i in range(n) for j in range(m) if grid[i][j] == "T"}
    return result(_matching(tents, trees), "tents and trees do not pair up")


def _pairs(answer: str) -> list[tuple[int, int]]:
    try:
        value = outer_literal(answer, "[", "]")
        if isinstance(value, (list, tuple)) and all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(type(x) is int for x in p) for p in value):
            return [tuple(p) for p in value]
    except ValueError:
        pass
    return [(int(a), int(b)) for a, b in _PAIR.findall(answer[:20_000])]


def minesweeper(answer: str, game: dict) -> tuple[bool, str]:
    want = {tuple(int(x) for x in p) for p in meta(game)["current_mines"]}
    got = _pairs(answer)
    if not got and want:
        return False, "no (row, col) pairs"
    return result(set(got) == want, "wrong set of mines")


def _dominoes(answer: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    value = outer_literal(answer, "[", "]")
    out = []
    for d in value if isinstance(value, (list, tuple)) else [None]:
        cells = d if isinstance(d, (list, tuple)) and len(d) == 2 else None
        if cells is None or not all(isinstance(c, (list, tuple)) and len(c) == 2
                                    and all(type(x) is int for x in c) for c in cells):
            raise ValueError("expected a list of dominoes [(r, c), (r, c)]")
        out.append((tuple(cells[0]), tuple(cells[1])))
    return out


def norinori(answer: str, game: dict) -> tuple[bool, str]:
    regions = meta(game)["region_grid"]
    n = len(regions)
    owner: dict[tuple[int, int], int] = {}
    for k, ((r1, c1), (r2, c2)) in enumerate(_dominoes(answer)):
        if abs(r1 - r2) + abs(c1 - c2) != 1:
            return False, "a domino is not two adjacent cells"
        for r, c in ((r1 - 1, c1 - 1), (r2 - 1, c2 - 1)):
            if not (0 <= r < n and 0 <= c < n):
                return False, "a domino is off the grid"
            if (r, c) in owner:
                return False, "two dominoes overlap"
            owner[(r, c)] = k
    for (r, c), k in owner.items():
        if any(owner.get((r + dr, c + dc), k) != k for dr, dc in _N4):
            return False, "two dominoes touch"
    counts: dict = {}
    for i in range(n):
        for j in range(n):
            label = regions[i][j]
            if label == "X" and (i, j) not in owner:
                return False, "a shaded cell is not covered"
            if label != "X":
                counts[label] = counts.get(label, 0) + ((i, j) in owner)
    return result(all(v == 2 for v in counts.values()), "a region does not have exactly 2 covered cells")


def _islands(grid: list[list]) -> list[list[tuple[int, int]]]:
    n, m = len(grid), len(grid[0])
    seen, out = set(), []
    for i in range(n):
        for j in range(m):
            if grid[i][j] != "A" and (i, j) not in seen:
                seen.add((i, j))
                queue, cells = deque([(i, j)]), []
                while queue:
                    r, c = queue.popleft()
                    cells.append((r, c))
                    for dr, dc in _N4:
                        nr, nc = r + dr, c + dc
                        if 0 <= nr < n and 0 <= nc < m and grid[nr][nc] != "A" and (nr, nc) not in seen:
                            seen.add((nr, nc))
                            queue.append((nr, nc))
                out.append(cells)
    return out


def number_wall(answer: str, game: dict) -> tuple[bool, str]:
    given = meta(game)["grid"]
    n = len(given)
    raw = str_grid(grid_literal(answer), n)
    grid = [[int(c) if isinstance(c, str) and c.isdigit() and len(c) < 4 else c for c in row] for row in raw]
    for i in range(n):
        for j in range(n):
            g, a = given[i][j], grid[i][j]
            if not (type(a) is int or a in ("X", "A")):
                return False, 'cells must be numbers, "X" or "A"'
            if (type(g) is int) != (type(a) is int) or (type(g) is int and g != a):
                return False, "changes or adds a clue number"
    if any(grid[i][j] == grid[i][j + 1] == grid[i + 1][j] == grid[i + 1][j + 1] == "A"
           for i in range(n - 1) for j in range(n - 1)):
        return False, "a 2x2 block of walls"
    island_of = {}
    for k, cells in enumerate(_islands(grid)):
        clues = [grid[r][c] for r, c in cells if type(grid[r][c]) is int]
        if len(clues) != 1 or clues[0] != len(cells):
            return False, "an island does not hold one number equal to its size"
        island_of.update({cell: k for cell in cells})
    for i in range(n - 1):
        for j in range(n - 1):
            for a, b in (((i, j), (i + 1, j + 1)), ((i, j + 1), (i + 1, j))):
                if a in island_of and b in island_of and island_of[a] != island_of[b]:
                    return False, "two islands touch diagonally"
    return True, "correct"


def _runs(lines: list[list[str]]) -> list[str]:
    """The maximal runs of letters in each line (empty cells split a line)."""
    return [run for line in lines for run in "".join(c or " " for c in line).split(" ") if run]


def wordscapes(answer: str, game: dict) -> tuple[bool, str]:
    mt = meta(game)
    layout = mt["grid"]
    n, m = len(layout), len(layout[0])
    raw = str_grid(grid_literal(answer), n, m)
    grid = [["" if str(c).strip() in ("", "0") else str(c).strip().lower() for c in row] for row in raw]
    for i in range(n):
        for j in range(m):
            if str(layout[i][j]) == "0" and grid[i][j]:
                return False, "a letter in an empty cell"
            if str(layout[i][j]) == "X" and not (len(grid[i][j]) == 1 and grid[i][j].isalpha()):
                return False, "a letter cell is not one letter"
    rows, cols = _runs(grid), _runs([list(col) for col in zip(*grid)])
    if any(w and not any(w.lower() in r for r in rows) for w in mt["across_words"]):
        return False, "an across word is missing"
    if any(w and not any(w.lower() in c for c in cols) for w in mt["down_words"]):
        return False, "a down word is missing"
    return True, "correct"
