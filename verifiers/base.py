"""The task-suite protocol every verifier follows.

A suite hands out items for a split, scores completions and says when two extracted answers
are the same answer (``same_answer``, the task's own equality: maj@n votes with it). The same
``score`` is the SFT filter (verify stage), the RL reward (TRL and verl) and the eval judge, so
it must never raise and must return in bounded time whatever the completion is.

Splits:
  ``train``  prompts the behavior policy is sampled on (SFT data),
  ``rl``     prompts for online RL,
  ``eval``   held-out prompts for pass@k; never shares a prompt with ``train`` or ``rl``.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

SPLITS = ("train", "rl", "eval")


@dataclass(frozen=True)
class Item:
    """One task instance. ``prompt`` is plain text or a chat list ``[{role, content}, ...]``."""

    id: str
    prompt: str | list[dict[str, str]]
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """``reward`` in [0, 1]; ``correct`` is the binary judgement; ``reason`` says why.
    ``timed_out``: the judge ran out of time (math-verify), so the answer is judged wrong without
    having been compared; the verify and eval stages retry such answers under a longer bound."""

    reward: float
    correct: bool
    extracted: str | None
    reason: str
    timed_out: bool = False


@runtime_checkable
class Suite(Protocol):
    name: str

    def items(self, split: str) -> list[Item]: ...

    def score(self, item: Item, completion: str) -> Verdict: ...

    def same_answer(self, a: str, b: str) -> bool: ...


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


_SPACES = re.compile(r"\s+")
_SPACE_AT_PUNCT = re.compile(r"\s*([^\w\s])\s*")


def normalized_answer(answer: str) -> str:
    """An answer string for comparison: Unicode NFKC, whitespace runs collapsed, and no
    whitespace next to punctuation (``[1, 2]`` = ``[1,2]``, ``a , b`` = ``a,b``). Case is kept
    (some games' answers are case-sensitive)."""
    s = _SPACES.sub(" ", unicodedata.normalize("NFKC", str(answer))).strip()
    return _SPACE_AT_PUNCT.sub(r"\1", s)


def prompt_text(prompt: str | list[dict[str, str]]) -> str:
    """The text of a prompt, for de-duplication and plain-text engines."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in prompt)
