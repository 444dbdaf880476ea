"""What the commands do once Hydra has composed the config (see ``pipeline/__main__.py``)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from pipeline import dag as dag_mod
from pipeline import cluster as cluster_mod
from pipeline import gpus, preflight, results, runner, tracking

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def _explicit_objective() -> bool:
    """True when ``objective=NAME`` was given on the command line (or by a multirun sweep)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    return any(o.split("=", 1)[0].lstrip("+~") == "objective"
               for o in HydraConfig.get().overrides.task)


def objective_configs(cfg: DictConfig, explicit: bool | None = None) -> dict[str, dict]:
    """The objectives of this run: ``objectives`` (the study), or just ``objective`` if chosen."""
    chosen = cfg.objective.name
    explicit = _explicit_objective() if explicit is None else explicit
    names = [chosen] if explicit else list(cfg.objectives)
    out = {}
    for name in names:
        if name == chosen:
            out[name] = OmegaConf.to_container(cfg.objective, resolve=True)
            continue
        path = CONF_DIR / "objective" / f"{name}.yaml"
        if not path.is_file():
            valid = sorted(p.stem for p in (CONF_DIR / "objective").glob("*.yaml"))
            raise ValueError(f"unknown objective {name!r} in `objectives`; valid: {', '.join(valid)}")
        out[name] = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return out


def build_dag(cfg: DictConfig, explicit: bool | None = None) -> dag_mod.Dag:
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.results_dir = str(Path(cfg.results_dir).expanduser().resolve())
    dag = dag_mod.build(cfg, objective_configs(cfg, explicit))
    t = cfg.get("tracking")
    t = OmegaConf.to_container(t, resolve=True) if t is not None else {}
    dag.tracking = tracking.settings(t, cfg.experiment_name, dag.root, _sweep())
    return dag


def _sweep() -> dict | None:
    """``{"id", "job"}`` inside a Hydra multirun job (W&B tags its runs with the sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc = HydraConfig.get()
    return {"id": Path(hc.sweep.dir).name, "job": hc.job.num}


def print_plan(dag: dag_mod.Dag, echo: Callable[[str], None] = print) -> dict[str, str]:
    states = runner.plan(dag)
    width = max(len(n) for n in dag.order)
    echo(f"plan for {dag.root}:")
    for nid in dag.order:
        n = dag.nodes[nid]
        deps = ", ".join(n.deps) or "-"
        echo(f"  {nid:<{width}}  {n.key}  {states[nid]:<7}  <- {deps}")
    todo = sum(s != "cached" for s in states.values())
    echo(f"{len(states) - todo} cached, {todo} to run")
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


def link_report(dag: dag_mod.Dag) -> Path | None:
    if "report" not in dag.nodes or not dag.dir("report").complete():
        return None
    final = dag.dir("report").final
    link = final.parent / "latest"
    tmp = final.parent / f".latest-{os.getpid()}"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(final.name, tmp)
    os.replace(tmp, link)
    return final


def do_run(cfg: DictConfig) -> int:
    started = time.time()
    dag = build_dag(cfg)
    check_writable(dag.root)
    print_plan(dag)
    cluster = OmegaConf.to_container(cfg.cluster, resolve=True)
    check_gpus(dag, cluster)
    cluster_mod.claim_local_gpus(cluster, cluster_mod.describe(dag.root))  # one local cluster
    preflight.check(cfg, dag)  # models exist, base and behavior share a vocabulary
    results.record_run(dag, started)
    outcome = runner.run(dag, cluster, echo=lambda s: print(s, flush=True))
    report = link_report(dag)
    print(f"finished in {time.time() - started:.1f} s")
    if (dag.tracking or {}).get("mode") == "offline" and tracking.sync_hint(dag.root):
        print(tracking.sync_hint(dag.root))
    if outcome.failed:
        for nid in outcome.failed:
            print(f"FAILED stage {nid}; log: {dag.dir(nid).log}", file=sys.stderr)
        return 1
    if report is not None:
        print(f"report: {report / 'report.md'}")
    return 0


def hydra_entry(command: str) -> Callable[[DictConfig], Any]:
    def entry(cfg: DictConfig) -> None:
        if command == "plan":
            print_plan(build_dag(cfg))
            return
        if command == "status":
            results.print_status(build_dag(cfg))
            return
        code = results.do_report(cfg) if command == "report" else do_run(cfg)
        if code:
            raise SystemExit(code)

    return entry


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
