"""A few hand-written math items, so that ``task=math`` runs with no dataset on disk.

(problem, answer) pairs; answers are written the way MATH-style datasets write them (LaTeX
without ``$``), in varied forms so that a smoke run exercises math-verify's equivalence.
"""
from __future__ import annotations

BUILTIN: tuple[tuple[str, str], ...] = (
    ("What is $7 \\times 8 - 6$?", "50"),
    ("Compute $\\frac{1}{2} + \\frac{1}{3}$.", "\\frac{5}{6}"),
    ("Solve for $x$: $3x + 5 = 20$.", "5"),
    ("What is the greatest common divisor of 84 and 126?", "42"),
    ("Simplify $\\sqrt{50}$.", "5\\sqrt{2}"),
    ("What is $15\\%$ of 80?", "12"),
    ("How many positive divisors does 36 have?", "9"),
    ("What is the sum of the interior angles of a hexagon, in degrees?", "720"),
    ("Evaluate $2^{10}$.", "1024"),
    ("Find the slope of the line through $(1, 2)$ and $(3, 8)$.", "3"),
    ("What is $0.25$ written as a fraction in lowest terms?", "\\frac{1}{4}"),
    ("Solve $x^2 - 5x + 6 = 0$ and give the larger root.", "3"),
    ("What is the area of a circle of radius 3?", "9\\pi"),
    ("Expand $(x+1)^2$.", "x^2+2x+1"),
    ("What is $\\binom{6}{2}$?", "15"),
    ("What is the remainder when 100 is divided by 7?", "2"),
    ("Give the solution set of $|x| = 4$ as an ordered pair $(a, b)$ with $a < b$.", "(-4, 4)"),
    ("What is $\\log_2 64$?", "6"),
    ("Compute $1 + 2 + \\cdots + 20$.", "210"),
    ("What is $\\frac{3}{4}$ as a decimal?", "0.75"),
    ("What is the least common multiple of 4 and 6?", "12"),
    ("Evaluate $\\sin^2 \\theta + \\cos^2 \\theta$.", "1"),
    ("What is the hypotenuse of a right triangle with legs 5 and 12?", "13"),
    ("How many ways can 4 books be arranged on a shelf?", "24"),
)
