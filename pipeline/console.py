"""What a run prints while it runs: stage lines, progress of the running stages, their notes.

Each running stage writes its progress bar and its notes (``resumed from checkpoint-100``) to a
small file in its work directory (``stages/progress.py``); a thread of the driver reads the
files of the running stages once a second, the same for Ray tasks and inline stages:

* on a terminal (stdout is a tty and ``PIPELINE_PROGRESS`` is not ``0``): a block under the
  stage lines with one line for the run (stages finished / total, elapsed, estimate) and one
  bar per running stage; a stage's bar goes when the stage ends;
* otherwise (``| tee``, CI, ``nohup``): every ``progress.heartbeat_s`` seconds one line per
  running stage (percent, rate, estimate) and one for the run.

Notes print as ``[stage] note`` lines in both modes. The run's estimate weighs each stage by its
typical duration (the median of earlier outputs of the same stage type under the experiment,
and of this run's finished ones; a type with none yet counts as its ``STAGE_COST``, scaled to the
known types), and scales the elapsed time by the work left over the work done.
"""
from __future__ import annotations

import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pipeline.cache import read_manifest
from pipeline.dag import STAGE_COST
from stages.progress import CHANNEL_FILE, read_channel

#: seconds between two looks at the running stages' files (and redraws on a terminal)
POLL_S = 1.0


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def bar_numbers(bar: dict[str, Any]) -> tuple[float | None, float | None]:
    """(rate in units/s, seconds left) of a channel bar, from the stage's own clock; None where
    unknown (no progress since it started, no total)."""
    elapsed = bar["updated"] - bar["started"]
    done = bar["n"] - bar.get("initial", 0)
    if elapsed <= 0 or done <= 0:
        return None, None
    rate = done / elapsed
    left = (bar["total"] - bar["n"]) / rate if bar.get("total") else None
    return rate, left


def heartbeat_line(nid: str, bar: dict[str, Any] | None, running_s: float) -> str:
    """``[sft[sft]] 45% (90/200 step), 1.3 step/s, ~1m25s left``."""
    if not bar:
        return f"[{nid}] running for {duration(running_s)}"
    rate, left = bar_numbers(bar)
    unit, n, total = bar["unit"], bar["n"], bar.get("total")
    head = f"{100 * n / total:.0f}% ({n}/{total} {unit})" if total else f"{n} {unit}"
    parts = [f"[{nid}] {head}"]
    if rate is not None:
        parts.append(f"{rate:.3g} {unit}/s")
    if left is not None:
        parts.append(f"~{duration(left)} left")
    return ", ".join(parts)


def typical_seconds(root: Path, stages: set[str], limit: int = 50) -> dict[str, list[float]]:
    """Seconds of earlier outputs of each stage type under ``root`` (their manifests)."""
    out: dict[str, list[float]] = {}
    for stage in stages:
        for m in sorted((Path(root) / stage).glob("*/manifest.json"))[:limit]:
            try:
                out.setdefault(stage, []).append(float(read_manifest(m.parent)["timings"]["seconds"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return out


def estimate_left(work: list[tuple[str, str, float]], seconds: dict[str, list[float]],
                  elapsed: float, prior: dict[str, float] | None = None) -> float | None:
    """Seconds left for the run. ``work``: (stage type, "pending"|"running"|"finished",
    fraction done) of every stage this run computes; ``seconds``: known durations per type;
    ``prior``: typical relative costs per type (``STAGE_COST``) for the types with no known
    duration, scaled to the known ones where both exist."""
    known = {s: statistics.median(v) for s, v in seconds.items() if v}
    prior = {s: float(c) for s, c in (prior or {}).items() if c > 0}
    both = [known[s] / prior[s] for s in known if s in prior]
    scale = statistics.median(both) if both else 1.0
    fallback = statistics.mean(known.values()) if known else 1.0
    done = left = 0.0
    for stage, state, frac in work:
        w = known[stage] if stage in known else prior[stage] * scale if stage in prior else fallback
        frac = 1.0 if state == "finished" else (min(max(frac, 0.0), 1.0) if state == "running" else 0.0)
        done += w * frac
        left += w * (1 - frac)
    if done <= 0 or elapsed <= 0:
        return None
    return elapsed * left / done


class Console:
    """The driver's console for one run of ``todo`` (node ids) of ``dag``.

    ``states`` is the run's node -> state dict (the runner fills it); every line goes through
    :meth:`line` (also from the runner), which keeps the terminal block below the lines.
    """

    def __init__(self, dag: Any, todo: list[str], states: dict[str, str], echo: Callable[[str], None],
                 bars: bool, heartbeat_s: float = 60.0, stream: Any = None) -> None:
        self.dag, self.todo, self.states, self.echo = dag, list(todo), states, echo
        self.bars, self.heartbeat_s = bars, float(heartbeat_s)
        self.stream = stream or sys.stdout
        self.running: dict[str, float] = {}          # node -> when it started
        self.printed: dict[str, set[str]] = {}       # node -> notes shown
        self.seconds = typical_seconds(dag.root, {dag.nodes[n].stage for n in todo})
        self.started = self.last_beat = time.time()
        self.lock = threading.RLock()
        self.block = 0                               # lines of the terminal block on screen
        self.poll_s = POLL_S if bars else min(POLL_S, max(0.05, self.heartbeat_s))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lines -------------------------------------------------------------------------------
    def line(self, s: str) -> None:
        with self.lock:
            self._clear()
            self.echo(s)
            self._draw()

    def start(self, nid: str) -> None:
        (self.dag.dir(nid).work / CHANNEL_FILE).unlink(missing_ok=True)  # an earlier run's
        with self.lock:
            self.running[nid] = time.time()
            self.printed[nid] = set()
        self.line(f"[{nid}] started")

    def end(self, nid: str, notes: list[str] | None = None, seconds: float | None = None) -> None:
        """``nid`` stopped running: show the notes it left (those in its result too)."""
        with self.lock:
            state = self._read(nid)
            self._notes(nid, [*(state or {}).get("notes", []), *(notes or [])])
            self.running.pop(nid, None)
            if seconds:
                self.seconds.setdefault(self.dag.nodes[nid].stage, []).append(seconds)

    # --- polling -------------------------------------------------------------------------------
    def __enter__(self) -> "Console":
        self._thread = threading.Thread(target=self._loop, name="console", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self.lock:
            self._clear()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.tick()
            except Exception as e:  # the console never stops a run
                self.echo(f"[console] {type(e).__name__}: {e}")

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.lock:
            states = {nid: self._read(nid) for nid in self.running}
            for nid, st in states.items():
                self._notes(nid, (st or {}).get("notes", []))
            if self.bars:
                self._clear()
                self._draw(states, now)
            elif now - self.last_beat >= self.heartbeat_s:
                self.last_beat = now
                for nid, st in states.items():
                    self.echo(heartbeat_line(nid, (st or {}).get("bar"), now - self.running[nid]))
                self.echo(f"[run] {self.overall(states, now)}")

    def overall(self, states: dict[str, dict | None], now: float) -> str:
        """``7/22 stages finished (5 cached), 3 running, 5m12s elapsed, ~14m left``."""
        total = len(self.dag.nodes)
        fin = sum(self.states.get(n) in ("done", "cached", "failed", "skipped") for n in self.dag.nodes)
        cached = sum(self.states.get(n) == "cached" for n in self.dag.nodes)
        work = []
        for nid in self.todo:
            st = self.states.get(nid)
            if st == "skipped":
                continue
            bar = (states.get(nid) or {}).get("bar") if nid in self.running else None
            frac = 0.0  # of what this run computes: a resumed stage's earlier work is left out
            if bar and bar.get("total") and bar["total"] > bar.get("initial", 0):
                frac = (bar["n"] - bar.get("initial", 0)) / (bar["total"] - bar.get("initial", 0))
            work.append((self.dag.nodes[nid].stage,
                         "finished" if st in ("done", "failed") else
                         "running" if nid in self.running else "pending", frac))
        left = estimate_left(work, self.seconds, now - self.started, STAGE_COST)
        parts = [f"{fin}/{total} stages finished" + (f" ({cached} cached)" if cached else ""),
                 f"{len(self.running)} running", f"{duration(now - self.started)} elapsed"]
        parts.append(f"~{duration(left)} left" if left is not None else "no estimate yet")
        return ", ".join(parts)

    def _read(self, nid: str) -> dict | None:
        return read_channel(self.dag.dir(nid).work / CHANNEL_FILE)

    def _notes(self, nid: str, notes: list[str]) -> None:
        seen = self.printed.setdefault(nid, set())
        for msg in notes:
            if msg not in seen:
                seen.add(msg)
                self._clear()
                self.echo(f"[{nid}] {msg}")

    # --- the terminal block --------------------------------------------------------------------
    def _clear(self) -> None:
        if self.bars and self.block:
            self.stream.write(f"\x1b[{self.block}A\r\x1b[J")
            self.stream.flush()
            self.block = 0

    def _draw(self, states: dict[str, dict | None] | None = None, now: float | None = None) -> None:
        if not self.bars or not (self.running or self.states):
            return
        from tqdm import tqdm

        now = time.time() if now is None else now
        if states is None:
            states = {nid: self._read(nid) for nid in self.running}
        width = max(40, shutil.get_terminal_size((100, 20)).columns - 1)
        rows = [self.overall(states, now)]
        for nid in self.running:
            bar = (states.get(nid) or {}).get("bar")
            if bar and bar.get("total"):
                rate, _ = bar_numbers(bar)
                rows.append(tqdm.format_meter(bar["n"], bar["total"], bar["updated"] - bar["started"],
                                              ncols=width, prefix=f"  {nid}", unit=bar["unit"],
                                              rate=rate, initial=bar.get("initial", 0)))
            else:
                rows.append(heartbeat_line(nid, bar, now - self.running[nid])[:width])
        self.stream.write("".join(r[:width] + "\n" for r in rows))
        self.stream.flush()
        self.block = len(rows)
