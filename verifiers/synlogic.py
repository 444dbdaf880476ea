"""SynLogic rows exported from the hub (``MiniMaxAI/SynLogic``), read from local files (``task=synlogic``).

Rows are in SynLogic's verl-style schema: ``data_source`` (the task; validation rows may carry a
``val/`` prefix), ``prompt`` (chat list), ``ability``, ``reward_model.ground_truth`` and
``extra_info.game_data_str`` (a JSON record ``{question, answer, difficulty, metadata}``). Files
are parquet or jsonl; a directory means every such file in it.

Only task types with a native checker (``verifiers.synlogic_checks.CHECKS``) become items. The
others are skipped and counted, with one warning listing the types and counts, never scored 0.

Splits: ``eval`` comes from ``eval_path`` if given, else it is drawn first from the shuffled
pool; ``train`` then ``rl`` are drawn from what remains. A prompt appears in one split only.
A size of ``null`` takes all that remain.

Scoring follows SynLogic's reward: the answer is the first ``<answer>…</answer>`` after the
last ``</think>``, then the task's checker (SynLogic's ``reward_example`` takes the first
``<answer>`` anywhere, its base verifier the first after the first ``</think>``).
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
from verifiers.synlogic_checks import CHECKS

log = logging.getLogger(__name__)

TASKS = tuple(CHECKS)
ALIASES = {"skyscraper": "skyscraper_puzzle", "star_placement": "star_placement_puzzle",
           "dyck_languages": "dyck_language"}


class SynLogicSuite:
    name = "synlogic"

    def __init__(
        self,
        path: str | Sequence[str] | None = None,
        eval_path: str | Sequence[str] | None = None,
        seed: int = 0,
        sizes: Mapping[str, int | None] | None = None,
        tasks: Sequence[str] | None = None,
    ) -> None:
        self.paths = _as_list(path)
        self.eval_paths = _as_list(eval_path)
        self.seed = int(seed)
        self.sizes = {"train": 2048, "rl": None, "eval": 512, **dict(sizes or {})}
        self.tasks = None if tasks is None else [task_name(t) for t in tasks]
        unknown = set(self.tasks or ()) - set(TASKS)
        if unknown:
            raise ValueError(f"synlogic: no verifier for tasks {sorted(unknown)}; covered: {', '.join(TASKS)}")
        self.skipped: Counter[str] = Counter()
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
            log.warning("synlogic: skipped %d rows of task types without a verifier (%s)",
                        sum(self.skipped.values()), counts)
        return pools

    def _load(self, paths: list[str]) -> list[Item]:
        items = []
        for row in read_rows(paths):
            task = task_name(row.get("data_source", ""))
            if task not in CHECKS or (self.tasks is not None and task not in self.tasks):
                if task not in CHECKS:
                    self.skipped[task] += 1
                continue
            items.append(row_to_item(row, task))
        return items


def score_synlogic(item: Item, completion: str) -> Verdict:
    """Score a SynLogic item from the item alone (also the verl reward path)."""
    found = answer_tag(completion, which="first")
    if found.text is None:
        return Verdict(0.0, False, None, found.reason)
    task = task_name(item.metadata.get("task", ""))
    check = CHECKS.get(task)
    if check is None:
        return Verdict(0.0, False, found.text, f"no verifier for task {task!r}")
    try:
        game = json.loads(item.metadata.get("game_data_str") or "{}")
        if not isinstance(game, dict):
            raise ValueError("game_data_str is not a JSON object")
        game.setdefault("answer", item.answer)
        ok, reason = check(found.text, game)
    except Exception as e:  # malformed answer or row: never raise
        return Verdict(0.0, False, found.text, f"{task}: {type(e).__name__}: {str(e)[:200]}")
    return Verdict(1.0 if ok else 0.0, bool(ok), found.text, reason)


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


def row_to_item(row: Mapping[str, Any], task: str) -> Item:
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
    return Item(id=f"synlogic-{task}-{digest}", prompt=prompt, answer=answer,
                metadata={"task": task, "game_data_str": str(game_data_str),
                          "data_source": str(row.get("data_source", task))})


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
