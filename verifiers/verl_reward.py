"""The suites as verl's custom reward, and a suite's split as a verl RL parquet.

Point verl at this file::

    reward.custom_reward_function.path=<repo>/verifiers/verl_reward.py
    reward.custom_reward_function.name=compute_score
    data.train_files=<out>/rl.parquet   # written by write_verl_parquet(suite, "rl", …)

``write_verl_parquet`` writes verl's RL schema (``examples/data_preprocess/gsm8k.py``):
``data_source`` (``<suite>/<game>``), ``prompt`` (chat list), ``ability``,
``reward_model {style: rule, ground_truth}`` and ``extra_info {split, index, suite, item_id,
metadata}``, where ``metadata`` is the item's metadata as a JSON string: with the ground truth,
all that ``compute_score`` needs to rebuild the item and pick its suite's verifier.

``compute_score`` also accepts rows exported by SynLogic itself (``data_source`` = task name,
maybe ``val/``-prefixed, and ``extra_info.game_data_str``). verl 0.9.1 calls it from a thread
pool (``run_in_executor``), which is why the math verifier never relies on ``signal``.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # verl loads this file by path: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verifiers import SUITES, build_suite  # noqa: E402
from verifiers.base import Item, Suite, Verdict  # noqa: E402

ABILITY = {"toy": "arithmetic", "logic": "logic", "synlogic": "logic", "math": "math"}


def compute_score(data_source: str, solution_str: str, ground_truth: Any,
                  extra_info: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, float]:
    """verl's custom reward: ``{"score": reward, "acc": correct}``; never raises."""
    try:
        suite, item = item_from_row(data_source, ground_truth, extra_info or {})
        verdict = _scorer(suite)(item, solution_str)
    except Exception:  # a malformed row: no reward, but never crash the trainer
        verdict = Verdict(0.0, False, None, "malformed row")
    return {"score": float(verdict.reward), "acc": float(verdict.correct)}


def item_from_row(data_source: str, ground_truth: Any, extra_info: Mapping[str, Any]) -> tuple[str, Item]:
    """The suite name and the item of one verl row (ours, or SynLogic's own)."""
    answer = ground_truth if isinstance(ground_truth, str) else json.dumps(ground_truth)
    suite = extra_info.get("suite") or str(data_source).split("/", 1)[0]
    if suite in SUITES and "metadata" in extra_info:
        meta = extra_info["metadata"]
        meta = json.loads(meta) if isinstance(meta, str) else dict(meta)
        return suite, Item(str(extra_info.get("item_id", "")), "", answer, meta)
    if "game_data_str" in extra_info:  # a row exported by SynLogic
        from verifiers.synlogic import task_name

        meta = {"task": task_name(data_source), "game_data_str": extra_info["game_data_str"]}
        return "synlogic", Item("", "", answer, meta)
    if suite == "toy":
        return suite, Item("", "", answer, {})
    raise ValueError(f"cannot tell the suite of data_source={data_source!r}")


_SCORERS: dict[str, Callable[[Item, str], Verdict]] = {}


def _scorer(suite: str) -> Callable[[Item, str], Verdict]:
    if suite not in _SCORERS:
        if suite == "logic":
            from verifiers.logic import score_logic as fn
        elif suite == "synlogic":
            from verifiers.synlogic import score_synlogic as fn
        elif suite == "math":
            from verifiers.math_suite import score_math as fn
        elif suite == "toy":
            from verifiers.toy import ToySuite

            fn = ToySuite().score  # stateless: scores from item.answer only
        else:
            raise ValueError(f"unknown suite {suite!r}")
        _SCORERS[suite] = fn
    return _SCORERS[suite]


def verl_row(suite: str, split: str, index: int, item: Item) -> dict[str, Any]:
    """One row of verl's RL schema for ``item``."""
    prompt = item.prompt if isinstance(item.prompt, list) else [{"role": "user", "content": item.prompt}]
    sub = item.metadata.get("game") or item.metadata.get("task") or item.metadata.get("source")
    extra = {"split": split, "index": index, "suite": suite, "item_id": item.id,
             "metadata": json.dumps(item.metadata, sort_keys=True)}
    if "game_data_str" in item.metadata:  # also readable by SynLogic's own reward code
        extra["game_data_str"] = item.metadata["game_data_str"]
    return {
        "data_source": f"{suite}/{sub}" if sub else suite,
        "prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
        "ability": ABILITY.get(suite, suite),
        "reward_model": {"style": "rule", "ground_truth": item.answer},
        "extra_info": extra,
    }


def write_verl_parquet(suite: Suite | str, split: str, path: str | Path,
                       suite_cfg: Mapping[str, Any] | None = None) -> int:
    """Write ``suite``'s ``split`` to ``path`` in verl's RL schema; returns the row count.

    ``suite`` is a suite object or a registered name (then built from ``suite_cfg``)."""
    import pandas as pd

    if isinstance(suite, str):
        suite = build_suite({**dict(suite_cfg or {}), "suite": suite})
    rows = [verl_row(suite.name, split, i, item) for i, item in enumerate(suite.items(split))]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return len(rows)
