"""Math word problems judged by math-verify (``task=math``).

Sources are local jsonl/parquet files of the usual evaluation sets (MATH-500, AIME-2024,
AIME-2025, AMC-2023, Minerva, OlympiadBench) or any other with configurable field names, plus
``builtin``, a few hand-written items (``verifiers.math_builtin``). Each split lists its sources:

    train: [{name: builtin}]
    eval:  [{name: math500, path: data/math500.jsonl}, {name: aime2024, path: …, answer_field: Answer}]

Splits are filled in the order eval, train, rl; a prompt already in an earlier split is skipped,
so splits never share a prompt even when they read the same file.

Scoring: the last ``\\boxed{…}`` after any ``</think>``. Equal strings after light LaTeX
normalisation are correct without further work; otherwise math-verify decides, in a worker
process with a hard time bound (``verifiers.mathbox``), so the verifier is safe in threads and
Ray tasks. An answer that runs out of time is wrong with ``timed_out`` set in its verdict (the
verify and eval stages count such answers and judge them once more under a longer bound). Answers whose evaluation would be astronomically large (power towers, huge
exponents or factorials) are rejected up front, and so are answers involving infinity when the
gold answer does not: math-verify 0.9.0 (sympy's ``simplify``) judges ``\\infty^{\\infty}`` equal to
finite numbers such as 45 or 8/21 in a random fraction of calls.

maj@n groups answers with ``same_answer``: equal after the same normalisation, else
math-verify's equivalence behind the same guards (``same_math_answer``).
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from verifiers.base import SPLITS, Item, Verdict, check_split, prompt_text
from verifiers.extract import final_boxed, last_boxed
from verifiers.mathbox import mathbox

PROMPT_TEMPLATE = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
MAX_PRED_CHARS = 400
MAX_NESTING = 12  # brace/paren depth; real answers stay far below, deep ones only cost time

# name -> candidate field names (the first present wins); override with *_field in a source.
DATASETS: dict[str, dict[str, tuple[str, ...]]] = {
    "math500": {"problem": ("problem",), "answer": ("answer",), "id": ("unique_id", "id")},
    "aime2024": {"problem": ("problem", "Problem", "question"), "answer": ("answer", "Answer"), "id": ("id", "ID")},
    "aime2025": {"problem": ("problem", "question", "Problem"), "answer": ("answer", "Answer"), "id": ("id", "ID")},
    "amc2023": {"problem": ("problem", "question"), "answer": ("answer",), "id": ("id", "url")},
    "minerva": {"problem": ("problem", "question"), "answer": ("answer", "final_answer", "solution"), "id": ("idx", "id")},
    "olympiadbench": {"problem": ("question", "problem"), "answer": ("final_answer", "answer"), "id": ("id",)},
    "jsonl": {"problem": ("problem", "question"), "answer": ("answer", "final_answer"), "id": ("id",)},
}


class MathSuite:
    name = "math"

    def __init__(
        self,
        seed: int = 0,
        sizes: Mapping[str, int | None] | None = None,
        train: Sequence[Mapping[str, Any]] | None = None,
        rl: Sequence[Mapping[str, Any]] | None = None,
        eval: Sequence[Mapping[str, Any]] | None = None,  # noqa: A002 - the split's name
        prompt_template: str = PROMPT_TEMPLATE,
        warm: bool = True,
    ) -> None:
        self.seed = int(seed)
        self.sizes = {"train": 8, "rl": 8, "eval": 8, **dict(sizes or {})}  # the builtin smoke set
        builtin = [{"name": "builtin"}]
        self.sources = {"train": list(train or builtin), "rl": list(rl or builtin), "eval": list(eval or builtin)}
        for split, sources in self.sources.items():
            for s in sources:
                _check_source(split, s)
        self.prompt_template = prompt_template
        self._pools: dict[str, list[Item]] | None = None
        if warm:
            mathbox().warm()

    def items(self, split: str) -> list[Item]:
        check_split(split)
        if self._pools is None:
            self._pools = self._build()
        return list(self._pools[split])

    def score(self, item: Item, completion: str) -> Verdict:
        return score_math(item, completion)

    def same_answer(self, a: str, b: str) -> bool:
        return same_math_answer(a, b)

    def _build(self) -> dict[str, list[Item]]:
        taken: set[str] = set()
        pools: dict[str, list[Item]] = {}
        for split in ("eval", "train", "rl"):
            rows = [it for src in self.sources[split] for it in load_source(src, self.prompt_template)]
            random.Random(f"{self.seed}:{split}").shuffle(rows)
            out, n = [], self.sizes[split]
            for it in rows:
                if n is not None and len(out) >= n:
                    break
                key = prompt_text(it.prompt)
                if key not in taken:
                    taken.add(key)
                    out.append(it)
            pools[split] = out
        assert set(pools) == set(SPLITS)
        return pools


def score_math(item: Item, completion: str) -> Verdict:
    """Score a math item from the item alone (also the verl reward path)."""
    found = final_boxed(completion)
    if found.text is None:
        return Verdict(0.0, False, None, found.reason)
    pred = found.text
    if normalize(pred) == normalize(item.answer):
        return Verdict(1.0, True, pred, "correct (same normalised answer)")
    if len(pred) > MAX_PRED_CHARS:
        return Verdict(0.0, False, pred, f"boxed answer longer than {MAX_PRED_CHARS} characters")
    if nesting_depth(pred) > MAX_NESTING:
        return Verdict(0.0, False, pred, f"boxed answer nested deeper than {MAX_NESTING} levels")
    if too_large(pred):
        return Verdict(0.0, False, pred, "answer too large to evaluate (power tower, huge exponent or factorial)")
    if _INFINITY.search(pred) and not _INFINITY.search(item.answer):
        # sympy's simplify makes math-verify call \infty^{\infty} equal to 45 or 8/21, at random
        return Verdict(0.0, False, pred, "infinite answer for a finite gold answer")
    reply = mathbox().judge(item.answer, pred)
    status = reply.get("status")
    if status == "equal":
        return Verdict(1.0, True, pred, "correct (math-verify)")
    reasons = {"different": "wrong answer", "unparsed": "math-verify could not parse the "
               + str(reply.get("detail")), "timeout": "math-verify timed out", "error": "math-verify error"}
    return Verdict(0.0, False, pred, reasons.get(status, "math-verify error") + (
        f": {reply.get('detail')}" if status in ("timeout", "error") else ""), timed_out=status == "timeout")


def same_math_answer(a: str, b: str) -> bool:
    """Whether two extracted answers are the same mathematical answer: equal after ``normalize``,
    else math-verify's equivalence (``a`` as gold), behind the same guards as ``score_math``
    (an oversized, too deeply nested, astronomically large or one-sided infinite answer is
    different). Never raises; a math-verify timeout or error counts as different."""
    if normalize(a) == normalize(b):
        return True
    for x in (a, b):
        if len(x) > MAX_PRED_CHARS or nesting_depth(x) > MAX_NESTING or too_large(x):
            return False
    if bool(_INFINITY.search(a)) != bool(_INFINITY.search(b)):
        return False
    return mathbox().judge(a, b).get("status") == "equal"


# -- normalisation and guards -------------------------------------------------------------------
_SPACING = re.compile(r"\\[,;:! ]|\\left|\\right|\\displaystyle|\s+")


def normalize(answer: str) -> str:
    """Light, safe LaTeX normalisation for an exact-match fast path."""
    s = answer.strip().strip("$").strip()
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("^{\\circ}", "").replace("^\\circ", "")
    s = _SPACING.sub("", s)
    return s.rstrip(".")


_INFINITY = re.compile(r"\\infty|∞|\boo\b")


def nesting_depth(text: str) -> int:
    depth = deepest = 0
    for c in text:
        if c in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "})]":
            depth = max(depth - 1, 0)
    return deepest


_NUMERIC = re.compile(r"[\d\s^{}()+\-*.]*")
_BIG_FACTORIAL = re.compile(r"\d{5,}\s*!|!\s*\)?\s*!")


def too_large(pred: str) -> bool:
    """Would evaluating ``pred`` build an astronomically large number? Such work runs in C
    (big-integer powers), where no timer can stop it, so it is refused before math-verify.

    Flags numeric power towers (``9^{9^9}``, ``2^3^4``, ``9**9**9``), numeric exponents of five
    digits or more, factorials of five-digit numbers and factorials of factorials.
    """
    s = pred.replace("**", "^")
    if _BIG_FACTORIAL.search(s):
        return True
    i = s.find("^")
    while i >= 0:
        j = i + 1
        while j < len(s) and s[j] == " ":
            j += 1
        if j < len(s) and s[j] in "{(":
            from verifiers.extract import boxed_content

            group = boxed_content(s.replace("(", "{").replace(")", "}"), j, len(s))
            exponent = group if group is not None else s[j + 1:]
        else:
            k = j
            while k < len(s) and (s[k].isalnum() or s[k] == "."):
                k += 1
            exponent = s[j:k] + ("^" if s[k:].lstrip().startswith("^") else "")
        if _NUMERIC.fullmatch(exponent) and ("^" in exponent or re.search(r"\d{5,}", exponent)):
            return True
        i = s.find("^", i + 1)
    return False


# -- loading --------------------------------------------------------------------------------------
def load_source(source: Mapping[str, Any], template: str = PROMPT_TEMPLATE) -> list[Item]:
    """Items of one source ``{name, path?, problem_field?, answer_field?, id_field?, limit?}``."""
    name = str(source.get("name", "jsonl"))
    if name == "builtin":
        from verifiers.math_builtin import BUILTIN

        rows = [{"problem": p, "answer": a, "id": str(i)} for i, (p, a) in enumerate(BUILTIN)]
    else:
        rows = read_table(source["path"])
    fields = DATASETS.get(name, DATASETS["jsonl"])
    items = []
    for i, row in enumerate(rows[: source.get("limit")]):
        problem = _field(row, source.get("problem_field"), fields["problem"])
        answer = gold_answer(_field(row, source.get("answer_field"), fields["answer"]))
        rid = _field(row, source.get("id_field"), fields["id"])
        if problem is None or answer is None:
            raise ValueError(f"math/{name}: row {i} lacks a problem or an answer field "
                             f"(have {sorted(row)}); set problem_field/answer_field")
        prompt = template.format(problem=str(problem).strip())
        digest = hashlib.sha1(prompt.encode()).hexdigest()[:8]
        items.append(Item(id=f"math-{name}-{rid if rid is not None else i}-{digest}",
                          prompt=[{"role": "user", "content": prompt}], answer=answer,
                          metadata={"source": name}))
    return items


def gold_answer(value: Any) -> str | None:
    """A dataset's answer field as one LaTeX string (lists joined, ``$``/``\\boxed`` removed)."""
    if value is None:
        return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(gold_answer(v)) for v in value)
    s = str(value).strip().strip("$").strip()
    boxed = last_boxed(s)
    return boxed.text if boxed.text is not None else s


def read_table(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"math: no such file: {path}")
    if path.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path).to_dict("records")
    with open(path, encoding="utf-8") as f:
        if path.suffix == ".json":
            data = json.load(f)
            return data if isinstance(data, list) else list(data.values())[0]
        return [json.loads(line) for line in f if line.strip()]


def _field(row: Mapping, override: str | None, candidates: tuple[str, ...]) -> Any:
    for key in ([override] if override else candidates):
        if key in row and row[key] is not None:
            return row[key]
    return None


def _check_source(split: str, source: Mapping[str, Any]) -> None:
    known = {"name", "path", "problem_field", "answer_field", "id_field", "limit"}
    unknown = set(source) - known
    if unknown:
        raise ValueError(f"math/{split}: unknown source keys {sorted(unknown)}; valid: {sorted(known)}")
    if source.get("name", "jsonl") != "builtin" and not source.get("path"):
        raise ValueError(f"math/{split}: source {source.get('name')!r} needs a path")
