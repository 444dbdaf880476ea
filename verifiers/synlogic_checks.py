"""Native checkers for SynLogic task types, written from the task rules (not SynLogic's code).

Each checker takes the text inside ``<answer>…</answer>`` and the row's game data (the parsed
``extra_info.game_data_str``: ``{question, answer, difficulty, metadata}``) and returns
``(correct, reason)``. Answer formats follow the task prompts of MiniMax-AI/SynLogic
(``games/tasks/<task>/scripts/<task>_prompt.py``):

  boolean_expressions, object_counting, word_sorting   ``\\boxed{…}``
  web_of_lies       "The answer is **yes, no, yes**."
  cryptarithm       "The answer is 123 + 456 = 579"
  time_sequence     "[45, 3]"  (longest meeting, number of options)
  dyck_language     the completed bracket sequence
  futoshiki         "[[1 2 3,2 3 1,3 1 2]]"
  sudoku, survo, skyscraper_puzzle, kukurasu, star_placement_puzzle
                    a Python literal (tuple/list grid, or a dict of star coordinates), usually in a
                    ```python code block; parsed with ``ast.literal_eval`` only, never ``eval``.

Grid puzzles are checked against their rules (a valid solution other than the generator's
counts as correct, as in SynLogic); string answers are compared after normalisation.
Leniencies relative to SynLogic: where SynLogic requires ``\\boxed{}``, a bare answer is also
read; Python literals may come without a code block.
"""
from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

MAX_LITERAL_CHARS = 10_000

Check = Callable[[str, dict], "tuple[bool, str]"]


# -- parsing helpers -------------------------------------------------------------------------
def boxed_or_raw(answer: str) -> str:
    """Content of the last ``\\boxed{…}`` in ``answer``, else ``answer`` itself."""
    from verifiers.extract import last_boxed

    found = last_boxed(answer)
    return found.text if found.text is not None else answer.strip()


def code_block(answer: str) -> str:
    """Content of the last fenced code block (```python … ``` or ``` … ```), else ``answer``."""
    end = answer.rfind("```")
    start = answer.rfind("```", 0, end) if end > 0 else -1
    if start < 0:
        return answer.strip()
    body = answer[start + 3:end]
    if body[:6].lower() == "python":
        body = body[6:]
    return body.strip()


def literal(text: str) -> Any:
    """``ast.literal_eval`` with bounded input; raises ValueError on anything else."""
    if len(text) > MAX_LITERAL_CHARS:
        raise ValueError("literal too long")
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:
        raise ValueError(f"not a Python literal ({type(e).__name__})") from None


def outer_literal(answer: str, open_ch: str, close_ch: str) -> Any:
    """The Python literal in the last code block of ``answer`` (or in ``answer``): the whole
    block if it parses, else the span from its first ``open_ch`` to its last ``close_ch``."""
    text = code_block(answer)
    try:
        return literal(text)
    except ValueError:
        pass
    start, end = text.find(open_ch), text.rfind(close_ch)
    if start < 0 or end < start:
        raise ValueError(f"no {open_ch}…{close_ch} literal")
    return literal(text[start:end + 1])


def grid_literal(answer: str) -> Any:
    """A grid written as a tuple or list literal."""
    text = code_block(answer)
    first = min((i for i in (text.find("("), text.find("[")) if i >= 0), default=-1)
    return outer_literal(answer, *(("(", ")") if first >= 0 and text[first] == "(" else ("[", "]")))


def int_grid(value: Any, n_rows: int, n_cols: int | None = None) -> list[list[int]]:
    """``value`` as an ``n_rows × n_cols`` grid of ints (tuples or lists); raises ValueError."""
    n_cols = n_rows if n_cols is None else n_cols
    if not isinstance(value, (list, tuple)) or len(value) != n_rows:
        raise ValueError(f"expected {n_rows} rows")
    grid = []
    for row in value:
        if not isinstance(row, (list, tuple)) or len(row) != n_cols:
            raise ValueError(f"expected rows of {n_cols} cells")
        if not all(type(c) is int for c in row):
            raise ValueError("cells must be integers")
        grid.append(list(row))
    return grid


def latin_square(grid: list[list[int]], n: int) -> bool:
    full = set(range(1, n + 1))
    return all(set(r) == full for r in grid) and all({grid[i][j] for i in range(n)} == full for j in range(n))


def _result(ok: bool, why: str) -> tuple[bool, str]:
    return (True, "correct") if ok else (False, why)


def _meta(game: dict) -> dict:
    meta = game.get("metadata")
    if not isinstance(meta, dict):
        raise ValueError("row has no metadata in game_data_str")
    return meta


# -- string-answer tasks ----------------------------------------------------------------------
def boolean_expressions(answer: str, game: dict) -> tuple[bool, str]:
    got = {c.lower() for c in re.findall(r"[A-Za-z]", boxed_or_raw(answer))}
    want = {c.lower() for c in re.findall(r"[A-Za-z]", str(game.get("answer", "")))}
    return _result(got == want, "wrong set of options")


def object_counting(answer: str, game: dict) -> tuple[bool, str]:
    text = boxed_or_raw(answer).strip().rstrip(".")
    if not re.fullmatch(r"-?\d{1,12}", text):
        return False, "answer is not an integer"
    return _result(int(text) == int(str(game["answer"]).strip()), "wrong count")


def _word_list(text: str) -> list[str]:
    return [w for w in text.replace("，", ",").replace(" ", "").split(",")]


def word_sorting(answer: str, game: dict) -> tuple[bool, str]:
    return _result(_word_list(boxed_or_raw(answer)) == _word_list(str(game["answer"])), "wrong order")


_YES_NO = re.compile(r"\b(yes|no|true|false)\b|(是|否)", re.IGNORECASE)


def _truths(text: str) -> list[bool]:
    return [m.group(0).lower() in ("yes", "true", "是") for m in _YES_NO.finditer(text)]


def web_of_lies(answer: str, game: dict) -> tuple[bool, str]:
    text = answer
    bold_end = text.rfind("**")
    bold_start = text.rfind("**", 0, bold_end) if bold_end > 0 else -1
    if bold_start >= 0:
        text = text[bold_start + 2:bold_end]
    else:
        for marker in ("answer is", "答案是"):
            cut = text.lower().rfind(marker)
            if cut >= 0:
                text = text[cut + len(marker):]
                break
    got, want = _truths(text), _truths(str(game["answer"]))
    if not got:
        return False, "no yes/no answers found"
    return _result(got == want, "wrong truth values")


def dyck_language(answer: str, game: dict) -> tuple[bool, str]:
    text = "".join(answer.split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1]
    want = _meta(game).get("full_sequence", game.get("answer"))
    return _result(text == "".join(str(want).split()), "wrong sequence")


def time_sequence(answer: str, game: dict) -> tuple[bool, str]:
    end = answer.rfind("]")
    start = answer.rfind("[", 0, max(end, 0))
    if start < 0 or end < 0:
        return False, "no [duration, count] list"
    got = literal(answer[start:end + 1].replace("，", ","))
    truth = _meta(game)["records"]["answers"]
    want = [truth["answer_maxLen"], truth["answer_nums"]]
    if not isinstance(got, (list, tuple)) or len(got) != 2:
        return False, "expected a list of two numbers"
    return _result(list(got) == want, "wrong duration or count")


# an equation such as "123 + 456 - 7 = 572", found from its "=" backwards so the scan stays linear
_LHS_CHARS = frozenset("0123456789+-* \t")
_LHS = re.compile(r"\d++(?:[ \t]*+[-+*][ \t]*+\d++)++")
_RHS = re.compile(r"[ \t]*+-?\d++")


def last_equation(text: str) -> str | None:
    """The last ``a op b … = c`` in ``text`` (whitespace removed), or None."""
    pos = text.rfind("=")
    while pos >= 0:
        start = pos
        while start > 0 and text[start - 1] in _LHS_CHARS:
            start -= 1
        lhs = text[start:pos].lstrip(" \t+-*").rstrip(" \t")
        rhs = _RHS.match(text, pos + 1)
        if rhs and _LHS.fullmatch(lhs):
            return re.sub(r"\s+", "", lhs + "=" + rhs.group(0))
        pos = text.rfind("=", 0, pos)
    return None


def cryptarithm(answer: str, game: dict) -> tuple[bool, str]:
    got = last_equation(answer)
    if got is None:
        return False, "no numeric equation"
    return _result(got == re.sub(r"\s+", "", str(game["answer"])), "wrong equation")


# -- grid puzzles -----------------------------------------------------------------------------
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


def _futoshiki_rows(answer: str, n: int) -> list[list[int]]:
    end = answer.rfind("]]")
    start = answer.rfind("[[", 0, max(end, 0))
    if start < 0 or end < 0:
        raise ValueError("no [[…]] answer")
    inner = answer[start + 2:end]
    if "[" in inner or "]" in inner:  # a Python list of lists
        return int_grid(literal(answer[start:end + 2]), n)
    rows = [[int(x) for x in re.findall(r"\d+", row)] for row in inner.split(",")]
    if len(rows) != n or any(len(r) != n for r in rows):
        raise ValueError(f"expected {n} rows of {n} numbers")
    return rows


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
    grid = _futoshiki_rows(answer, n)
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


CHECKS: dict[str, Check] = {
    "boolean_expressions": boolean_expressions,
    "object_counting": object_counting,
    "word_sorting": word_sorting,
    "web_of_lies": web_of_lies,
    "dyck_language": dyck_language,
    "time_sequence": time_sequence,
    "cryptarithm": cryptarithm,
    "sudoku": sudoku,
    "futoshiki": futoshiki,
    "kukurasu": kukurasu,
    "skyscraper_puzzle": skyscraper_puzzle,
    "star_placement_puzzle": star_placement_puzzle,
    "survo": survo,
}
