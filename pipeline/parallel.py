"""Data parallelism on Ray: one engine per worker actor, shards handed out as workers free up.

The sample, score and eval stages call ``stages.common.parallel_map(make_worker, fn, tasks,
workers=…, gpus_per_worker=…, cpus_per_worker=…)``; the runner's Ray task installs
:func:`ray_map` there, so the stages themselves never import Ray.

* ``workers <= 1`` (the default) or a single task, and the stage's own task holds the GPUs one
  engine needs (none on a CPU cluster; ``resources.<stage>.num_gpus`` ≥ ``gpus_per_worker``):
  run in the stage's own process, exactly as without Ray (``stages.common.local_map``).
* otherwise start ``min(workers, tasks)`` actors (at least one), each holding ``gpus_per_worker``
  GPUs (a vLLM tensor-parallel group: several) and as many ``gpu_lease`` (``pipeline/gpus.py``),
  and ``cpus_per_worker`` cores; each builds its engine once. So an engine always runs where its
  GPUs are held: with one eval shard and a stage task that holds no GPU, that shard runs on one
  actor with its GPU, never on a device Ray did not hand out. A task goes to whichever actor is
  free, and only to actors that have started, so a cluster with room for fewer actors than asked
  still finishes (more slowly). The stage's own task should then declare no GPU
  (``resources.<stage>.num_gpus: 0``), or it holds one an actor needs.

Results come back to the stage process, which saves each shard under ``work/`` as it arrives and
merges in task order: which actor ran a shard, and how many actors there were, never changes the
rows (every shard is seeded by its index). A worker process that dies is restarted and its task
retried once (``max_restarts`` / ``max_task_retries``); past that the stage fails, and a re-run
resumes from the shards already saved.
"""
from __future__ import annotations

import logging
import os
import sys
from collections import deque
from typing import Any, Callable, Iterator, Sequence

from pipeline import gpus as gpu_accounting
from stages.common import local_map

log = logging.getLogger(__name__)

#: seconds without any started worker before the driver warns that resources may be held
START_WARNING_S = 60.0


class _Worker:
    """Actor body: builds one worker (engine) and applies ``fn`` to the tasks it is given."""

    def __init__(self, make_worker: Callable[[], Any], fn: Callable[[Any, Any], Any],
                 threads: int) -> None:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when it is first imported
        if "torch" in sys.modules:  # imported already (unpickling make_worker may import it)
            sys.modules["torch"].set_num_threads(threads)
        self.fn = fn
        self.worker = make_worker()

    def ready(self) -> bool:
        return True

    def run(self, task: Any) -> Any:
        return self.fn(self.worker, task)


def _largest_node(resource: str) -> float:
    import ray

    return max((float(n["Resources"].get(resource, 0)) for n in ray.nodes() if n.get("Alive")),
               default=0.0)


def resolve_gpus(gpus_per_worker: float | None) -> float:
    """None (``auto``): one GPU per worker when the cluster has GPUs, else none."""
    if gpus_per_worker is not None:
        return float(gpus_per_worker)
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def check_feasible(gpus: float, cpus: float) -> None:
    """Refuse a worker no node of the cluster could ever hold (Ray would wait forever)."""
    for name, need in (("GPU", gpus), ("CPU", cpus)):
        have = _largest_node(name)
        if need > have:
            key = "gpus_per_worker" if name == "GPU" else "cpus_per_worker"
            raise RuntimeError(f"each sampler worker asks for {need:g} {name}(s) "
                               f"(sampler.{key}) but the largest node of the Ray cluster has "
                               f"{have:g}; lower sampler.{key} or add nodes")


def ray_map(make_worker: Callable[[], Any], fn: Callable[[Any, Any], Any], tasks: Sequence[Any],
            *, workers: int = 1, gpus_per_worker: float | None = None,
            cpus_per_worker: float = 1.0, max_restarts: int = 1) -> Iterator[tuple[int, Any]]:
    """``stages.common.parallel_map`` on Ray actors; yields ``(i, result)`` as tasks finish."""
    if not tasks:
        return
    import ray

    gpus = resolve_gpus(gpus_per_worker)
    if (workers <= 1 or len(tasks) <= 1) and len(ray.get_gpu_ids()) >= gpus:
        yield from local_map(make_worker, fn, tasks)  # this task holds what one engine needs
        return
    check_feasible(gpus, cpus_per_worker)
    actor_cls = ray.remote(_Worker).options(
        num_cpus=cpus_per_worker, max_restarts=max_restarts, max_task_retries=max_restarts,
        **gpu_accounting.ray_options(gpus, gpus, gpu_accounting.leased_cluster()))
    threads = max(1, int(cpus_per_worker))
    actors = [actor_cls.remote(make_worker, fn, threads)
              for _ in range(max(1, min(workers, len(tasks))))]
    starting = {a.ready.remote(): a for a in actors}
    running: dict[Any, tuple[int, Any]] = {}
    todo = deque(range(len(tasks)))
    warned = False
    try:
        while todo or running:
            done, _ = ray.wait([*starting, *running], num_returns=1,
                               timeout=None if warned or running else START_WARNING_S)
            if not done:
                warned = True
                log.warning("no sampler worker has started after %.0f s (each needs %g GPU, %g "
                            "CPU); if the stage's own task holds them, set its resources to 0",
                            START_WARNING_S, gpus, cpus_per_worker)
                continue
            ref = done[0]
            if ref in starting:
                actor, result = starting.pop(ref), None
                ray.get(ref)  # raises if the engine could not be built
            else:
                i, actor = running.pop(ref)
                result = (i, ray.get(ref))
            if todo:  # keep the actor busy before handing the result back
                j = todo.popleft()
                running[actor.run.remote(tasks[j])] = (j, actor)
            if result is not None:
                yield result
    finally:
        for a in actors:
            ray.kill(a)
