"""Judge many (item, completion) pairs with the task's verifier: on a pool of processes, results in
input order, timed-out answers judged once more under a longer bound.

The verify stage judges every behavior response (the paper's math study: ~200k) and eval every
sample; one loop on one core takes hours there. :class:`Judge` spreads the pairs over
``workers`` processes (``concurrent.futures.ProcessPoolExecutor`` with the ``spawn`` context:
it starts the same way in a Ray worker, in a thread and in a plain script, and never forks a
process that holds threads). Each process builds the suite from the task config once and
judges chunks of pairs; ``Executor.map`` returns the chunks in input order, and each verdict
depends on its pair only, so the result is the one a loop in this process gives (``workers=1``
is that loop). math-verify runs in the main thread of its own worker processes
(``verifiers/mathbox.py``): its time bounds hold in a pool process as anywhere else.

Timeouts: a judgement that runs out of time (``Verdict.timed_out``: math-verify under
``timeout_s``) is judged once more under ``retry_timeout_s``; ``timeouts()`` counts them per
suite (``first_try``, ``recovered``, ``after_retry``), for the verify manifest, eval's
``metrics.json`` and the report. What still times out stays wrong with ``timed_out`` set.
"""
from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from verifiers import build_suite
from verifiers.base import Item, Verdict
from verifiers.mathbox import DEFAULT_TIMEOUT_S, mathbox, time_bound

CHUNK = 64  # pairs per task sent to a pool process (at most; fewer when there are few pairs)
POOL_MIN = 256  # fewer pairs than this are judged in this process: starting the pool costs more
RETRY_TIMEOUT_S = 10.0

Pair = tuple[Item, str]


def stage_cpus() -> int:
    """The CPUs the running stage holds: the pipeline sets ``OMP_NUM_THREADS`` to its task's
    ``num_cpus`` (``pipeline/execute.py``); 1 when it is not set (a stage called as a function)."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS") or 1))
    except ValueError:
        return 1


def bounds(cfg: Mapping[str, Any], stage: str = "verify") -> tuple[float, float | None]:
    """``(timeout_s, retry_timeout_s)`` from a stage's config block (``verify``, ``eval``); checked."""
    first = cfg.get("timeout_s")
    first = DEFAULT_TIMEOUT_S if first is None else float(first)
    retry = cfg.get("retry_timeout_s", RETRY_TIMEOUT_S)
    retry = None if retry is None else float(retry)
    if not first > 0:
        raise ValueError(f"{stage}.timeout_s must be > 0 seconds, got {first}")
    if retry is not None and not retry >= first:
        raise ValueError(f"{stage}.retry_timeout_s ({retry}) must be at least {stage}.timeout_s ({first}), "
                         "or null for no retry")
    return first, retry


# -- in a pool process ---------------------------------------------------------------------------
_SUITE: Any = None


def _init(task_cfg: dict) -> None:
    global _SUITE
    mathbox().spare = False  # one answer at a time here: no second math-verify worker to start
    _SUITE = build_suite(task_cfg)


def judge_pairs(suite: Any, pairs: Sequence[Pair], bound: float) -> list[Verdict]:
    """Every pair judged by ``suite`` in this process under ``bound`` seconds per math-verify call."""
    with time_bound(bound):
        return [suite.score(item, completion) for item, completion in pairs]


def _judge_chunk(chunk: tuple[list[Item], list[tuple[int, str]]], bound: float) -> list[Verdict]:
    items, pairs = chunk
    return judge_pairs(_SUITE, [(items[i], completion) for i, completion in pairs], bound)


def _packed(pairs: Sequence[Pair]) -> tuple[list[Item], list[tuple[int, str]]]:
    """A chunk as its distinct items and (item index, completion) pairs: a prompt's samples sit
    side by side, so each item (SynLogic's carry their puzzle) is pickled once per chunk."""
    index: dict[int, int] = {}
    items: list[Item] = []
    out = []
    for item, completion in pairs:
        if id(item) not in index:
            index[id(item)] = len(items)
            items.append(item)
        out.append((index[id(item)], completion))
    return items, out


# -- in the stage ---------------------------------------------------------------------------------
class Judge:
    """The task's verifier on ``workers`` processes (1: in this process; also while no pool runs
    yet and a call has fewer than ``pool_min`` pairs). Use as a context manager (the pool
    starts on first use and is shut down on exit)."""

    def __init__(self, task_cfg: Mapping[str, Any], workers: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S,
                 retry_timeout_s: float | None = RETRY_TIMEOUT_S, suite: Any = None,
                 pool_min: int = POOL_MIN) -> None:
        self.task_cfg = dict(task_cfg)
        self.workers, self.pool_min = max(1, int(workers)), int(pool_min)
        self.timeout_s, self.retry_timeout_s = float(timeout_s), retry_timeout_s
        self.suite = suite if suite is not None else build_suite(self.task_cfg)
        self.counts = {"first_try": 0, "recovered": 0, "after_retry": 0}
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def score(self, pairs: Sequence[Pair], on_done: Any = None) -> tuple[list[Verdict], list[bool]]:
        """One verdict per pair, in input order, timeouts retried once and counted; and whether
        each pair timed out on the first try. ``on_done(n)`` is called as chunks of n pairs
        finish (a progress bar's ``update``)."""
        verdicts = self._run(pairs, self.timeout_s, on_done)
        first = [bool(v.timed_out) for v in verdicts]
        late = [i for i, t in enumerate(first) if t]
        if late and self.retry_timeout_s is not None:
            again = self._run([pairs[i] for i in late], self.retry_timeout_s, None)
            for i, v in zip(late, again):
                verdicts[i] = v
        still = sum(verdicts[i].timed_out for i in late)
        self.counts["first_try"] += len(late)
        self.counts["recovered"] += len(late) - still
        self.counts["after_retry"] += still
        return verdicts, first

    def timeouts(self, counts: Mapping[str, int] | None = None) -> dict[str, dict]:
        """``{suite name: {first_try, recovered, after_retry, timeout_s, retry_timeout_s}}`` of
        what this judge scored (or of ``counts``)."""
        return {self.suite.name: {**(counts or self.counts), "timeout_s": self.timeout_s,
                                  "retry_timeout_s": self.retry_timeout_s}}

    def _run(self, pairs: Sequence[Pair], bound: float, on_done: Any) -> list[Verdict]:
        if not pairs:
            return []
        if self.workers == 1 or (self._pool is None and len(pairs) < self.pool_min):
            out = []
            for chunk in _chunks(pairs, CHUNK):
                out += judge_pairs(self.suite, chunk, bound)
                if on_done:
                    on_done(len(chunk))
            return out
        size = max(1, min(CHUNK, math.ceil(len(pairs) / (4 * self.workers))))
        chunks = list(_chunks(pairs, size))
        out = []
        packed = [_packed(c) for c in chunks]
        for chunk, verdicts in zip(chunks, self._executor().map(_judge_chunk, packed, [bound] * len(chunks))):
            out += verdicts
            if on_done:
                on_done(len(chunk))
        return out

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init, initargs=(self.task_cfg,))
        return self._pool


def _chunks(pairs: Sequence[Pair], size: int) -> Iterable[Sequence[Pair]]:
    for i in range(0, len(pairs), size):
        yield pairs[i:i + size]
