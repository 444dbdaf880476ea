"""SynLogic rows exported from the hub (``MiniMaxAI/SynLogic``), read from local files (``task=synlogic``).

The PEAR paper's logic experiments train and evaluate on SynLogic (§4.1.1, Fig. 4a).

Rows are in SynLogic's verl-style schema: ``data_source`` (the task; validation rows may carry a
``val/`` prefix), ``prompt`` (chat list), ``ability``, ``reward_model.ground_truth`` and
``extra_info.game_data_str`` (a JSON record ``{question, answer, difficulty, metadata}``). Files
are parquet or jsonl; a directory means every such file in it.

Every task type in SynLogic's repository has a native checker (``verifiers.synlogic_checks``).
A row of any other type stops the suite with the types and counts, unless the type is listed
in ``skip_types`` (then it is skipped, counted and warned about once): nothing is dropped
silently. ``tasks`` restricts the suite to some types on purpose (the rest are counted as
filtered). ``stats()`` holds the counts per type for the verify manifest.

``validate: report`` checks, once per load, every rule-checked row's stored answer against its
puzzle (``verifiers.synlogic_validate``) and counts ``ok / broken_answer / unsolvable /
unchecked`` per type; ``validate: drop`` also removes broken and unsolvable rows before the
splits are drawn. ``official_verifiers: PATH`` scores with SynLogic's own verifier classes from
a checkout at PATH (``verifiers.synlogic_official``) instead of the native checkers.

Splits: ``eval`` comes from ``eval_path`` if given, else it is drawn first from the shuffled
pool; ``train`` then ``rl`` are drawn from what remains. A prompt appears in one split only.
A size of ``null`` takes all that remain.

Scoring follows SynLogic's reward: the answer is the first ``<answer>…</answer>`` after the
last ``</think>``, then the task's checker (SynLogic's ``reward_example`` takes the first
``<answer>`` anywhere, its base verifier the first after the first ``</think>``). An empty
``<answer></answer>`` is an answer only where "nothing" is a right answer
(dyck_language_reasoning_errors); SynLogic's base verifier also scores a completion with no
``<answer>`` at all as "" there, which we do not.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from verifiers.base import SPLITS, Item, Verdict, check_split, normalized_answer, prompt_text
from verifiers.extract import answer_tag
from verifiers.synlogic_checks import CHECKS, EMPTY_ANSWER_OK

log = logging.getLogger(__name__)

TASKS = tuple(CHECKS)
ALIASES = {"skyscraper": "skyscraper_puzzle", "star_placement": "star_placement_puzzle",
           "dyck_languages": "dyck_language", "mathador": "game_of_24"}
VALIDATE_MODES = ("off", "report", "drop")
TIMED_OUT = "math-verify: timeout"  # the start of a checker's reason when math-verify ran out of time


class SynLogicSuite:
    name = "synlogic"

    def __init__(
        self,
        path: str | Sequence[str] | None = None,
        eval_path: str | Sequence[str] | None = None,
        seed: int = 0,
        sizes: Mapping[str, int | None] | None = None,
        tasks: Sequence[str] | None = None,
        skip_types: Sequence[str] | None = None,
        validate: str = "off",
        official_verifiers: str | None = None,
    ) -> None:
        self.paths = _as_list(path)
        self.eval_paths = _as_list(eval_path)
        self.seed = int(seed)
        self.sizes = {"train": 2048, "rl": None, "eval": 512, **dict(sizes or {})}
        self.tasks = None if tasks is None else [task_name(t) for t in tasks]
        unknown = set(self.tasks or ()) - set(TASKS)
        if unknown:
            raise ValueError(f"synlogic: no verifier for tasks {sorted(unknown)}; covered: {', '.join(TASKS)}")
        self.skip_types = {task_name(t) for t in (skip_types or ())}
        validate = "off" if validate in (False, None) else validate  # YAML reads a bare off as false
        if validate not in VALIDATE_MODES:
            raise ValueError(f"synlogic: validate={validate!r}; valid modes: {', '.join(VALIDATE_MODES)}")
        self.validate = validate
        self.official = None
        if official_verifiers:
            from verifiers.synlogic_official import checkout_root

            self.official = str(checkout_root(official_verifiers))
        self.skipped: Counter[str] = Counter()
        self.filtered: Counter[str] = Counter()
        self.loaded: Counter[str] = Counter()
        self.validation: dict[str, Counter[str]] = {}
        self._pools: dict[str, list[Item]] | None = None

    def items(self, split: str) -> list[Item]:
        check_split(split)
        if self._pools is None:
            self._pools = self._build()
        return list(self._pools[split])

    def score(self, item: Item, completion: str) -> Verdict:
        return score_synlogic(item, completion)

    def same_answer(self, a: str, b: str) -> bool:
        """Equal answer strings after ``normalized_answer`` (whitespace, Unicode forms)."""
        return normalized_answer(a) == normalized_answer(b)

    def stats(self) -> dict:
        """Rows per task type: loaded, skipped (``skip_types``), filtered (``tasks``), validation."""
        if self._pools is None:
            self._pools = self._build()
        return {"rows_by_type": dict(sorted(self.loaded.items())), "skipped_types": dict(self.skipped),
                "filtered_types": dict(self.filtered), "validate": self.validate,
                "validation": {t: dict(c) for t, c in sorted(self.validation.items())},
                "scorer": "official" if self.official else "native"}

    # -- loading ----------------------------------------------------------------------------
    def _build(self) -> dict[str, list[Item]]:
        if not self.paths:
            raise ValueError("synlogic suite: set `path` to SynLogic parquet/jsonl files or a directory")
        rng = random.Random(self.seed)
        rows = self._load(self.paths)
        rng.shuffle(rows)
        pool = deque(rows)
        pools: dict[str, list[Item]] = {}
        taken: set[str] = set()
        if self.eval_paths:
            evals = self._load(self.eval_paths)
            rng.shuffle(evals)
            pools["eval"] = _take(deque(evals), self.sizes["eval"], taken)
        for split in SPLITS:
            if split not in pools:
                pools[split] = _take(pool, self.sizes[split], taken)
        if self.skipped:
            counts = ", ".join(f"{t}: {n}" for t, n in self.skipped.most_common())
            log.warning("synlogic: skipped %d rows of task types listed in skip_types (%s)",
                        sum(self.skipped.values()), counts)
        bad = {t: c["broken_answer"] + c["unsolvable"] for t, c in self.validation.items()}
        if any(bad.values()):
            log.warning("synlogic: rows whose stored answer breaks the rules or that have no solution "
                        "(validate=%s): %s", self.validate, {t: n for t, n in bad.items() if n})
        return pools

    def _load(self, paths: list[str]) -> list[Item]:
        items, unknown = [], Counter()
        for row in read_rows(paths):
            task = task_name(row.get("data_source", ""))
            if task not in CHECKS:
                (self.skipped if task in self.skip_types else unknown)[task] += 1
            elif self.tasks is not None and task not in self.tasks:
                self.filtered[task] += 1
            else:
                item = row_to_item(row, task, self.official)
                if self._keep(item):
                    self.loaded[task] += 1
                    items.append(item)
        if unknown:
            raise ValueError(f"synlogic: no checker for task types {dict(unknown.most_common())} (rows); "
                             "list them under task.skip_types to skip them on purpose. Covered: "
                             + ", ".join(TASKS))
        return items

    def _keep(self, item: Item) -> bool:
        """Validate the row's stored answer (``validate`` mode); False drops it."""
        if self.validate == "off":
            return True
        from verifiers.synlogic_validate import validate_row

        task = item.metadata["task"]
        try:
            game = json.loads(item.metadata["game_data_str"])
            status = validate_row(task, game) if isinstance(game, dict) else "broken_answer"
        except ValueError:
            status = "broken_answer"
        self.validation.setdefault(task, Counter())[status] += 1
        return self.validate == "report" or status not in ("broken_answer", "unsolvable")


def score_synlogic(item: Item, completion: str) -> Verdict:
    """Score a SynLogic item from the item alone (also the verl reward path)."""
    task = task_name(item.metadata.get("task", ""))
    found = answer_tag(completion, which="first")
    if found.text is None and task in EMPTY_ANSWER_OK and found.reason.startswith("empty"):
        found = type(found)("")  # "no wrong thought" is an empty answer for this task
    if found.text is None:
        return Verdict(0.0, False, None, found.reason)
    check = CHECKS.get(task)
    official = item.metadata.get("official_verifiers")
    if check is None and not official:
        return Verdict(0.0, False, found.text, f"no verifier for task {task!r}")
    try:
        if official:
            from verifiers.synlogic_official import official_check

            ok, reason = official_check(official, task, found.text, item.metadata.get("game_data_str") or "{}")
            return Verdict(1.0 if ok else 0.0, bool(ok), found.text, reason)
        game = json.loads(item.metadata.get("game_data_str") or "{}")
        if not isinstance(game, dict):
            raise ValueError("game_data_str is not a JSON object")
        game.setdefault("answer", item.answer)
        ok, reason = check(found.text, game)
    except Exception as e:  # malformed answer or row: never raise
        return Verdict(0.0, False, found.text, f"{task}: {type(e).__name__}: {str(e)[:200]}")
    # the arithmetic types that ask math-verify (synlogic_arith.operation) say when it ran out of time
    return Verdict(1.0 if ok else 0.0, bool(ok), found.text, reason,
                   timed_out=str(reason).startswith(TIMED_OUT))


# -- rows -------------------------------------------------------------------------------------
def task_name(data_source: Any) -> str:
    """``val/sudoku`` or ``synlogic/sudoku`` -> ``sudoku``."""
    name = str(data_source).strip().rsplit("/", 1)[-1].lower()
    return ALIASES.get(name, name)


def read_rows(paths: list[str]) -> list[dict]:
    """All rows of the parquet/jsonl files (or directories of them) in ``paths``."""
    rows: list[dict] = []
    for file in _files(paths):
        if file.suffix == ".parquet":
            import pandas as pd

            rows += [_plain(r) for r in pd.read_parquet(file).to_dict("records")]
        else:
            with open(file, encoding="utf-8") as f:
                rows += [json.loads(line) for line in f if line.strip()]
    return rows


def row_to_item(row: Mapping[str, Any], task: str, official: str | None = None) -> Item:
    prompt = row.get("prompt")
    if isinstance(prompt, Sequence) and not isinstance(prompt, str):
        prompt = [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in prompt]
    else:
        prompt = [{"role": "user", "content": str(prompt)}]
    extra = row.get("extra_info") or {}
    game_data_str = extra.get("game_data_str") if isinstance(extra, Mapping) else None
    truth = (row.get("reward_model") or {}).get("ground_truth", "")
    if game_data_str is None:
        game_data_str = json.dumps({"answer": truth, "metadata": {}})
    answer = truth if isinstance(truth, str) else json.dumps(truth)
    digest = hashlib.sha1(prompt_text(prompt).encode()).hexdigest()[:12]
    metadata = {"task": task, "game_data_str": str(game_data_str), "data_source": str(row.get("data_source", task))}
    if official:  # travels with the item, so the verl reward workers use the same verifier
        metadata["official_verifiers"] = official
    return Item(id=f"synlogic-{task}-{digest}", prompt=prompt, answer=answer, metadata=metadata)


def _take(pool: deque[Item], n: int | None, taken: set[str]) -> list[Item]:
    """Remove and return up to ``n`` items (all if None) whose prompts are not taken yet."""
    out = []
    while pool and (n is None or len(out) < n):
        item = pool.popleft()
        key = prompt_text(item.prompt)
        if key not in taken:
            taken.add(key)
            out.append(item)
    return out


def _files(paths: list[str]) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix in (".parquet", ".jsonl"))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"synlogic: no such file or directory: {p}")
    return files


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, (str, Path)) else [str(v) for v in value]


def _plain(value: Any) -> Any:
    """numpy arrays/scalars from a parquet row -> plain python."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
