"""Run a DAG: cached nodes are skipped, the rest run as Ray tasks as their inputs complete.

Ray lives here and nowhere else. ``cluster=local`` starts Ray on this machine, ``cluster=ray``
joins a running cluster by address, ``cluster=inline`` runs the stages one by one in this process
(for debugging with pdb; no Ray at all). A stage that fails stops its branch (its descendants are
skipped), the other branches finish, and the run reports the failed stage and its log file.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.dag import Dag, Ref
from pipeline.execute import Spec, execute


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
                num_cpus=int(n.resources.get("num_cpus", 1)), tracking=dag.tracking)


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
        _run_inline(dag, todo, out, echo)
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


def _run_inline(dag: Dag, todo: list[str], out: Outcome, echo) -> None:
    import traceback

    import stages.common as common

    common.set_progress_factory(None if _bars() else common.no_progress)
    for nid in todo:
        if out.states.get(nid) == "skipped":
            continue
        echo(f"[{nid}] started")
        try:
            result = execute(spec_for(dag, nid), on_wait=echo)
            _finish(dag, nid, result, None, out, echo)
        except Exception:
            _finish(dag, nid, None, traceback.format_exc(), out, echo)


def _ray_task(spec: Spec, bars: bool) -> dict:
    """Body of a stage's Ray task: progress bars go to the driver through ray's tqdm, and
    ``parallel_map`` runs shards on Ray actors (``sampler.workers``, pipeline/parallel.py)."""
    import ray
    from ray.experimental import tqdm_ray

    import stages.common as common
    from pipeline.parallel import ray_map

    common.set_progress_factory(tqdm_ray.tqdm if bars else common.no_progress)
    common.set_parallel_map(ray_map)
    # a stage that starts Ray work of its own (verl's main_ppo) joins this cluster, not a new one
    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    return execute(spec, passthrough=lambda s: tqdm_ray.RAY_TQDM_MAGIC in s)


def init_ray(cluster: dict[str, Any]) -> None:
    import logging

    import ray

    if ray.is_initialized():
        return
    env = {"PYTHONPATH": os.pathsep.join(p for p in [_repo_root(), os.environ.get("PYTHONPATH")] if p)}
    kw: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True,
                          "runtime_env": {"env_vars": env}}
    if cluster.get("kind") == "ray":
        ray.init(address=cluster.get("address") or "auto", **kw)
    else:
        ray.init(num_cpus=cluster.get("num_cpus") or os.cpu_count(),
                 num_gpus=cluster.get("num_gpus"), include_dashboard=False, **kw)


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_ray(dag: Dag, todo: list[str], out: Outcome, cluster: dict, echo) -> None:
    import ray
    from ray.exceptions import RayError, RayTaskError

    init_ray(cluster)
    remote = ray.remote(_ray_task)
    bars = _bars()
    running: dict[Any, str] = {}
    pending = list(todo)
    started: dict[str, float] = {}
    while pending or running:
        for nid in [n for n in pending if _ready(dag, n, out)]:
            pending.remove(nid)
            r = dag.nodes[nid].resources
            ref = remote.options(num_cpus=r.get("num_cpus", 1), num_gpus=r.get("num_gpus", 0),
                                 max_retries=int(r.get("max_retries", 1)), retry_exceptions=False,
                                 name=nid).remote(spec_for(dag, nid), bars)
            running[ref] = nid
            started[nid] = time.time()
            echo(f"[{nid}] started")
        pending = [n for n in pending if out.states.get(n) != "skipped"]
        if not running:
            break
        done, _ = ray.wait(list(running), num_returns=1)
        nid = running.pop(done[0])
        try:
            _finish(dag, nid, ray.get(done[0]), None, out, echo)
        except RayTaskError as e:
            _finish(dag, nid, None, str(e.cause if e.cause is not None else e), out, echo)
        except RayError as e:  # worker died and retries ran out, OOM kill, node lost...
            _finish(dag, nid, None, f"{type(e).__name__}: {e}", out, echo)
