"""A GPU study on a CPU machine: the real DAG, runner and Ray scheduling on logical GPUs, with
stage bodies that sleep and record which GPU ids Ray gave them.

Ray starts with ``num_gpus`` logical GPUs and as many ``gpu_lease`` (``pipeline/gpus.py``); Ray
hands out logical GPU ids and sets ``CUDA_VISIBLE_DEVICES`` exactly as for real ones. The
study's DAG (``pipeline/dag.py``), the runner (``pipeline/runner.py``: resources, leases, gate,
locks) and the data-parallel map (``pipeline/parallel.py``) are the real ones; only what runs
inside a stage is replaced, in every Ray worker, by a Ray ``worker_process_setup_hook``
(:func:`install`) that swaps ``stages.load`` for stubs:

* sample, score, eval: ``stages.common.parallel_map`` over ``shards`` with a recording engine
  (built once per worker, like vLLM's ``LLM``), each shard sleeping its share of the stage's
  GPU-time on the GPU(s) its worker holds;
* sft, analysis: the stage task's own GPUs (``resources.<stage>.num_gpus``);
* rl with ``rl.engine: verl``: what ``verl.trainer.main_ppo`` does to the cluster, through
  verl's own code: ``ResourcePoolManager.create_resource_pool`` (its free-GPU check, which
  raises when GPUs are busy) and ``RayResourcePool.get_placement_groups`` (one GPU per bundle),
  then one recording task per bundle. verl is imported once, in a host actor that stands in for
  the ``main_ppo`` driver process (which the real stage starts as a child joining the cluster);
* the other stages (bootstrap, verify, report): a short sleep, no GPU.

Every GPU use writes a record (stage key, kind, ``ray.get_gpu_ids()``, ``CUDA_VISIBLE_DEVICES``,
start, end) to ``records/``; :func:`violations` checks them and :func:`utilisation` turns them
into GPUs in use over time. Durations are per-stage GPU-hours times ``seconds_per_gpu_hour``.
"""
from __future__ import annotations

import json
import os
import time
import types
import uuid
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

SIM_ENV = "PIPELINE_GPU_SIM_PLAN"
HOST = "verl_main_ppo_host"
ENGINE_STAGES = ("sample", "score", "eval")


#: GPU-hours per stage run of ``synlogic_qwen3_1p7b`` (README "GPU hours"): sampling and scoring
#: with Qwen3-8B ≈ 30 h once per study, split 3:1 as the README's decode (5k tokens/s) and prefill
#: (15k tokens/s) rates give for the same tokens; SFT ≈ 3 h and GRPO ≈ 21 h per run; eval and
#: analysis share the rest of the README's 380 h total (14 RL runs: 30 + 13·3 + 14·21 = 363 h):
#: 0.5 h per eval (29) and 0.1 h per analysis (27).
GPU_HOURS_1P7B = {"sample": 22.5, "score": 7.5, "sft": 3.0, "rl": 21.0, "eval": 0.5,
                  "analysis": 0.1}


def shards_for(cfg: dict[str, Any]) -> dict[str, int]:
    """Shards per data-parallel stage as the study's config cuts them: sample by
    ``sample.shard_size`` prompts, score by ``score.shard_size`` responses (about half of the
    ``sample.n`` per prompt verified correct, README), eval: one shard when ``eval.shard_size``
    is null, else one per sampler worker (the eval split's size is not known here)."""
    train = int(cfg["task"]["sizes"]["train"])
    sample = -(-train // int(cfg["sample"]["shard_size"]))
    responses = train * int(cfg["sample"]["n"]) // 2
    score = -(-responses // int(cfg["score"]["shard_size"]))
    evals = int(cfg["sampler"].get("workers") or 1) if cfg["eval"].get("shard_size") else 1
    return {"sample": sample, "score": score, "eval": evals}


@dataclass
class Plan:
    """What the stubs do: GPU-hours per stage, shards per data-parallel stage, time scale."""

    gpu_hours: dict[str, float]
    shards: dict[str, int]
    seconds_per_gpu_hour: float
    records: str
    cpu_stage_s: float = 0.05

    def gpu_seconds(self, stage: str) -> float:
        return self.gpu_hours.get(stage, 0.0) * self.seconds_per_gpu_hour


@dataclass
class Result:
    states: dict[str, str]
    records: list[dict[str, Any]] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0


def _plan() -> Plan:
    return Plan(**json.loads(Path(os.environ[SIM_ENV]).read_text()))


def _record(plan: Plan, key: str, stage: str, kind: str, start: float, end: float,
            ids: list[Any] | None = None) -> None:
    import ray

    rec = {"key": key, "stage": stage, "kind": kind, "start": start, "end": end, "pid": os.getpid(),
           "gpu_ids": [str(i) for i in (ray.get_gpu_ids() if ids is None else ids)],
           "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    path = Path(plan.records) / f"{uuid.uuid4().hex}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, path)


def _hold(plan: Plan, key: str, stage: str, kind: str, seconds: float) -> None:
    start = time.time()
    time.sleep(seconds)
    _record(plan, key, stage, kind, start, time.time())


class RecordingEngine:
    """Stands in for a sampler engine: built once per worker, notes the GPUs it was given."""

    def __init__(self, plan: Plan, key: str, stage: str) -> None:
        import ray

        self.plan, self.key, self.stage = plan, key, stage
        self.ids = [str(i) for i in ray.get_gpu_ids()]

    def shard(self, seconds: float) -> int:
        start = time.time()
        time.sleep(seconds)
        _record(self.plan, self.key, self.stage, "engine", start, time.time(), self.ids)
        return os.getpid()


def _engine_shard(engine: RecordingEngine, seconds: float) -> int:
    return engine.shard(seconds)


def _engine_stage(plan: Plan, key: str, stage: str, cfg: dict) -> None:
    from stages.common import parallel_map, worker_options

    n = max(1, int(plan.shards.get(stage, 1)))
    per_gpu = float((cfg["engine"].get("gpus_per_worker") or 1))
    each = plan.gpu_seconds(stage) / n / per_gpu
    for _ in parallel_map(partial(RecordingEngine, plan, key, stage), _engine_shard, [each] * n,
                          **worker_options(cfg["engine"])):
        pass


class VerlHost:
    """Plays ``main_ppo`` joining the cluster: verl's own resource pool and placement groups."""

    def start(self, n_gpus_per_node: int, nnodes: int, seconds: float, key: str) -> list[str]:
        import ray
        from ray.util.placement_group import remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
        from verl.single_controller.ray.base import ResourcePoolManager

        manager = ResourcePoolManager(resource_pool_spec={"global_pool": [n_gpus_per_node] * nnodes},
                                      mapping={})
        manager.create_resource_pool()  # raises if fewer GPUs are free than verl wants
        pgs = manager.resource_pool_dict["global_pool"].get_placement_groups()
        plan = _plan()
        worker = ray.remote(_verl_worker)
        try:
            refs = [worker.options(num_cpus=1, num_gpus=1, scheduling_strategy=(
                PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)))
                .remote(asdict(plan), key, seconds) for pg in pgs for i in range(pg.bundle_count)]
            return ray.get(refs)
        finally:
            for pg in pgs:
                remove_placement_group(pg)


def _verl_worker(plan: dict, key: str, seconds: float) -> str:
    _hold(Plan(**plan), key, "rl", "verl", seconds)
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")


def _rl_stage(plan: Plan, key: str, cfg: dict) -> None:
    import ray

    r = cfg["rl"]
    if r.get("engine") != "verl":
        _hold(plan, key, "rl", "task", plan.gpu_seconds("rl"))
        return
    n, nodes = int(r["n_gpus_per_node"]), int(r.get("nnodes", 1))
    ray.get(ray.get_actor(HOST).start.remote(n, nodes, plan.gpu_seconds("rl") / (n * nodes), key))


def stub_run(stage: str, cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    """Body of every stage in the simulation (replaces ``stages.<stage>.run``)."""
    import ray

    plan = _plan()
    key = Path(work).name.removeprefix(".work-")
    if stage in ENGINE_STAGES:
        _engine_stage(plan, key, stage, cfg)
    elif stage == "rl":
        _rl_stage(plan, key, cfg)
    elif plan.gpu_seconds(stage) > 0:  # sft, analysis: the task's own GPUs
        held = max(1, len(ray.get_gpu_ids()))
        _hold(plan, key, stage, "task", plan.gpu_seconds(stage) / held)
    else:
        time.sleep(plan.cpu_stage_s)
    Path(out, "simulated").write_text(stage)
    return {"simulated": True}


def install() -> None:
    """Ray ``worker_process_setup_hook``: stage bodies become stubs in this worker process."""
    if not os.environ.get(SIM_ENV):
        return
    import stages

    real = stages.load

    def load(stage: str) -> types.ModuleType:
        if stage not in stages.VERSIONS:
            return real(stage)  # unknown names still fail as they would
        mod = types.ModuleType(f"simulated_{stage}")
        mod.run = partial(stub_run, stage)
        return mod

    stages.load = load


def run(dag: Any, plan: Plan, num_gpus: int = 8, num_cpus: int = 96) -> Result:
    """Run ``dag`` on a fresh local Ray with logical GPUs and the stubs; return what happened."""
    import ray

    from pipeline import runner
    from pipeline.cluster import repo_root
    from pipeline.gpus import LEASE

    Path(plan.records).mkdir(parents=True, exist_ok=True)
    plan_file = Path(plan.records).parent / "plan.json"
    plan_file.write_text(json.dumps(asdict(plan)))
    os.environ[SIM_ENV] = str(plan_file)
    env = {"PYTHONPATH": os.pathsep.join(p for p in [repo_root(), os.environ.get("PYTHONPATH")] if p),
           SIM_ENV: str(plan_file), "PIPELINE_PROGRESS": "0"}
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, resources={LEASE: num_gpus},
             include_dashboard=False, logging_level="WARNING", namespace="gpu_sim",
             runtime_env={"env_vars": env, "worker_process_setup_hook": "pipeline.gpu_sim.install"})
    try:
        host = ray.remote(VerlHost).options(name=HOST, num_cpus=0, max_concurrency=4).remote()
        ray.get(host.__ray_ready__.remote())
        started = time.time()
        outcome = runner.run(dag, {"kind": "local", "lock_timeout_s": 600}, echo=lambda s: None)
        finished = time.time()
    finally:
        ray.shutdown()
        os.environ.pop(SIM_ENV, None)
    recs = [json.loads(p.read_text()) for p in Path(plan.records).glob("*.json")]
    return Result(outcome.states, recs, started, finished)


def violations(records: list[dict[str, Any]], num_gpus: int) -> list[str]:
    """What went wrong: a GPU use without GPU ids, ids that differ from ``CUDA_VISIBLE_DEVICES``,
    one id held by two uses at once, more than ``num_gpus`` in use."""
    bad = []
    for r in records:
        if not r["gpu_ids"]:
            bad.append(f"{r['stage']} {r['kind']} (pid {r['pid']}) ran without a GPU")
        elif ",".join(r["gpu_ids"]) != r["cuda_visible_devices"]:
            bad.append(f"{r['stage']} {r['kind']}: ray.get_gpu_ids() {r['gpu_ids']} but "
                       f"CUDA_VISIBLE_DEVICES={r['cuda_visible_devices']!r}")
    by_id: dict[str, list[dict]] = {}
    for r in records:
        for i in r["gpu_ids"]:
            by_id.setdefault(i, []).append(r)
    for i, uses in by_id.items():
        uses.sort(key=lambda r: r["start"])
        for a, b in zip(uses, uses[1:]):
            if b["start"] < a["end"]:
                bad.append(f"GPU {i} held by {a['stage']} ({a['kind']}) and {b['stage']} "
                           f"({b['kind']}) at once")
    peak = max((n for _, n in utilisation(records)), default=0)
    if peak > num_gpus:
        bad.append(f"{peak} GPUs in use at once, more than {num_gpus}")
    return bad


def utilisation(records: list[dict[str, Any]]) -> list[tuple[float, int]]:
    """``(time, GPUs in use from then on)`` at every start or end of a GPU use."""
    events = sorted([(r["start"], len(r["gpu_ids"])) for r in records]
                    + [(r["end"], -len(r["gpu_ids"])) for r in records])
    out, n = [], 0
    for t, d in events:
        n += d
        out.append((t, n))
    return out


def gpu_seconds(records: list[dict[str, Any]]) -> float:
    return sum((r["end"] - r["start"]) * len(r["gpu_ids"]) for r in records)
