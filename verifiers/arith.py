"""A safe evaluator for the arithmetic answers of countdown-style games.

reasoning-gym scores countdown and puzzle24 answers with ``sympy.parse_expr``, which ``eval``s
the text (code execution on model output) and can run for hours on ``9**9**9**9``. This
evaluator parses with ``ast`` and walks only numbers, ``+ - * /``, unary signs, parentheses and
small integer powers, in exact rational arithmetic, with bounds on length, depth and size.
"""
from __future__ import annotations

import ast
from fractions import Fraction

MAX_EXPR_CHARS = 500
MAX_POW_EXPONENT = 64
MAX_MAGNITUDE = Fraction(10) ** 30  # no intermediate value of a sensible answer is larger


class ArithError(ValueError):
    pass


def evaluate(expr: str) -> Fraction:
    """Exact value of ``expr``; raises ``ArithError`` for anything outside the grammar."""
    if len(expr) > MAX_EXPR_CHARS:
        raise ArithError("expression too long")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        raise ArithError(f"not an expression: {type(e).__name__}") from None
    try:
        return _eval(tree.body)
    except RecursionError:
        raise ArithError("expression nested too deeply") from None


def _eval(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value = Fraction(node.value)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _eval(node.operand)
        value = -value if isinstance(node.op, ast.USub) else value
    elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
        left, right = _eval(node.left), _eval(node.right)
        value = _binop(node.op, left, right)
    else:
        raise ArithError(f"unsupported syntax: {type(node).__name__}")
    if abs(value) > MAX_MAGNITUDE:
        raise ArithError("value out of range")
    return value


def _binop(op: ast.operator, a: Fraction, b: Fraction) -> Fraction:
    if isinstance(op, ast.Add):
        return a + b
    if isinstance(op, ast.Sub):
        return a - b
    if isinstance(op, ast.Mult):
        return a * b
    if isinstance(op, ast.Div):
        if b == 0:
            raise ArithError("division by zero")
        return a / b
    if b.denominator != 1 or abs(b) > MAX_POW_EXPONENT or (a == 0 and b < 0):
        raise ArithError("unsupported power")
    return a ** int(b)
