"""Parsing helpers shared by the SynLogic checkers (``verifiers/synlogic_*.py``).

Answers are read literally: Python literals go through ``ast.literal_eval`` on bounded input
(never ``eval``), arithmetic expressions through ``synlogic_arith.safe_value`` (an AST walk over
numbers and + - * / % only). Every helper raises ``ValueError`` on input it cannot read; the
suite turns that into a zero reward with the reason.
"""
from __future__ import annotations

import ast
import re
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


def result(ok: bool, why: str) -> tuple[bool, str]:
    return (True, "correct") if ok else (False, why)


def meta(game: dict) -> dict:
    meta = game.get("metadata")
    if not isinstance(meta, dict):
        raise ValueError("row has no metadata in game_data_str")
    return meta


def boxed_strict(answer: str) -> str | None:
    """Content of the last ``\\boxed{…}`` (balanced braces), or None."""
    from verifiers.extract import last_boxed

    return last_boxed(answer).text


def bracket_rows(answer: str, n: int) -> list[list[int]]:
    """The last ``[[1 2 3,2 3 1,3 1 2]]`` answer (or a Python list of lists) as ``n`` rows of ``n`` ints."""
    end = answer.rfind("]]")
    start = answer.rfind("[[", 0, max(end, 0))
    if start < 0 or end < 0:
        raise ValueError("no [[…]] answer")
    inner = answer[start + 2:end]
    if "[" in inner or "]" in inner:  # a Python list of lists
        return int_grid(literal(answer[start:end + 2]), n)
    rows = [[int(x) for x in re.findall(r"\d{1,6}", row)] for row in inner.replace("，", ",").split(",")]
    if len(rows) != n or any(len(r) != n for r in rows):
        raise ValueError(f"expected {n} rows of {n} numbers")
    return rows


def str_grid(value: Any, n_rows: int, n_cols: int | None = None) -> list[list[Any]]:
    """``value`` as an ``n_rows × n_cols`` list of lists (cells unchecked); raises ValueError."""
    n_cols = n_rows if n_cols is None else n_cols
    if not isinstance(value, (list, tuple)) or len(value) != n_rows:
        raise ValueError(f"expected {n_rows} rows")
    if any(not isinstance(r, (list, tuple)) or len(r) != n_cols for r in value):
        raise ValueError(f"expected rows of {n_cols} cells")
    return [list(r) for r in value]

