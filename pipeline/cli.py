"""What the commands do once Hydra has composed the config (see ``pipeline/__main__.py``).

Every command first validates the composed config (``pipeline/config_check.py``). ``run`` then
checks, in order and before it writes anything, GPUs, the local GPU claim, models and the
results directory; only then does it record its config (``<experiment>/_hydra/<time>/``) and
start work. ``plan`` and ``status`` only read.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from pipeline import dag as dag_mod
from pipeline import cluster as cluster_mod
from pipeline import budget, budget_run, gpus, preflight, results, runner, tracking
from pipeline.config_check import ConfigError, validate
from pipeline.study import CONF_DIR, build_dag, link_report  # noqa: F401 (re-exported)


def print_plan(dag: dag_mod.Dag, echo: Callable[[str], None] = print) -> dict[str, str]:
    dag, over, notes = budget_run.view(dag) if dag.study else (dag, {}, [])
    states = {**runner.plan(dag), **over}
    width = max(len(n) for n in dag.order)
    echo(f"plan for {dag.root}:")
    for nid in dag.order:
        n = dag.nodes[nid]
        deps = ", ".join(n.deps) or "-"
        echo(f"  {nid:<{width}}  {n.key}  {states[nid]:<7}  <- {deps}")
    todo = sum(s == "to run" for s in states.values())
    later = sum(s == "pending" for s in states.values())
    echo(f"{sum(s == 'cached' for s in states.values())} cached, {todo} to run"
         + (f", {later} pending" if later else ""))
    for line in notes:
        echo(line)
    return states


def check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise SystemExit(f"results directory {root} is not writable: {e}") from None


def gpus_needed(node: dag_mod.Node) -> float:
    """GPUs a node needs on one machine: its Ray task's, or verl's workers' for rl=verl."""
    return gpus.lease_of(node.resources, gpus.external_gpus(node.stage, node.cfg))


def check_gpus(dag: dag_mod.Dag, cluster: dict) -> None:
    need = max((gpus_needed(n) for n in dag.nodes.values() if not dag.dir(n.id).complete()),
               default=0.0)
    if need <= 0 or cluster.get("kind") == "ray":
        return  # a remote cluster's GPUs are checked by Ray's scheduler
    have = gpus.local_gpu_count()
    if have < need:
        raise SystemExit(f"this experiment asks for {need:g} GPU(s) per stage but this machine has "
                         f"{have}; run it on a GPU machine or join a cluster (cluster=ray)")


def record_config(cfg: DictConfig, root: Path) -> Path:
    """The composed config and the command line's overrides of this run, as Hydra's output
    directory held them: ``<root>/_hydra/<time>/`` (a multirun job: the job's sweep directory)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get() if HydraConfig.initialized() else None
    if hc is not None and hc.mode == RunMode.MULTIRUN:
        out = Path(hc.runtime.output_dir)
    else:
        out = root / "_hydra" / time.strftime("%Y-%m-%d_%H-%M-%S")
        if out.exists():
            out = out.with_name(f"{out.name}-{os.getpid()}")
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(hc.overrides.task) if hc else []), out / "overrides.yaml")
    return out


def do_run(cfg: DictConfig) -> int:
    started = time.time()
    dag = build_dag(cfg)
    cached = all(s == "cached" for s in runner.plan(dag).values())
    if cached:  # one line, not a plan and a "cached" line per stage
        print(f"nothing to run: all {len(dag.order)} stages are cached in {dag.root}")
    else:
        print_plan(dag)
    cluster = OmegaConf.to_container(cfg.cluster, resolve=True)
    check_gpus(dag, cluster)
    cluster_mod.claim_local_gpus(cluster, cluster_mod.describe(dag.root))  # one local cluster
    preflight.check(cfg, dag)  # models exist, base and behavior share a vocabulary
    check_writable(dag.root)  # the first write: every check that can refuse the run came first
    record_config(cfg, dag.root)
    results.record_run(dag, started)
    echo = functools.partial(print, file=sys.stdout, flush=True)  # this stdout, not a stage's log
    heartbeat = float(OmegaConf.select(cfg, "progress.heartbeat_s", default=60))

    def run_dag(d: dag_mod.Dag, e: Callable[[str], None]) -> runner.Outcome:
        return runner.run(d, cluster, echo=e, heartbeat_s=heartbeat)

    if dag.study:  # study.mode=budget: SFT side, the decision, then RL for the selection
        outcome, dag = budget_run.run(dag, run_dag, echo, started)
    else:
        outcome = run_dag(dag, echo)
    if outcome.interrupted:
        return 130
    report = link_report(dag)
    if not cached:
        print(f"finished in {time.time() - started:.1f} s")
        if (dag.tracking or {}).get("mode") == "offline" and tracking.sync_hint(dag.root):
            print(tracking.sync_hint(dag.root))
    if outcome.failed:
        for nid in outcome.failed:
            print(f"FAILED stage {nid}; log: {dag.dir(nid).log}", file=sys.stderr)
        return 1
    if report is not None:
        print(f"report: {report.parent / 'latest' / 'report.md'}")
    return 0


def debugging() -> bool:
    """``--debug`` (or HYDRA_FULL_ERROR=1): the project's errors keep their traceback."""
    return os.environ.get("HYDRA_FULL_ERROR", "") == "1"


def hydra_entry(command: str) -> Callable[[DictConfig], Any]:
    def entry(cfg: DictConfig) -> None:
        try:
            validate(cfg)
        except ConfigError as e:
            if debugging():
                raise
            fail(e)
        if command == "plan":
            print_plan(build_dag(cfg))
            return
        if command == "status":
            dag = build_dag(cfg)
            dag, over, notes = budget_run.view(dag) if dag.study else (dag, {}, [])
            results.print_status(dag, overrides=over)
            for line in notes:
                print(line)
            return
        code = results.do_report(cfg) if command == "report" else do_run(cfg)
        if code:
            raise SystemExit(code)

    return entry


def fail(error: Exception) -> None:
    """Stop with the error's lines on stderr, no traceback (exit status 2: a usage error)."""
    for line in str(error).splitlines():
        print(f"config error: {line}", file=sys.stderr)
    raise SystemExit(2)


def list_registries() -> None:
    from stages import VERSIONS

    def confs(group: str) -> list[str]:
        return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))

    print("objectives:  " + ", ".join(confs("objective")))
    print("tasks:       " + ", ".join(confs("task")))
    try:
        from verifiers import describe

        for suite, games in describe().items():
            if games:
                print(f"  {suite}: {', '.join(games)}")
    except ImportError:
        pass
    print("samplers:    " + ", ".join(confs("sampler")))
    print("rl engines:  " + ", ".join(confs("rl")))
    print("clusters:    " + ", ".join(confs("cluster")))
    print("tracking:    " + ", ".join(confs("tracking")))
    print("experiments: " + ", ".join(confs("experiment")))
    print("stages:      " + ", ".join(VERSIONS))
