"""Answer extraction shared by the suites: bounded, linear-time, never raises.

A completion may hold a reasoning block. Only the text after the *last* ``</think>`` counts as
the final answer region; a ``<think>`` that is never closed means the model did not finish
thinking, so there is no answer. Inside that region:

* ``answer_tag`` takes the content of an ``<answer>…</answer>`` pair (the last pair, as
  reasoning-gym's ``extract_answer`` does, or the first, as SynLogic's reward does);
* ``last_boxed`` takes the content of the last ``\\boxed{…}`` with balanced braces.

Everything here uses ``str.find``/``rfind`` and single forward scans, never backtracking
regexes, so the time is linear in the completion length whatever the completion holds.
"""
from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
MAX_ANSWER_CHARS = 20_000  # no answer of any supported task is longer; longer ones are rejected
MAX_BOXED_CHARS = 2_000


@dataclass(frozen=True)
class Extraction:
    """``text`` is the extracted answer (stripped) or None; ``reason`` says why it is None."""

    text: str | None
    reason: str = ""


def final_region(completion: object) -> Extraction:
    """The part of ``completion`` after the last ``</think>`` (the whole text if none)."""
    if not isinstance(completion, str):
        return Extraction(None, f"completion is {type(completion).__name__}, not str")
    cut = completion.rfind(THINK_CLOSE)
    if cut >= 0:
        return Extraction(completion[cut + len(THINK_CLOSE):])
    if THINK_OPEN in completion:
        return Extraction(None, "unclosed <think>: no final answer after the reasoning")
    return Extraction(completion)


def answer_tag(completion: object, which: str = "last", max_chars: int = MAX_ANSWER_CHARS) -> Extraction:
    """Content of the last (or first) ``<answer>…</answer>`` after any ``</think>``."""
    region = final_region(completion)
    if region.text is None:
        return region
    text = region.text
    if which == "last":
        end = text.rfind(ANSWER_CLOSE)
        start = text.rfind(ANSWER_OPEN, 0, max(end, 0)) if end >= 0 else -1
    else:
        start = text.find(ANSWER_OPEN)
        end = text.find(ANSWER_CLOSE, start + len(ANSWER_OPEN)) if start >= 0 else -1
    if start < 0 or end < 0:
        if ANSWER_OPEN in text:
            return Extraction(None, "unclosed <answer> tag")
        return Extraction(None, "no <answer>…</answer> in the final answer region")
    content = text[start + len(ANSWER_OPEN):end].strip()
    if not content:
        return Extraction(None, "empty <answer></answer>")
    if len(content) > max_chars:
        return Extraction(None, f"answer longer than {max_chars} characters")
    return Extraction(content)


def boxed_content(text: str, start: int, max_chars: int = MAX_BOXED_CHARS) -> str | None:
    """Content of the brace group opening at ``text[start] == '{'``, or None if unbalanced."""
    depth = 0
    stop = min(len(text), start + max_chars + 2)
    for i in range(start, stop):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
    return None


def last_boxed(text: str, max_chars: int = MAX_BOXED_CHARS) -> Extraction:
    """Content of the last ``\\boxed{…}`` (or ``\\fbox{…}``) in ``text``."""
    pos = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if pos < 0:
        return Extraction(None, "no \\boxed{} answer")
    brace = text.find("{", pos)
    content = boxed_content(text, brace, max_chars)
    if content is None:
        return Extraction(None, f"unbalanced or longer than {max_chars} characters \\boxed{{}}")
    content = content.strip()
    if not content:
        return Extraction(None, "empty \\boxed{}")
    return Extraction(content)


def final_boxed(completion: object, max_chars: int = MAX_BOXED_CHARS) -> Extraction:
    """The last ``\\boxed{…}`` after any ``</think>``."""
    region = final_region(completion)
    if region.text is None:
        return region
    return last_boxed(region.text, max_chars)
