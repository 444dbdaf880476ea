"""Run a DAG: cached nodes are skipped, the rest run as Ray tasks as their inputs complete.

Ray lives here and nowhere else. ``cluster=local`` starts Ray on this machine, ``cluster=ray``
joins a running cluster by address, ``cluster=inline`` runs the stages one by one in this process
(for debugging with pdb; no Ray at all). A stage that fails stops its branch (its descendants are
skipped), the other branches finish, and the run reports the failed stage and its log file.

GPUs (``pipeline/gpus.py``): each stage task asks Ray for ``resources.<stage>`` plus one
``gpu_lease`` per GPU it holds or, for ``rl=verl``, per GPU verl's workers will take. Every ready
node is submitted at once and waits in Ray's queue until its resources are free, however long
that takes; the other ready nodes run meanwhile. A request no node could ever hold stops the run
before any work.

Locks: a stage task never waits on another process's lock while it holds GPUs. The task tries
the lock once (``execute(..., lock_timeout=0)``); if another process holds it, the task returns
at once (its resources go back to Ray) and the driver polls the lock itself, at most
``cluster.lock_timeout_s`` seconds, before submitting the node again (or reusing the output the
other process published). Past the limit the node fails with a message naming the holder.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline import gpus
from pipeline.cache import read_manifest
from pipeline.cluster import init_ray
from pipeline.dag import Dag, Node, Ref
from pipeline.execute import LOCK_TIMEOUT_S, Spec, execute, release_lock, take_lock

#: seconds between the driver's looks at locks held by other processes
LOCK_POLL_S = 2.0


@dataclass
class Outcome:
    states: dict[str, str] = field(default_factory=dict)       # node -> cached/done/failed/skipped
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [n for n, s in self.states.items() if s == "failed"]


def spec_for(dag: Dag, node_id: str) -> Spec:
    n = dag.nodes[node_id]
    input_keys = {k: (dag.nodes[r.node].key if isinstance(r, Ref) else f"external:{r}")
                  for k, r in n.inputs.items()}
    return Spec(id=n.id, stage=n.stage, key=n.key, cfg=n.cfg, inputs=dag.input_paths(node_id),
                input_keys=input_keys, experiment_root=str(dag.root),
                num_cpus=int(n.resources.get("num_cpus", 1)), tracking=dag.tracking,
                provenance=n.provenance)


def plan(dag: Dag) -> dict[str, str]:
    return {nid: ("cached" if dag.dir(nid).complete() else "to run") for nid in dag.order}


def run(dag: Dag, cluster: dict[str, Any], echo: Callable[[str], None] = print) -> Outcome:
    out = Outcome()
    todo = []
    for nid in dag.order:
        if dag.dir(nid).complete():
            out.states[nid] = "cached"
            echo(f"[{nid}] cached  {dag.dir(nid).final}")
        else:
            todo.append(nid)
    if not todo:
        return out
    kind = cluster.get("kind", "local")
    if kind == "inline":
        _run_inline(dag, todo, out, echo, float(cluster.get("lock_timeout_s") or LOCK_TIMEOUT_S))
    elif kind in ("local", "ray"):
        _run_ray(dag, todo, out, cluster, echo)
    else:
        raise ValueError(f"unknown cluster kind {kind!r}; valid: local, ray, inline")
    return out


def _ready(dag: Dag, nid: str, out: Outcome) -> bool:
    return all(out.states.get(d) in ("cached", "done") for d in dag.nodes[nid].deps)


def _finish(dag: Dag, nid: str, result: dict | None, err: str | None, out: Outcome,
            echo: Callable[[str], None]) -> None:
    if err is None:
        out.states[nid] = "done"
        out.seconds[nid] = result["seconds"]
        out.metrics[nid] = result["metrics"]
        how = "reused (computed by another process)" if result["status"] != "done" \
            else f"done in {result['seconds']:.1f} s"
        echo(f"[{nid}] {how}")
        return
    out.states[nid] = "failed"
    out.errors[nid] = err
    echo(f"[{nid}] FAILED: {err.strip().splitlines()[-1] if err.strip() else err}\n"
         f"    log: {dag.dir(nid).log}")
    for d in sorted(dag.descendants(nid)):
        if out.states.get(d) is None:
            out.states[d] = "skipped"
            echo(f"[{d}] skipped (depends on failed {nid})")


def _bars() -> bool:
    """Draw progress bars only on a terminal; logs and captured output get the stage lines."""
    return sys.stdout.isatty() and os.environ.get("PIPELINE_PROGRESS", "1") != "0"


def _run_inline(dag: Dag, todo: list[str], out: Outcome, echo, lock_timeout: float) -> None:
    import traceback

    import stages.common as common

    common.set_progress_factory(None if _bars() else common.no_progress)
    for nid in todo:
        if out.states.get(nid) == "skipped":
            continue
        echo(f"[{nid}] started")
        try:
            result = execute(spec_for(dag, nid), on_wait=echo, lock_timeout=lock_timeout)
            _finish(dag, nid, result, None, out, echo)
        except Exception:
            _finish(dag, nid, None, traceback.format_exc(), out, echo)


def _ray_task(spec: Spec, bars: bool, gate: float = 0.0) -> dict:
    """Body of a stage's Ray task: progress bars go to the driver through ray's tqdm, and
    ``parallel_map`` runs shards on Ray actors (``sampler.workers``, pipeline/parallel.py).
    ``gate``: GPUs a child (verl) takes outside this task and this task holds leases for; the
    stage starts once Ray's view shows them free, and the task returns (gives the leases back)
    once it shows them free again (``gpus.wait_free``)."""
    import ray
    from ray.experimental import tqdm_ray

    import stages.common as common
    from pipeline.parallel import ray_map

    common.set_progress_factory(tqdm_ray.tqdm if bars else common.no_progress)
    common.set_parallel_map(ray_map)
    # a stage that starts Ray work of its own (verl's main_ppo) joins this cluster, not a new one
    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    if gate > 0:
        gpus.wait_free(gate)
    try:
        return execute(spec, passthrough=lambda s: tqdm_ray.RAY_TQDM_MAGIC in s, lock_timeout=0)
    finally:
        if gate > 0:
            gpus.wait_free(gate)


def task_options(node: Node, leased: bool) -> dict[str, Any]:
    """Ray ``.options()`` of a node's task: CPUs, its GPUs and leases (``pipeline/gpus.py``)."""
    r = node.resources
    lease = gpus.lease_of(r, gpus.external_gpus(node.stage, node.cfg))
    return {"num_cpus": r.get("num_cpus", 1), **gpus.ray_options(gpus.holds_gpus(r), lease, leased),
            "max_retries": int(r.get("max_retries", 1)), "retry_exceptions": False,
            "name": node.id}


def _request(opts: dict[str, Any]) -> dict[str, float]:
    return {"CPU": float(opts["num_cpus"]), "GPU": float(opts["num_gpus"]),
            **{k: float(v) for k, v in (opts.get("resources") or {}).items()}}


def _lock_state(dag: Dag, nid: str) -> str | None:
    """None if the node can be submitted now, "complete" if another process published it
    meanwhile, else who holds its lock."""
    sd = dag.dir(nid)
    if sd.complete():
        return "complete"
    lock = take_lock(sd, 0)
    if lock is None:
        return sd.holder()
    release_lock(sd, lock)
    return None


def _run_ray(dag: Dag, todo: list[str], out: Outcome, cluster: dict, echo) -> None:
    init_ray(cluster)
    leased = gpus.leased_cluster()
    opts = {nid: task_options(dag.nodes[nid], leased) for nid in todo}
    gpus.check_leases(any(gpus.external_gpus(dag.nodes[n].stage, dag.nodes[n].cfg) for n in todo))
    gpus.check_fits({nid: _request(o) for nid, o in opts.items()})
    _RayDriver(dag, out, echo, opts, float(cluster.get("lock_timeout_s") or LOCK_TIMEOUT_S)).run(todo)


class _RayDriver:
    """Submits ready nodes as Ray tasks (after a look at their locks) and collects results."""

    def __init__(self, dag: Dag, out: Outcome, echo, opts: dict[str, dict], lock_timeout: float):
        import ray

        self.dag, self.out, self.echo, self.opts = dag, out, echo, opts
        self.lock_timeout = lock_timeout
        self.remote, self.bars = ray.remote(_ray_task), _bars()
        self.running: dict[Any, str] = {}
        self.waiting: dict[str, float | None] = {}  # ready node -> since when another process locks it

    def run(self, todo: list[str]) -> None:
        import ray

        pending = list(todo)
        while pending or self.running or self.waiting:
            for nid in [n for n in pending if _ready(self.dag, n, self.out)]:
                pending.remove(nid)
                self.waiting[nid] = None
            for nid in list(self.waiting):
                self.admit(nid)
            pending = [n for n in pending if self.out.states.get(n) != "skipped"]
            if not self.running:
                if not self.waiting:
                    break
                time.sleep(LOCK_POLL_S)
                continue
            done, _ = ray.wait(list(self.running), num_returns=1,
                               timeout=LOCK_POLL_S if self.waiting else None)
            if done:
                self.collect(done[0])

    def admit(self, nid: str) -> None:
        """Submit ``nid`` if no other process locks it; reuse its output if one published it."""
        dag, state = self.dag, _lock_state(self.dag, nid)
        if state is None:
            del self.waiting[nid]
            node = dag.nodes[nid]
            gate = gpus.external_gpus(node.stage, node.cfg)
            ref = self.remote.options(**self.opts[nid]).remote(spec_for(dag, nid), self.bars, gate)
            self.running[ref] = nid
            self.echo(f"[{nid}] started")
        elif state == "complete":
            del self.waiting[nid]
            _finish(dag, nid, {"status": "reused", "seconds": 0.0,
                               "metrics": read_manifest(dag.dir(nid).final)["metrics"]},
                    None, self.out, self.echo)
        elif self.waiting[nid] is None:
            self.waiting[nid] = time.time()
            self.echo(f"[{nid}] waiting: another process is computing it ({state})")
        elif time.time() - self.waiting[nid] > self.lock_timeout:
            del self.waiting[nid]
            _finish(dag, nid, None, f"LockTimeout: still locked after {self.lock_timeout:g} s "
                    f"by {state}; if that process is stuck, stop it", self.out, self.echo)

    def collect(self, ref: Any) -> None:
        import ray
        from ray.exceptions import RayError, RayTaskError

        nid = self.running.pop(ref)
        try:
            result = ray.get(ref)
        except RayTaskError as e:
            _finish(self.dag, nid, None, str(e.cause if e.cause is not None else e), self.out, self.echo)
            return
        except RayError as e:  # worker died and retries ran out, OOM kill, node lost...
            _finish(self.dag, nid, None, f"{type(e).__name__}: {e}", self.out, self.echo)
            return
        if result["status"] == "busy":  # another process took the lock first: wait without GPUs
            self.waiting[nid] = None
        else:
            _finish(self.dag, nid, result, None, self.out, self.echo)
