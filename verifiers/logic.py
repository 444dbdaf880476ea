"""Procedural logic games from reasoning-gym, offline, as one configurable suite (``task=logic``).

A mix in the spirit of SynLogic and Enigmata: each game has a weight and its reasoning-gym
config (the difficulty knobs). Items are generated with ``reasoning_gym.create_dataset``; an
item stores only (game, config, seed, index), from which the puzzle is rebuilt exactly
(reasoning-gym seeds item ``i`` with ``Random(seed + i)``), so the verl reward and any other
process can score it from the item alone.

Splits: ``eval`` items come from indices ``EVAL_OFFSET + i`` and are chosen first, so the eval
set does not move when train/rl sizes change; ``train`` then ``rl`` come from indices
``0, 1, …``, skipping any prompt already taken. No prompt is shared by two splits.

Scoring: the last ``<answer>…</answer>`` after any ``</think>``; correct iff reasoning-gym's
``score_answer`` returns 1.0 (its partial credit, e.g. 0.01 for a wrong countdown, is 0 here).
Deviations from calling ``score_answer`` directly, for safety:
  * n_queens: reasoning-gym ``eval``s non-matching answers (for a 0.5 score); we test membership
    in ``valid_answers`` only, which is exactly its 1.0 branch.
  * countdown: reasoning-gym uses ``sympy.parse_expr`` (``eval`` of model output, unbounded time);
    we evaluate with ``verifiers.arith`` and keep its rule (same multiset of numbers, value
    ``np.isclose`` to the target with atol 1e-6).
  * puzzle24: as countdown, and stricter than reasoning-gym, which truncates the value with
    ``int()`` and never checks that the four numbers are the puzzle's: we require exactly the
    puzzle's numbers and a value of exactly 24.

maj@n groups answers with ``same_answer``: equal strings after ``normalized_answer``
(whitespace and Unicode forms; case kept).
"""
from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from verifiers.arith import ArithError, evaluate
from verifiers.base import SPLITS, Item, Verdict, check_split, normalized_answer
from verifiers.extract import answer_tag

EVAL_OFFSET = 10_000_000
MAX_TRIES_PER_ITEM = 20

PROMPT_TEMPLATE = (
    "{question}\n\n"
    "Think it through, then give your final answer, in exactly the format asked for above, "
    "between <answer> and </answer>."
)

# game -> default reasoning-gym config. Difficulty here is kept modest so that a few hundred
# items build in seconds; raise it per game in conf/task/logic.yaml.
GAMES: dict[str, dict[str, Any]] = {
    "mini_sudoku": {"min_empty": 8, "max_empty": 12},
    "sudoku": {"min_empty": 20, "max_empty": 40},
    "futoshiki": {"min_board_size": 4, "max_board_size": 5, "min_difficulty": 0, "max_difficulty": 1},
    "kakurasu": {"min_rows": 4, "max_rows": 5, "min_cols": 4, "max_cols": 5},
    "knights_knaves": {"n_people": 2, "depth_constraint": 2, "width_constraint": 2},
    "zebra_puzzles": {"num_people": 3, "num_characteristics": 3},
    "survo": {"min_board_size": 4, "max_board_size": 5, "min_empty": 3, "max_empty": 5},
    "n_queens": {"n": 8, "min_remove": 1, "max_remove": 7},
    "maze": {"min_dist": 5, "max_dist": 10, "min_grid_size": 5, "max_grid_size": 10},
    "cryptarithm": {"min_words": 2, "max_words": 3},
    "countdown": {"min_numbers": 3, "max_numbers": 4},
    "puzzle24": {},
    "word_sorting": {"min_words": 3, "max_words": 10},
}


class LogicSuite:
    name = "logic"

    def __init__(
        self,
        seed: int = 0,
        sizes: Mapping[str, int] | None = None,
        games: Mapping[str, Mapping[str, Any] | None] | None = None,
        prompt_template: str = PROMPT_TEMPLATE,
    ) -> None:
        self.seed = int(seed)
        self.sizes = {"train": 256, "rl": 256, "eval": 208, **dict(sizes or {})}
        self.prompt_template = prompt_template
        self.games = _game_specs(games)
        self._pools: dict[str, list[Item]] = {}
        self._taken: set[str] = set()  # prompts already in a split

    # -- items ----------------------------------------------------------------------------
    def items(self, split: str) -> list[Item]:
        check_split(split)
        if split not in self._pools:
            self._build("eval")
            if split != "eval":
                self._build("train+rl")
        return list(self._pools[split])

    def _build(self, which: str) -> None:
        """Draw the eval pool, or (after it) the train and rl pools, game by game."""
        if which == "eval" and "eval" in self._pools:
            return
        weights = {g: w for g, (w, _) in self.games.items()}
        counts = {s: _allocate(self.sizes[s], weights) for s in SPLITS}
        if which == "eval":
            self._taken = set()
            self._pools["eval"] = []
        else:
            self._pools["train"], self._pools["rl"] = [], []
        for game, (_, config) in self.games.items():
            seed = game_seed(self.seed, game)
            if which == "eval":
                self._pools["eval"] += self._draw(game, config, seed, EVAL_OFFSET, counts["eval"][game])
            else:
                n_train = counts["train"][game]
                drawn = self._draw(game, config, seed, 0, n_train + counts["rl"][game])
                self._pools["train"] += drawn[:n_train]
                self._pools["rl"] += drawn[n_train:]

    def _draw(self, game: str, config: dict, seed: int, start: int, n: int) -> list[Item]:
        config_json = json.dumps(config, sort_keys=True)
        out: list[Item] = []
        for index in range(start, start + n * MAX_TRIES_PER_ITEM + 10):
            if len(out) == n:
                break
            entry = rebuild_entry(game, config_json, seed, index)
            prompt = self.prompt_template.format(question=entry["question"])
            if prompt in self._taken:
                continue
            self._taken.add(prompt)
            out.append(Item(
                id=f"logic-{game}-{seed}-{index}",
                prompt=[{"role": "user", "content": prompt}],
                answer=str(entry["answer"]),
                metadata={"game": game, "seed": seed, "index": index, "config": config_json},
            ))
        if len(out) == n:
            return out
        raise ValueError(f"logic/{game}: only {len(out)} distinct puzzles for {n} items; "
                         "widen its difficulty range or lower the split sizes")

    # -- scoring --------------------------------------------------------------------------
    def score(self, item: Item, completion: str) -> Verdict:
        return score_logic(item, completion)

    def same_answer(self, a: str, b: str) -> bool:
        """Equal answer strings after ``normalized_answer`` (whitespace, Unicode forms)."""
        return normalized_answer(a) == normalized_answer(b)


def puzzle(item: Item) -> tuple[dict, Any]:
    """The reasoning-gym entry and dataset object behind a logic item."""
    meta = item.metadata
    seed = int(meta["seed"])
    return (rebuild_entry(meta["game"], meta["config"], seed, int(meta["index"])),
            _dataset(meta["game"], meta["config"], seed))


def score_logic(item: Item, completion: str) -> Verdict:
    """Score a logic item from the item alone (the verl reward calls this in worker processes)."""
    found = answer_tag(completion, which="last")
    if found.text is None:
        return Verdict(0.0, False, None, found.reason)
    try:
        game = item.metadata["game"]
        entry, dataset = puzzle(item)
        if str(entry["answer"]) != item.answer:
            return Verdict(0.0, False, found.text, "item does not match its generator (config/version?)")
        ok = CHECKS.get(game, _rg_check)(found.text, entry, dataset)
    except Exception as e:  # a verifier never raises
        return Verdict(0.0, False, found.text, f"verifier error: {type(e).__name__}: {str(e)[:200]}")
    if ok:
        return Verdict(1.0, True, found.text, "correct")
    return Verdict(0.0, False, found.text, f"wrong answer for {game}")


# -- reasoning-gym access ------------------------------------------------------------------
@lru_cache(maxsize=256)
def _dataset(game: str, config_json: str, seed: int):
    import reasoning_gym

    return reasoning_gym.create_dataset(game, size=1, seed=seed, **json.loads(config_json))


@lru_cache(maxsize=8192)
def rebuild_entry(game: str, config_json: str, seed: int, index: int) -> dict:
    """The reasoning-gym entry ``index`` of ``game`` (deterministic in its arguments)."""
    return _dataset(game, config_json, seed)[index]


def game_seed(seed: int, game: str) -> int:
    """A per-game seed, far from the other games' (reasoning-gym uses ``seed + index``)."""
    return (zlib.crc32(f"{seed}:{game}".encode()) * 1_000_003 + seed) % (2**31)


# -- checkers: (answer, entry, dataset) -> bool ------------------------------------------
def _rg_check(answer: str, entry: dict, dataset) -> bool:
    return dataset.score_answer(answer, entry) == 1.0


def _n_queens(answer: str, entry: dict, dataset) -> bool:
    return answer in entry["metadata"]["valid_answers"]


_INT = re.compile(r"\b\d+\b")


def _countdown(answer: str, entry: dict, dataset) -> bool:
    try:
        value = evaluate(answer)
    except ArithError:
        return False
    used = sorted(int(m) for m in _INT.findall(answer))
    target = entry["metadata"]["target"]
    # np.isclose(value, target, atol=1e-6) with its default rtol=1e-5, as reasoning-gym does
    return used == sorted(entry["metadata"]["numbers"]) and abs(value - target) <= 1e-6 + 1e-5 * abs(target)


def _puzzle24(answer: str, entry: dict, dataset) -> bool:
    try:
        value = evaluate(answer)
    except ArithError:
        return False
    used = sorted(int(m) for m in _INT.findall(answer))
    return value == 24 and used == sorted(entry["metadata"]["numbers"])


CHECKS: dict[str, Callable[[str, dict, Any], bool]] = {
    "n_queens": _n_queens,
    "countdown": _countdown,
    "puzzle24": _puzzle24,
}


# -- config helpers ------------------------------------------------------------------------
def _game_specs(games: Mapping[str, Mapping[str, Any] | None] | None) -> dict[str, tuple[float, dict]]:
    """``{game: {weight: w, config: {...}}}`` -> ``{game: (w, full config)}``, weight > 0 only."""
    if games is None:
        games = {g: {} for g in GAMES}
    specs = {}
    for game, spec in dict(games).items():
        spec = dict(spec or {})
        unknown = set(spec) - {"weight", "config"}
        if unknown:
            raise ValueError(f"logic/{game}: unknown keys {sorted(unknown)}; use weight and config")
        weight = float(spec.get("weight", 1.0))
        if weight <= 0:
            continue
        config = {**GAMES.get(game, {}), **dict(spec.get("config") or {})}
        _check_game(game, config)
        specs[game] = (weight, _plain(config))
    if not specs:
        raise ValueError("logic suite: no game with weight > 0")
    return specs


def _check_game(game: str, config: dict) -> None:
    from reasoning_gym.factory import DATASETS

    if game not in DATASETS:
        raise ValueError(f"logic: unknown reasoning-gym game {game!r}; known games include {', '.join(GAMES)}")
    import dataclasses

    fields = {f.name for f in dataclasses.fields(DATASETS[game][1])} - {"seed", "size"}
    unknown = set(config) - fields
    if unknown:
        raise ValueError(f"logic/{game}: unknown config keys {sorted(unknown)}; valid: {sorted(fields)}")


def _plain(value: Any) -> Any:
    """OmegaConf containers and tuples -> plain JSON-able python."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def _allocate(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``total`` items over games in proportion to weight (largest remainder, stable)."""
    wsum = sum(weights.values())
    raw = {g: total * w / wsum for g, w in weights.items()}
    counts = {g: int(r) for g, r in raw.items()}
    for g in sorted(raw, key=lambda g: (counts[g] - raw[g], list(weights).index(g)))[: total - sum(counts.values())]:
        counts[g] += 1
    return counts


__all__ = ["GAMES", "LogicSuite", "PROMPT_TEMPLATE", "puzzle", "rebuild_entry", "score_logic"]
