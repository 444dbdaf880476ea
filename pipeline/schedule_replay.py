"""A study's DAG replayed through the real driver loop of ``pipeline/runner.py`` in simulated time.

``replay`` runs ``_RayDriver.run`` against :class:`Queue`, a stand-in for Ray's queue as the driver
sees it: ``cpus`` slots, tasks started first come, first served as CPUs free up, each lasting the
seconds given for its node. Two policies:

* ``rank``: the ``cluster=local`` driver, ready nodes by upward rank while their CPUs are free;
* ``fifo``: every ready node submitted at once, in the DAG's order (no CPU limit, equal ranks):
  what ``cluster=ray`` does, and what the local driver did before it ordered its queue.

Used by ``benchmarks/schedule_order.py`` (the makespans of a finished study under both) and by
``tests/test_scheduling.py`` (the order in which the driver starts nodes). Nothing runs: the stage
bodies, locks and Ray itself are not involved, only the driver's decisions.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any


class Queue:
    """Ray's queue as the driver sees it: FIFO, ``cpus`` slots, simulated time."""

    def __init__(self, cpus: float, seconds: dict[str, float], need: dict[str, float]):
        self.seconds, self.need = seconds, need
        self.clock, self.free = 0.0, cpus
        self.queued: list[str] = []
        self.running: list[tuple[float, str]] = []  # heap of (end time, node)
        self.finished: set[str] = set()

    def submit(self, nid: str) -> str:
        self.queued.append(nid)
        self._start()
        return nid  # the "object ref"

    def _start(self) -> None:
        while self.queued and (self.need[self.queued[0]] <= self.free or not self.running):
            nid = self.queued.pop(0)
            self.free -= self.need[nid]
            heapq.heappush(self.running, (self.clock + self.seconds[nid], nid))

    def wait(self, refs: list[str], num_returns: int = 1, timeout: float | None = None):
        end, nid = heapq.heappop(self.running)
        self.clock, self.free = end, self.free + self.need[nid]
        self.finished.add(nid)
        self._start()
        return [nid], [r for r in refs if r != nid]


@dataclass
class Replay:
    makespan: float                                       # simulated seconds to the last node
    submitted: list[str] = field(default_factory=list)    # nodes in the order the driver submitted them
    in_flight: list[int] = field(default_factory=list)    # nodes submitted and not finished, after each


def replay(dag: Any, seconds: dict[str, float], cpus: float, policy: str = "rank") -> Replay:
    """Run the driver over ``dag`` with node durations ``seconds`` on ``cpus`` simulated CPUs."""
    import ray

    from pipeline.runner import Outcome, _RayDriver

    if policy not in ("rank", "fifo"):
        raise ValueError(f"policy must be rank or fifo, not {policy!r}")
    need = {nid: min(cpus, float(dag.nodes[nid].resources.get("num_cpus", 1))) for nid in dag.order}
    driver = _RayDriver(dag, Outcome(), console=None, opts={n: {"num_cpus": c} for n, c in need.items()},
                        lock_timeout=1.0, cpu_limit=cpus if policy == "rank" else None)
    if policy == "fifo":  # equal ranks: the stable sort keeps the order nodes became ready in
        driver.rank = {nid: 0.0 for nid in dag.order}
    q, out = Queue(cpus, seconds, need), Replay(0.0)

    def admit(nid: str) -> None:
        del driver.waiting[nid]
        driver.running[q.submit(nid)] = nid
        out.submitted.append(nid)
        out.in_flight.append(len(driver.running))

    def collect(ref: str, cancelling: bool = False) -> None:
        driver.out.states[driver.running.pop(ref)] = "done"

    driver.admit, driver.collect = admit, collect
    real_wait, ray.wait = ray.wait, q.wait
    try:
        driver.run(list(dag.order))
    finally:
        ray.wait = real_wait
    if q.finished != set(dag.order):
        raise RuntimeError(f"the replay left {sorted(set(dag.order) - q.finished)} unfinished")
    out.makespan = q.clock
    return out
