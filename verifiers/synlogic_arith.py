"""SynLogic checkers for arithmetic tasks: equations are parsed, never executed.

  cryptarithm   "The answer is 123 + 456 = 579"; compared with the stored equation
  game_of_24    an expression in a ```python block using each given number once; its value must
                equal the target (SynLogic's verifier compares the value with itself, so any
                well-formed expression over the numbers passes there: a SynLogic bug we do not copy)
  math_path     "[[2 + 4 * 3 - 4 = 10]]": the ``?`` digits of the query filled in, the operators
                and the other digits unchanged, and the equation true
  operation     ``\\boxed{…}`` compared with the stored value through math-verify (as SynLogic does),
                in the project's sandboxed math-verify worker; the same plain number is accepted
                without it, and answers over 80 characters or nested over 4 brackets deep are
                refused before it, and so are power towers and huge factorials (as in the math suite)

Expressions are read with ``ast.parse`` and evaluated by walking the tree over integer
constants and + - * / % with exact fractions; anything else (names, calls, powers, huge
numbers) is rejected, so a model's text is never run.
"""
from __future__ import annotations

import ast
import re
from fractions import Fraction

from verifiers.synlogic_parse import boxed_or_raw, code_block, meta, result

_result, _meta = result, meta  # short local names; checkers use ``meta`` as a variable
MAX_EXPR_CHARS = 500
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}


def safe_value(text: str, allowed: str = "+-*/%") -> tuple[Fraction, list[int]]:
    """The exact value of an arithmetic expression and the integers it uses, in order."""
    text = text.replace("×", "*").replace("÷", "/").replace("−", "-").strip()
    if len(text) > MAX_EXPR_CHARS:
        raise ValueError("expression too long")
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ValueError("not an arithmetic expression") from None
    numbers: list[int] = []
    return _walk(tree, allowed, numbers, 0), numbers


def _walk(node: ast.AST, allowed: str, numbers: list[int], depth: int) -> Fraction:
    if depth > 60:
        raise ValueError("expression nested too deeply")
    if isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value < 10 ** 12:
        numbers.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and "-" in allowed:
        return -_walk(node.operand, allowed, numbers, depth + 1)
    if isinstance(node, ast.BinOp) and _OPS.get(type(node.op), "?") in allowed:
        a = _walk(node.left, allowed, numbers, depth + 1)
        b = _walk(node.right, allowed, numbers, depth + 1)
        if isinstance(node.op, (ast.Div, ast.Mod)) and b == 0:
            raise ValueError("division by zero")
        op = type(node.op)
        if op is ast.Add:
            return a + b
        if op is ast.Sub:
            return a - b
        if op is ast.Mult:
            return a * b
        return a / b if op is ast.Div else a % b
    raise ValueError(f"not allowed in the expression: {type(node).__name__}")


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




def _operator_chars(operators) -> str:
    ops = "".join(str(o) for o in operators)
    return ops.replace("×", "*").replace("÷", "/")


def game_of_24(answer: str, game: dict) -> tuple[bool, str]:
    m = _meta(game)
    value, used = safe_value(code_block(answer), _operator_chars(m["operators"]))
    if sorted(used) != sorted(int(x) for x in m["numbers"]):
        return False, "does not use each given number exactly once"
    return _result(value == Fraction(str(m["result"])), "wrong value")


def math_path(answer: str, game: dict) -> tuple[bool, str]:
    end = answer.rfind("]]")
    start = answer.rfind("[[", 0, max(end, 0))
    if start < 0 or end < 0:
        return False, "no [[…]] expression"
    got = answer[start + 2:end].replace(" ", "")
    query = str(_meta(game)["query_expr"]).replace(" ", "")
    q_digits = [c for c in query if c.isdigit() or c == "?"]
    g_digits = [c for c in got if c.isdigit()]
    if len(q_digits) != len(g_digits) or any(q not in ("?", g) for q, g in zip(q_digits, g_digits)):
        return False, "digits differ from the puzzle"
    if [c for c in got if c in "+-*/%"] != [c for c in query if c in "+-*/%"]:
        return False, "operators differ from the puzzle"
    if got.count("=") != 1:
        return False, "expected one '='"
    lhs, rhs = got.split("=")
    return _result(safe_value(lhs)[0] == safe_value(rhs)[0], "the equation is false")


_NUMBER = re.compile(r"-?\d{1,40}(?:\.\d{1,40})?(?:/\d{1,40})?")
MAX_VALUE_CHARS, MAX_VALUE_DEPTH = 80, 4


def _depth(text: str) -> int:
    depth = top = 0
    for ch in text:
        depth += (ch in "([{") - (ch in ")]}")
        top = max(top, depth)
    return top


def operation(answer: str, game: dict) -> tuple[bool, str]:
    from verifiers.mathbox import mathbox

    pred, gold = boxed_or_raw(answer).strip(), str(game["answer"]).strip()
    if _NUMBER.fullmatch(pred) and _NUMBER.fullmatch(gold) and Fraction(pred) == Fraction(gold):
        return True, "correct"  # the same number: no need to ask math-verify
    if len(pred) > MAX_VALUE_CHARS or _depth(pred) > MAX_VALUE_DEPTH:
        return False, "answer is not a value (too long or nested)"
    from verifiers.math_suite import too_large

    if too_large(pred):
        return False, "answer too large to evaluate (power tower, huge exponent or factorial)"
    verdict = mathbox().judge(gold, pred)
    if verdict["status"] in ("timeout", "error", "unparsed"):
        return False, f"math-verify: {verdict['status']} ({verdict.get('detail', '')})"
    return _result(verdict["status"] == "equal", "wrong value")
