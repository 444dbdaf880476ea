"""Run a DAG: cached nodes are skipped, the rest run as Ray tasks as their inputs complete.

Ray lives here and nowhere else. ``cluster=local`` starts Ray on this machine, ``cluster=ray``
joins a running cluster by address, ``cluster=inline`` runs the stages one by one in this process
(for debugging with pdb; no Ray at all). A stage that fails stops its branch (its descendants are
skipped), the other branches finish, and the run reports the failed stage and its log file.

GPUs (``pipeline/gpus.py``): each stage task asks Ray for ``resources.<stage>`` plus one
``gpu_lease`` per GPU it holds or, for ``rl=verl``, per GPU verl's workers will take. On
``cluster=ray`` every ready node is submitted at once and waits in Ray's queue until its resources
are free, however long that takes (an autoscaler sees the whole demand); the other ready nodes run
meanwhile. On ``cluster=local`` the driver keeps the queue itself: ready nodes go to Ray in the
order of their upward rank (the typical cost, ``STAGE_COST``, of the longest chain from the node
to the end of the DAG), and only while their CPUs are free, so a long RL chain is not left to
start last behind short evals (Ray's own queue is first come, first served). A request no node
could ever hold stops the run before any work.

Locks: a stage task never waits on another process's lock while it holds GPUs. The task tries
the lock once (``execute(..., lock_timeout=0)``); if another process holds it, the task returns
at once (its resources go back to Ray) and the driver polls the lock itself, at most
``cluster.lock_timeout_s`` seconds, before submitting the node again (or reusing the output the
other process published). Past the limit the node fails with a message naming the holder.

Ctrl-C: the running stages are cancelled (``ray.cancel``: a KeyboardInterrupt in each task,
which removes its temporary output and releases its lock like any failure; a task still running
``CANCEL_GRACE_S`` later has its worker killed), the console says what finished and that the
same command resumes, and the run ends with exit status 130. A second Ctrl-C exits at once. What
the run prints meanwhile (stage lines, progress, notes such as a resume point) is
``pipeline/console.py``.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline import gpus
from pipeline.cache import read_manifest
from pipeline.cluster import init_ray
from pipeline.console import Console
from pipeline.dag import STAGE_COST, Dag, Node, Ref
from pipeline.execute import LOCK_TIMEOUT_S, Spec, execute, release_lock, take_lock

#: seconds between the driver's looks at locks held by other processes
LOCK_POLL_S = 2.0
#: seconds a cancelled stage gets to stop on its own before its worker is killed
CANCEL_GRACE_S = 30.0


@dataclass
class Outcome:
    states: dict[str, str] = field(default_factory=dict)  # node -> cached/done/failed/skipped/cancelled
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False                               # Ctrl-C stopped the run

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


def run(dag: Dag, cluster: dict[str, Any], echo: Callable[[str], None] = print,
        heartbeat_s: float = 60.0) -> Outcome:
    """Run what is not cached. ``echo`` prints a line; progress goes on a terminal as bars, else
    as a line per running stage every ``heartbeat_s`` seconds (``pipeline/console.py``). Ctrl-C
    cancels the running stages and returns with ``interrupted`` set; a second one exits at once."""
    out = Outcome()
    todo = []
    for nid in dag.order:
        if dag.dir(nid).complete():
            out.states[nid] = "cached"
        else:
            todo.append(nid)
    if not todo:
        return out
    kind = cluster.get("kind", "local")
    if kind not in ("local", "ray", "inline"):
        raise ValueError(f"unknown cluster kind {kind!r}; valid: local, ray, inline")
    started = time.time()
    with _sigint_once(), Console(dag, todo, out.states, echo, _bars(), heartbeat_s) as console:
        try:
            if kind == "inline":
                _run_inline(dag, todo, out, console,
                            float(cluster.get("lock_timeout_s") or LOCK_TIMEOUT_S))
            else:
                _run_ray(dag, todo, out, cluster, console)
        except KeyboardInterrupt:
            out.interrupted = True
        if out.interrupted:
            console.line(interrupted_summary(dag, todo, out, time.time() - started))
    return out


@contextlib.contextmanager
def _sigint_once():
    """The first Ctrl-C raises KeyboardInterrupt (the runner cancels the running stages); a
    second one, while that happens, exits at once (exit status 130)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = []

    def handler(signum: int, frame: Any) -> None:
        if pressed:
            err = sys.__stderr__  # not a stage's log (inline stages capture sys.stderr)
            err.write("\nsecond Ctrl-C: exiting now; re-run the same command to resume\n")
            err.flush()
            os._exit(130)
        pressed.append(time.time())
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def interrupted_summary(dag: Dag, todo: list[str], out: Outcome, elapsed: float) -> str:
    """What Ctrl-C left, and that the same command resumes."""
    count = lambda *states: [n for n in dag.order if out.states.get(n) in states]  # noqa: E731
    done, cached, cancelled = count("done"), count("cached"), count("cancelled")
    untouched = [n for n in todo if n not in out.states]
    lines = [f"interrupted after {elapsed:.0f} s: {len(done) + len(cached)} of {len(dag.order)} "
             f"stages finished ({len(done)} this run, {len(cached)} cached)"
             + (f", {len(count('failed'))} failed" if count("failed") else "")
             + f"; {len(untouched)} not started"]
    if cancelled:
        lines.append(f"cancelled: {', '.join(cancelled)}")
    lines.append("re-run the same command to resume: finished stages are reused, cancelled ones "
                 "continue from their last shard or checkpoint")
    return "\n".join(lines)


def _ready(dag: Dag, nid: str, out: Outcome) -> bool:
    return all(out.states.get(d) in ("cached", "done") for d in dag.nodes[nid].deps)


def _finish(dag: Dag, nid: str, result: dict | None, err: str | None, out: Outcome,
            console: Console) -> None:
    console.end(nid, (result or {}).get("notes"), (result or {}).get("seconds"))
    if err is None:
        out.states[nid] = "done"
        out.seconds[nid] = result["seconds"]
        out.metrics[nid] = result["metrics"]
        how = "reused (computed by another process)" if result["status"] != "done" \
            else f"done in {result['seconds']:.1f} s"
        console.line(f"[{nid}] {how}")
        return
    out.states[nid] = "failed"
    out.errors[nid] = err
    console.line(f"[{nid}] FAILED: {err.strip().splitlines()[-1] if err.strip() else err}\n"
                 f"    log: {dag.dir(nid).log}")
    for d in sorted(dag.descendants(nid)):
        if out.states.get(d) is None:
            out.states[d] = "skipped"
            console.line(f"[{d}] skipped (depends on failed {nid})")


def _cancelled(nid: str, out: Outcome, console: Console) -> None:
    console.end(nid)
    out.states[nid] = "cancelled"
    console.line(f"[{nid}] cancelled")


def _bars() -> bool:
    """Draw progress bars only on a terminal; elsewhere the console prints heartbeat lines."""
    return sys.stdout.isatty() and os.environ.get("PIPELINE_PROGRESS", "1") != "0"


def _run_inline(dag: Dag, todo: list[str], out: Outcome, console: Console,
                lock_timeout: float) -> None:
    import traceback

    for nid in todo:
        if out.states.get(nid) == "skipped":
            continue
        console.start(nid)
        try:
            result = execute(spec_for(dag, nid), on_wait=console.line, lock_timeout=lock_timeout)
            _finish(dag, nid, result, None, out, console)
        except KeyboardInterrupt:
            _cancelled(nid, out, console)
            out.interrupted = True
            return
        except Exception:
            _finish(dag, nid, None, traceback.format_exc(), out, console)


def _ray_task(spec: Spec, gate: float = 0.0) -> dict:
    """Body of a stage's Ray task: ``parallel_map`` runs shards on Ray actors
    (``sampler.workers``, pipeline/parallel.py); progress goes through the stage's channel file
    (``execute``). ``gate``: GPUs a child (verl) takes outside this task and this task holds
    leases for; the stage starts once Ray's view shows them free, and the task returns (gives
    the leases back) once it shows them free again (``gpus.wait_free``)."""
    import ray

    import stages.common as common
    from pipeline.parallel import ray_map

    common.set_parallel_map(ray_map)
    # a stage that starts Ray work of its own (verl's main_ppo) joins this cluster, not a new one
    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    if gate > 0:
        gpus.wait_free(gate)
    try:
        return execute(spec, lock_timeout=0)
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


def _run_ray(dag: Dag, todo: list[str], out: Outcome, cluster: dict, console: Console) -> None:
    init_ray(cluster)
    leased = gpus.leased_cluster()
    opts = {nid: task_options(dag.nodes[nid], leased) for nid in todo}
    gpus.check_leases(any(gpus.external_gpus(dag.nodes[n].stage, dag.nodes[n].cfg) for n in todo))
    gpus.check_fits({nid: _request(o) for nid, o in opts.items()})
    import ray

    # local: the driver orders the queue within this machine's CPUs; a joined cluster (maybe
    # autoscaled) gets every ready node at once
    limit = None
    if cluster.get("kind") == "local":
        limit = float(ray.cluster_resources().get("CPU", 0)) or None
    driver = _RayDriver(dag, out, console, opts, float(cluster.get("lock_timeout_s") or LOCK_TIMEOUT_S),
                        cpu_limit=limit)
    try:
        driver.run(todo)
    except KeyboardInterrupt:
        driver.cancel()


class _RayDriver:
    """Submits ready nodes as Ray tasks (after a look at their locks) and collects results."""

    def __init__(self, dag: Dag, out: Outcome, console: Console, opts: dict[str, dict],
                 lock_timeout: float, cpu_limit: float | None = None):
        import ray

        self.dag, self.out, self.console, self.opts = dag, out, console, opts
        self.lock_timeout = lock_timeout
        self.remote = ray.remote(_ray_task)
        self.running: dict[Any, str] = {}
        self.waiting: dict[str, float | None] = {}  # ready node -> since when another process locks it
        self.rank = dag.upward_ranks(STAGE_COST)
        self.cpu_limit = cpu_limit  # set: submit by rank while this many CPUs are free

    def run(self, todo: list[str]) -> None:
        import ray

        pending = list(todo)
        while pending or self.running or self.waiting:
            for nid in [n for n in pending if _ready(self.dag, n, self.out)]:
                pending.remove(nid)
                self.waiting[nid] = None
            for nid in sorted(self.waiting, key=lambda n: -self.rank[n]):
                if not self.fits(nid):
                    break  # strictly by rank: a lower-ranked node does not jump ahead
                self.admit(nid)
            pending = [n for n in pending if self.out.states.get(n) != "skipped"]
            if not self.running:
                if not self.waiting:
                    break
                time.sleep(LOCK_POLL_S)
                continue
            # a bounded wait: Ctrl-C is handled between two calls
            done, _ = ray.wait(list(self.running), num_returns=1, timeout=LOCK_POLL_S)
            if done:
                self.collect(done[0])

    def fits(self, nid: str) -> bool:
        """Whether ``nid`` may go to Ray now: always without a CPU limit or with nothing running,
        else if its CPUs are free."""
        if self.cpu_limit is None or not self.running:
            return True
        used = sum(float(self.opts[n].get("num_cpus", 1)) for n in self.running.values())
        return used + float(self.opts[nid].get("num_cpus", 1)) <= self.cpu_limit

    def cancel(self) -> None:
        """Ctrl-C: cancel every running stage (a KeyboardInterrupt in its task, which cleans up
        like any failure; force-killed after ``CANCEL_GRACE_S``), then report which finished."""
        import ray

        self.out.interrupted = True
        if self.running:
            self.console.line(f"Ctrl-C: cancelling {', '.join(self.running.values())} "
                              f"(Ctrl-C again to exit at once)")
        for ref in self.running:
            ray.cancel(ref)
        deadline = time.time() + CANCEL_GRACE_S
        while self.running:
            done, _ = ray.wait(list(self.running), num_returns=1,
                               timeout=max(0.0, deadline - time.time()))
            if not done:  # a stage that ignores the interrupt: kill its worker
                for ref in self.running:
                    ray.cancel(ref, force=True)
                deadline = float("inf")
                continue
            self.collect(done[0], cancelling=True)

    def admit(self, nid: str) -> None:
        """Submit ``nid`` if no other process locks it; reuse its output if one published it."""
        dag, state = self.dag, _lock_state(self.dag, nid)
        if state is None:
            del self.waiting[nid]
            node = dag.nodes[nid]
            gate = gpus.external_gpus(node.stage, node.cfg)
            self.console.start(nid)
            ref = self.remote.options(**self.opts[nid]).remote(spec_for(dag, nid), gate)
            self.running[ref] = nid
        elif state == "complete":
            del self.waiting[nid]
            _finish(dag, nid, {"status": "reused", "seconds": 0.0,
                               "metrics": read_manifest(dag.dir(nid).final)["metrics"]},
                    None, self.out, self.console)
        elif self.waiting[nid] is None:
            self.waiting[nid] = time.time()
            self.console.line(f"[{nid}] waiting: another process is computing it ({state})")
        elif time.time() - self.waiting[nid] > self.lock_timeout:
            del self.waiting[nid]
            _finish(dag, nid, None, f"LockTimeout: still locked after {self.lock_timeout:g} s "
                    f"by {state}; if that process is stuck, stop it", self.out, self.console)

    def collect(self, ref: Any, cancelling: bool = False) -> None:
        import ray
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError, WorkerCrashedError

        nid = self.running.pop(ref)
        try:
            result = ray.get(ref)
        except (TaskCancelledError, WorkerCrashedError) if cancelling else ():
            _cancelled(nid, self.out, self.console)
            return
        except RayTaskError as e:
            if cancelling and isinstance(e.cause, KeyboardInterrupt):
                _cancelled(nid, self.out, self.console)
                return
            _finish(self.dag, nid, None, str(e.cause if e.cause is not None else e), self.out,
                    self.console)
            return
        except RayError as e:  # worker died and retries ran out, OOM kill, node lost...
            _finish(self.dag, nid, None, f"{type(e).__name__}: {e}", self.out, self.console)
            return
        if result["status"] == "busy":  # another process took the lock first: wait without GPUs
            self.console.end(nid)
            if not cancelling:
                self.waiting[nid] = None
        else:
            _finish(self.dag, nid, result, None, self.out, self.console)
