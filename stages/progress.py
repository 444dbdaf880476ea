"""Progress bars and console notes of a running stage.

A stage draws progress with :func:`progress` (the tqdm API subset: iterate, ``update``,
``close``; ``initial`` for work already done before a resume) and says what the user should see
on the console with :func:`note` (where it resumed: a shard, a checkpoint). Where they go is the
caller's choice:

* under the pipeline (``pipeline/execute.py``) the stage's :class:`Channel`: a small JSON file in
  its work directory (``console.json``) that the driver polls and draws (``pipeline/console.py``),
  the same whether the stage runs in a Ray worker or in the driver's own process;
* a factory set with :func:`set_progress_factory` (the ranks of a multi-process SFT send theirs
  to the stage process, ``stages/sft_worker.py``);
* otherwise (a plain call: tests, a notebook) a tqdm bar on stderr and a printed line.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

#: the channel's file name inside a stage's work directory
CHANNEL_FILE = "console.json"
#: least seconds between two writes of a moving bar (a new bar, a note or a close: at once)
WRITE_EVERY_S = 0.5

_progress_factory: Callable[..., Any] | None = None
_channel: "Channel | None" = None
_note_sink: Callable[[str], None] | None = None


def set_progress_factory(factory: Callable[..., Any] | None) -> None:
    """Draw bars with ``factory(iterable, desc=, total=, unit=, initial=)`` (None: the default)."""
    global _progress_factory
    _progress_factory = factory


def set_note_sink(sink: Callable[[str], None] | None) -> None:
    """Send :func:`note` lines to ``sink`` instead of printing them (None: print)."""
    global _note_sink
    _note_sink = sink


class Channel:
    """One stage's progress and notes for the driver, in ``path`` (written atomically).

    The file holds ``{"attempt", "bar": {desc, unit, n, total, initial, started, updated,
    closed}, "notes": [...]}``: the latest bar the stage drew and every note so far. A write that
    fails (disk full, directory gone) is dropped: progress never fails a stage.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.attempt = f"{os.getpid()}-{time.time():.3f}"
        self.bar: dict[str, Any] | None = None
        self.notes: list[str] = []
        self._written = 0.0
        self._lock = threading.Lock()
        self.write(force=True)

    def note(self, msg: str) -> None:
        print(f"[note] {msg}", flush=True)  # the stage's log
        with self._lock:
            self.notes.append(msg)
        self.write(force=True)

    def show(self, bar: dict[str, Any], force: bool = False) -> None:
        with self._lock:
            self.bar = bar
        self.write(force)

    def write(self, force: bool = False) -> None:
        now = time.time()
        with self._lock:
            if not force and now - self._written < WRITE_EVERY_S:
                return
            self._written = now
            state = {"attempt": self.attempt, "bar": dict(self.bar) if self.bar else None,
                     "notes": list(self.notes)}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.path)
        except OSError:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def read_channel(path: str | Path) -> dict[str, Any] | None:
    """A channel file's state, or None if there is none (yet) or it cannot be read."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def set_channel(channel: Channel | None) -> None:
    """Route :func:`progress` and :func:`note` to ``channel`` (None: back to the defaults)."""
    global _channel
    _channel = channel


class _ChannelBar:
    """A bar whose state goes to the stage's channel."""

    def __init__(self, channel: Channel, iterable: Iterable | None, desc: str, total: int | None,
                 unit: str, initial: int) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.channel, self.iterable = channel, iterable
        now = time.time()
        self.state = {"desc": desc, "unit": unit, "n": initial, "total": total,
                      "initial": initial, "started": now, "updated": now, "closed": False}
        channel.show(dict(self.state), force=True)

    def __iter__(self):
        try:
            for x in self.iterable:
                yield x
                self.update(1)
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.state["n"] += n
        self.state["updated"] = time.time()
        self.channel.show(dict(self.state))

    def close(self) -> None:
        if not self.state["closed"]:
            self.state["closed"] = True
            self.channel.show(dict(self.state), force=True)


class _NoBar:
    """A progress bar that draws nothing."""

    def __init__(self, iterable=None, **kw):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def no_progress(iterable: Iterable | None = None, **kw) -> _NoBar:
    return _NoBar(iterable)


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "",
             unit: str = "it", initial: int = 0):
    """A progress bar (tqdm API subset: iterate, ``update``, ``close``). ``initial``: units done
    before this run (a resume), left out of the rate and the estimate."""
    if _progress_factory is not None:
        return _progress_factory(iterable, desc=desc, total=total, unit=unit, initial=initial)
    if _channel is not None:
        return _ChannelBar(_channel, iterable, desc, total, unit, initial)
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, file=sys.__stderr__,
                mininterval=1.0, leave=False, dynamic_ncols=True)


def note(msg: str) -> None:
    """A line the console shows under the stage's name (e.g. ``resumed from checkpoint-100``);
    also written to the stage's log."""
    if _note_sink is not None:
        _note_sink(msg)
    elif _channel is not None:
        _channel.note(msg)
    else:
        print(f"[note] {msg}", flush=True)


def trainer_progress(desc: str, total: int):
    """A ``TrainerCallback`` that draws a ``progress`` bar of optimizer steps (resume-aware)."""
    from transformers import TrainerCallback

    class Bar(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.bar = progress(total=total, desc=desc, unit="step", initial=state.global_step)

        def on_step_end(self, args, state, control, **kw):
            self.bar.update(1)

        def on_train_end(self, args, state, control, **kw):
            self.bar.close()

    return Bar()
