"""The offline toy world: arithmetic chains solved step by step.

A prompt is a chain such as ``7+2-5+3=``; a solver trace evaluates it left to right, one step
per operator, and ends with the answer after ``A``::

    7+2=9;9-5=4;4+3=7;A7

Difficulty is the number of operands (2 = one step, 5 = four steps). Intermediate values stay
non-negative. The *behavior* style of trace sometimes writes a wrong intermediate result, then
``!`` and the right one (``7+2=8!9;``): a self-correction, the kind of trace the PEAR paper says
the target policy may not follow on its own. The verifier only reads the final answer.

Splits are slices of one seeded, de-duplicated pool, so ``train``, ``rl`` and ``eval`` never share
a prompt; ``pretrain_items`` (used by the bootstrap stage to train the tiny base and behavior
models) is drawn from the same pool after the three splits and so never overlaps them either.
"""
from __future__ import annotations

import random
import re
from functools import cached_property

from verifiers.base import Item, Verdict, check_split

_ANSWER = re.compile(r"A(-?\d{1,9})")
_TAIL = 512  # only the end of a completion can hold the final answer; bounds regex time


class ToySuite:
    name = "toy"

    def __init__(
        self,
        seed: int = 0,
        sizes: dict | None = None,
        min_operands: int = 2,
        max_operands: int = 5,
        max_operand: int = 9,
        pretrain_size: int = 20000,
    ) -> None:
        self.seed = int(seed)
        self.sizes = {"train": 256, "rl": 256, "eval": 200, **dict(sizes or {})}
        self.min_operands, self.max_operands = int(min_operands), int(max_operands)
        self.max_operand = int(max_operand)
        self.pretrain_size = int(pretrain_size)
        if not 2 <= self.min_operands <= self.max_operands:
            raise ValueError("toy task needs 2 <= min_operands <= max_operands")

    # -- generation ---------------------------------------------------------------------
    def _chain(self, rng: random.Random) -> list[tuple[str, int]]:
        n = rng.randint(self.min_operands, self.max_operands)
        value = rng.randint(1, self.max_operand)
        chain = [("", value)]
        for _ in range(n - 1):
            d = rng.randint(1, self.max_operand)
            op = "-" if d <= value and rng.random() < 0.5 else "+"
            value = value - d if op == "-" else value + d
            chain.append((op, d))
        return chain

    @cached_property
    def _pool(self) -> list[Item]:
        need = sum(self.sizes.values()) + self.pretrain_size
        rng = random.Random(self.seed)
        seen: set[str] = set()
        pool: list[Item] = []
        for _ in range(need * 20):
            if len(pool) == need:
                break
            chain = self._chain(rng)
            prompt = "".join(f"{op}{d}" for op, d in chain) + "="
            if prompt in seen:
                continue
            seen.add(prompt)
            pool.append(Item(id=f"toy-{len(pool)}", prompt=prompt, answer=str(evaluate(prompt)),
                             metadata={"operands": len(chain)}))
        if len(pool) < need:
            raise ValueError(f"toy task: only {len(pool)} distinct chains for {need} items; "
                             "raise max_operands/max_operand or lower the split sizes")
        return pool

    def items(self, split: str) -> list[Item]:
        check_split(split)
        start = 0
        for name in ("train", "rl", "eval"):
            if name == split:
                return self._pool[start:start + self.sizes[name]]
            start += self.sizes[name]
        raise AssertionError(split)

    def pretrain_items(self) -> list[Item]:
        return self._pool[sum(self.sizes.values()):]

    # -- scoring ------------------------------------------------------------------------
    def same_answer(self, a: str, b: str) -> bool:
        """Equal integers (``07`` = ``7``); otherwise equal stripped strings."""
        try:
            return int(str(a).strip()) == int(str(b).strip())
        except ValueError:
            return str(a).strip() == str(b).strip()

    def score(self, item: Item, completion: str) -> Verdict:
        try:
            found = _ANSWER.findall(str(completion)[-_TAIL:])
        except Exception as e:  # never raise from a verifier
            return Verdict(0.0, False, None, f"unreadable completion: {type(e).__name__}")
        if not found:
            return Verdict(0.0, False, None, "no final answer 'A<number>'")
        got = found[-1]
        if int(got) == int(item.answer):
            return Verdict(1.0, True, got, "correct")
        return Verdict(0.0, False, got, f"wrong answer: expected {item.answer}")


def evaluate(prompt: str) -> int:
    """Left-to-right value of a chain prompt like ``7+2-5=``."""
    tokens = re.findall(r"[+-]?\d+", prompt.rstrip("="))
    return sum(int(t) for t in tokens)


def solve(prompt: str, rng: random.Random | None = None, p_correction: float = 0.0) -> str:
    """A solver trace for ``prompt``; with ``p_correction`` > 0 some steps self-correct."""
    tokens = re.findall(r"[+-]?\d+", prompt.rstrip("="))
    value = int(tokens[0])
    steps = []
    for tok in tokens[1:]:
        new = value + int(tok)
        res = str(new)
        if rng is not None and p_correction > 0 and rng.random() < p_correction:
            wrong = new + rng.choice([-2, -1, 1, 2])
            if wrong >= 0:
                res = f"{wrong}!{new}"
        steps.append(f"{value}{tok[0]}{tok[1:]}={res}")
        value = new
    return ";".join(steps) + f";A{value}"
