"""SynLogic checkers for question-answer tasks: the answer is compared with the stored one.

Written from the task prompts and rules of MiniMax-AI/SynLogic (``games/tasks/<task>/``), not
from its code. Each takes the text inside ``<answer>…</answer>`` and the row's game data and
returns ``(correct, reason)``.

  boolean_expressions, object_counting, word_sorting, object_properties, space_reasoning,
  space_reasoning_tree, word_sorting_mistake       ``\\boxed{…}``
  web_of_lies          "The answer is **yes, no, yes**."
  time_sequence        "[45, 3]"  (longest meeting, number of options)
  dyck_language        the completed bracket sequence
  dyck_language_errors the 1-based position of the first error, or -1 if the sequence is valid
  dyck_language_reasoning_errors  the wrong thought numbers "3,7" ("" or "no errors" if none)
  buggy_tables         a number with exactly two decimals ("42.00")
  cipher               ``[["TEXT"]]`` (a Python literal, usually in a ```python block)
  goods_exchange       ``(('Alice','red book'), ...)`` in a ```python block

Leniencies relative to SynLogic (each listed in the README table): where SynLogic requires
``\\boxed{}`` or a ```python block, a bare answer is also read; comparisons ignore case and
spacing where SynLogic's does.
"""
from __future__ import annotations

import re

from verifiers.synlogic_parse import boxed_or_raw, code_block, literal, meta, outer_literal, result

_result, _meta = result, meta  # short local names; checkers use ``meta`` as a variable


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




def _int_answer(text: str) -> int | None:
    text = text.strip().rstrip(".")
    return int(text) if re.fullmatch(r"-?\d{1,12}", text) else None


def object_properties(answer: str, game: dict) -> tuple[bool, str]:
    got = _int_answer(boxed_or_raw(answer))
    if got is None:
        return False, "answer is not an integer"
    return _result(got == int(str(game["answer"]).strip()), "wrong count")


def space_reasoning(answer: str, game: dict) -> tuple[bool, str]:
    got = boxed_or_raw(answer).strip()
    return _result(got.lower() == str(game["answer"]).strip().lower(), "wrong item")


def _name_set(text: str) -> set[str]:
    return set(text.replace("，", ",").replace(" ", "").split(","))


def space_reasoning_tree(answer: str, game: dict) -> tuple[bool, str]:
    return _result(_name_set(boxed_or_raw(answer)) == _name_set(str(game["answer"])), "wrong set of nodes")


def word_sorting_mistake(answer: str, game: dict) -> tuple[bool, str]:
    got, want = boxed_or_raw(answer).strip(), str(game.get("answer") or "No").strip()
    if got.isdigit() and len(got) < 12:
        return _result(want.isdigit() and int(got) == int(want), "wrong thought number")
    return _result(got.lower() == want.lower(), "wrong answer")


_VALID_WORDS = {"-1", "valid", "合法", "correct", "the sequence is valid"}


def dyck_language_errors(answer: str, game: dict) -> tuple[bool, str]:
    m = _meta(game)
    want = -1 if m.get("is_valid") else int(m["first_error_pos"])
    text = boxed_or_raw(answer).strip().strip('"').rstrip(".").strip()
    if text.lower() in _VALID_WORDS:
        return _result(want == -1, "the sequence is not valid")
    got = _int_answer(text)
    if got is None:
        return False, "answer is not a position"
    return _result(got == want, "wrong position")


_NO_ERRORS = {"", '""', "no", "none", "no error", "no errors", "no mistakes", "all correct", "无问题", "无错误"}


def dyck_language_reasoning_errors(answer: str, game: dict) -> tuple[bool, str]:
    want = {int(i) for i in _meta(game)["error_indices"]}
    text = boxed_or_raw(answer).strip().strip(".").strip()
    if text.lower() in _NO_ERRORS:
        return _result(not want, "there are wrong thoughts")
    if "不确定" in text or "不知道" in text or "unclear" in text.lower():
        return False, "answer is unsure"
    got = {int(x) for x in re.findall(r"\d{1,6}", text)}
    if not got:
        return False, "no thought numbers"
    return _result(got == want, "wrong set of thoughts")


_TWO_DECIMALS = re.compile(r"-?\d{1,15}\.\d{2}\b")


def buggy_tables(answer: str, game: dict) -> tuple[bool, str]:
    want = _TWO_DECIMALS.findall(str(game["answer"]))
    got = _TWO_DECIMALS.findall(answer)
    if not got:
        return False, "no number with two decimals"
    return _result(bool(want) and got[-1] == want[-1], "wrong value")


def cipher(answer: str, game: dict) -> tuple[bool, str]:
    gold = str(game["answer"]).strip()
    if not (gold.startswith("[[") and gold.endswith("]]")):
        raise ValueError("stored cipher answer is not [[…]]")
    got = outer_literal(answer, "[", "]")
    ok = isinstance(got, list) and len(got) == 1 and isinstance(got[0], list) and got[0] == [gold[2:-2]]
    return _result(ok, "wrong text (expected [[\"…\"]])")


def _ownership(text: str) -> dict[str, str]:
    """``(('Alice','book'), ...)`` as {person: item}, case-folded; raises ValueError."""
    pairs = literal(text)
    if not isinstance(pairs, (tuple, list)) or not all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs):
        raise ValueError("expected a tuple of (person, item) pairs")
    owned = {p.strip().lower(): o.strip().lower() for p, o in pairs}
    if len(owned) != len(pairs):
        raise ValueError("a person is listed twice")
    return owned


def goods_exchange(answer: str, game: dict) -> tuple[bool, str]:
    want = _ownership(str(_meta(game).get("owns_after") or game["answer"]))
    got = _ownership(code_block(answer))
    return _result(got == want, "wrong owner of some item")
