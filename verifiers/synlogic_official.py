"""SynLogic's own verifier classes, imported at run time from the user's checkout of SynLogic.

``task.official_verifiers: /path/to/SynLogic`` (or the ``SYNLOGIC_VERIFIERS`` environment
variable, read by ``conf/task/synlogic.yaml``) makes the suite score with exactly the paper's
reward: for each task type, the ``Verifier`` subclass in the checkout's
``games/tasks/<task>/scripts/*_verifier.py`` is called as SynLogic's reward calls it,
``verifier.verify(Data.from_json_str(game_data_str), answer)``, with ``answer`` the text of the
first ``<answer>…</answer>`` after the last ``</think>`` (the same text our checkers get).
Nothing of SynLogic is copied into this repository; without a checkout our native checkers
(``verifiers.synlogic_checks``) are used.

Caution: several of SynLogic's verifiers call Python's ``eval`` on the model's text
(game_of_24, math_path, cipher, goods_exchange, arrow_maze) and print to stdout; this route
runs their code as it is (stdout is silenced here). Use it to reproduce the paper's reward,
not on completions you do not trust.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import sys
import threading
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()
_CACHE: dict[tuple[str, str], Any] = {}
_ACTIVE: list[str] = []  # the checkout whose ``base`` and ``games`` packages are imported now


def checkout_root(path: str | Path) -> Path:
    root = Path(path).expanduser().resolve()
    if not (root / "base" / "verifier.py").is_file() or not (root / "games" / "tasks").is_dir():
        raise FileNotFoundError(f"synlogic: {root} is not a checkout of MiniMax-AI/SynLogic "
                                "(expected base/verifier.py and games/tasks/)")
    return root


def official_tasks(path: str | Path) -> list[str]:
    """The task types whose verifier the checkout holds."""
    root = checkout_root(path)
    return sorted(d.name for d in (root / "games" / "tasks").iterdir() if _verifier_file(d) is not None)


def _verifier_file(task_dir: Path) -> Path | None:
    """``<task>_verifier.py`` if present, else the one ``*_verifier.py`` that is not a test."""
    exact = task_dir / "scripts" / f"{task_dir.name}_verifier.py"
    if exact.is_file():
        return exact
    files = sorted(f for f in (task_dir / "scripts").glob("*_verifier.py") if "test" not in f.name)
    return files[0] if files else None


def official_verifier(path: str | Path, task: str) -> Any:
    """An instance of SynLogic's verifier class for ``task`` (cached per checkout and task)."""
    root = checkout_root(path)
    key = (str(root), task)
    with _LOCK:
        if key not in _CACHE:
            file = _verifier_file(root / "games" / "tasks" / task)
            if file is None:
                raise KeyError(f"synlogic checkout {root} has no verifier for task {task!r}")
            _activate(str(root))
            base = importlib.import_module("base.verifier").Verifier
            module = importlib.import_module(f"games.tasks.{task}.scripts.{file.stem}")
            classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
                       if issubclass(c, base) and c is not base and c.__module__ == module.__name__]
            if not classes:
                raise KeyError(f"{file} defines no Verifier subclass")
            _CACHE[key] = classes[0]()
            _CACHE[(str(root), "base.data")] = importlib.import_module("base.data").Data
        return _CACHE[key]


def _activate(root: str) -> None:
    """Put ``root`` first on the import path; forget the packages of another checkout imported before."""
    if _ACTIVE and _ACTIVE[0] != root:
        for name in [m for m in sys.modules if m.split(".")[0] in ("base", "games")]:
            del sys.modules[name]
        if _ACTIVE[0] in sys.path:
            sys.path.remove(_ACTIVE[0])
    _ACTIVE[:] = [root]
    if root not in sys.path:
        sys.path.insert(0, root)


def official_check(path: str | Path, task: str, answer: str, game_data_str: str) -> tuple[bool, str]:
    """``(correct, reason)`` from SynLogic's own verifier for one answer."""
    verifier = official_verifier(path, task)
    data_cls = _CACHE[(str(checkout_root(path)), "base.data")]
    with contextlib.redirect_stdout(io.StringIO()):
        data = data_cls.from_json_str(game_data_str)
        verdict = verifier.verify(data, answer)
    ok = bool(verdict) and float(verdict) > 0
    return ok, "correct" if ok else "SynLogic verifier: wrong"
