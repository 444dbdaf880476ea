"""Task suites behind one protocol (``verifiers.base``), registered by name.

``build_suite(task_cfg)`` turns a ``conf/task/*.yaml`` mapping into a suite; ``SUITES`` maps a
suite name to its factory. Adding a suite = one module here + one entry in ``SUITES`` + one
``conf/task/<name>.yaml``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from verifiers.base import SPLITS, Item, Suite, Verdict


def _toy(**kw: Any) -> Suite:
    from verifiers.toy import ToySuite

    return ToySuite(**kw)


def _logic(**kw: Any) -> Suite:
    from verifiers.logic import LogicSuite

    return LogicSuite(**kw)


def _synlogic(**kw: Any) -> Suite:
    from verifiers.synlogic import SynLogicSuite

    return SynLogicSuite(**kw)


def _math(**kw: Any) -> Suite:
    from verifiers.math_suite import MathSuite

    return MathSuite(**kw)


# name -> factory(**task params). Imports stay lazy so that a suite's heavy dependency
# (reasoning-gym, math-verify) is only imported when that suite is used.
SUITES: dict[str, Callable[..., Suite]] = {
    "toy": _toy,
    "logic": _logic,
    "synlogic": _synlogic,
    "math": _math,
}


def describe() -> dict[str, list[str]]:
    """Each registered suite and its games / task types / sources, for ``python -m pipeline ls``."""
    from verifiers.logic import GAMES
    from verifiers.math_suite import DATASETS
    from verifiers.synlogic_checks import CHECKS

    return {
        "toy": ["arithmetic chains (offline toy world)"],
        "logic": sorted(GAMES),
        "synlogic": sorted(CHECKS),
        "math": ["builtin", *sorted(k for k in DATASETS if k != "jsonl"), "jsonl (any, fields configurable)"],
    }


class ChatSuite:
    """A suite whose plain-text prompts are sent as one user message (``task.chat: true``).

    Chat and instruction-tuned models (Qwen3-8B as the behavior policy) expect their chat
    template; the engines apply it to chat prompts. Scoring is the wrapped suite's, unchanged.
    """

    def __init__(self, suite: Suite, system: str | None = None) -> None:
        self.suite, self.system, self.name = suite, system, suite.name

    def _chat(self, item: Item) -> Item:
        if not isinstance(item.prompt, str):
            return item
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return replace(item, prompt=[*msgs, {"role": "user", "content": item.prompt}])

    def items(self, split: str) -> list[Item]:
        return [self._chat(it) for it in self.suite.items(split)]

    def score(self, item: Item, completion: str) -> Verdict:
        return self.suite.score(item, completion)

    def __getattr__(self, name: str) -> Any:  # suite-specific extras (pretrain_items, skipped...)
        return getattr(self.suite, name)


def build_suite(task_cfg: Mapping[str, Any]) -> Suite:
    """Build the suite named by ``task_cfg["suite"]`` with the rest of the mapping as params.

    ``chat: true`` (and optional ``system``) wraps plain-text prompts as chat messages.
    """
    params = {k: v for k, v in dict(task_cfg).items() if k not in ("suite", "name", "chat", "system")}
    name = task_cfg.get("suite", task_cfg.get("name"))
    if name not in SUITES:
        raise ValueError(f"unknown task suite {name!r}; valid suites: {', '.join(sorted(SUITES))}")
    suite = SUITES[name](**params)
    if task_cfg.get("chat"):
        return ChatSuite(suite, task_cfg.get("system"))
    return suite


__all__ = ["SPLITS", "SUITES", "Item", "Suite", "Verdict", "build_suite", "describe"]
