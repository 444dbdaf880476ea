"""What exists under ``results/<experiment>/``: node states for ``python -m pipeline status`` and
the report rebuilt from whatever evals exist for ``python -m pipeline report``.

Node states (``status``):

* ``done``     complete, computed by the latest ``run`` of this exact plan (``_runs.jsonl``),
* ``cached``   complete, computed earlier or by another run (e.g. another multirun job),
* ``running``  not complete and its lock is held by a live process (the kernel drops the lock
  of a dead one, see ``pipeline/cache.py``),
* ``failed``   not complete, not running, but its log exists (it started and did not finish),
* ``missing``  never started.

``report`` composes the config as ``run`` would, then takes every objective that has a
``conf/objective/*.yaml`` (the one chosen with ``objective=`` keeps its overrides) and keeps
the branches whose outputs are complete: after ``run -m objective=a,b,c`` (separate jobs, one
report each), ``report`` gives one report over a, b and c. Outputs computed under other settings
(say ``sft.lr=...``) have other keys and are left out unless the same overrides are given.
"""
from __future__ import annotations

import json
import os
import time

from filelock import FileLock, Timeout

from pipeline import study, tracking
from pipeline.cache import StageDir, read_manifest
from pipeline.dag import Dag, Node, Ref, plan_digest

RUNS = "_runs.jsonl"
KEY_METRICS = {
    "bootstrap": ["base_final_loss", "behavior_final_loss"],
    "sample": ["responses", "mean_response_tokens"],
    "verify": ["accuracy", "correct"],
    "score": ["responses", "mean_behavior_logprob"],
    "sft": ["train_loss", "heldout_nll", "steps"],
    "eval": ["pass@*", "maj@*"],
    "rl": ["reward_first_quarter", "reward_last_quarter", "param_delta_l2"],
    "analysis": ["forward_kl", "sparsity", "nss"],
    "report": ["objectives", "seeds", "best_offline", "best_online"],
}


def record_run(dag: Dag, started: float) -> None:
    """Append this run's start to ``_runs.jsonl`` (what ``status`` calls done vs cached)."""
    dag.root.mkdir(parents=True, exist_ok=True)
    with open(dag.root / RUNS, "a") as f:
        f.write(json.dumps({"started": started, "plan": plan_digest(dag), "pid": os.getpid()}) + "\n")


def last_run(dag: Dag) -> float | None:
    path, plan = dag.root / RUNS, plan_digest(dag)
    if not path.is_file():
        return None
    starts = [r["started"] for r in map(json.loads, path.read_text().splitlines()) if r["plan"] == plan]
    return max(starts) if starts else None


def lock_held(sd: StageDir) -> bool:
    if not sd.lock_path.is_file():
        return False
    lock = FileLock(str(sd.lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def node_state(sd: StageDir, since: float | None) -> tuple[str, dict]:
    """(state, details: started, seconds, metrics or the log's last line)."""
    if sd.complete():
        m = read_manifest(sd.final)
        t = m.get("timings", {})
        state = "done" if since is not None and t.get("started", 0) >= since else "cached"
        return state, {"started": t.get("started"), "seconds": t.get("seconds"),
                       "metrics": m.get("metrics", {})}
    if lock_held(sd):
        return "running", {"started": sd.log.stat().st_mtime if sd.log.is_file() else None}
    if sd.log.is_file():
        lines = [ln for ln in sd.log.read_text(errors="replace").splitlines() if ln.strip()]
        return "failed", {"started": sd.log.stat().st_mtime, "error": lines[-1][:120] if lines else ""}
    return "missing", {}


def key_metrics(stage: str, metrics: dict) -> str:
    out = []
    for pat in KEY_METRICS.get(stage, []):
        keys = [k for k in metrics if k.startswith(pat[:-1])] if pat.endswith("*") else [pat]
        for k in keys:
            v = metrics.get(k)
            if isinstance(v, float):
                out.append(f"{k}={v:.3g}")
            elif v is not None and not isinstance(v, (dict, list)):
                out.append(f"{k}={v}")
    return " ".join(out)


def print_status(dag: Dag, echo=print, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """``overrides``: the state of nodes that have not started and will not until something
    else happens (``pending`` / ``skipped`` of a budget study, ``pipeline/budget.py``)."""
    since = last_run(dag)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "never"
    echo(f"status of {dag.root} (last run of this plan: {when}):")
    width = max(len(n) for n in dag.order)
    states = {}
    for nid in dag.order:
        state, d = node_state(dag.dir(nid), since)
        if state == "missing" and nid in (overrides or {}):
            state = overrides[nid]
        states[nid] = state
        at = time.strftime("%m-%d %H:%M", time.localtime(d["started"])) if d.get("started") else ""
        secs = f"{d['seconds']:.1f} s" if d.get("seconds") is not None else ""
        info = key_metrics(dag.nodes[nid].stage, d.get("metrics", {})) if "metrics" in d \
            else d.get("error", "")
        if state in ("failed", "running"):
            info = f"log: {dag.dir(nid).log}  {info}".rstrip()
        line = f"  {nid:<{width}}  {state:<7}  {dag.nodes[nid].key}  {at:<11}  {secs:>8}  {info}"
        echo(line.rstrip())
    counts = {s: sum(v == s for v in states.values())
              for s in ("done", "cached", "running", "failed", "missing", "pending", "skipped")}
    echo(f"{len(states)} nodes: " + ", ".join(f"{v} {k}" for k, v in counts.items()
                                              if v or k not in ("pending", "skipped")))
    return states


def gathered_dag(full: Dag) -> tuple[Dag, list[str]]:
    """``full`` with the report's inputs cut down to the complete outputs; also the names of
    the objectives (or direct) that have at least one complete eval."""
    report = full.nodes["report"]
    inputs = {name: ref for name, ref in report.inputs.items()
              if isinstance(ref, Ref) and full.dir(ref.node).complete()}
    found = sorted({name.split("/")[2] for name in inputs if name.startswith("eval/") and
                    name.count("/") >= 3})
    nodes = [n for nid, n in full.nodes.items() if nid != "report"]
    nodes.append(Node("report", "report", report.cfg, inputs, report.resources))
    dag = Dag(nodes, full.root)
    dag.tracking = full.tracking
    return dag, found


def do_report(cfg) -> int:
    from omegaconf import OmegaConf

    from pipeline.execute import execute
    from pipeline.runner import spec_for

    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    names = {p.stem for p in (study.CONF_DIR / "objective").glob("*.yaml")}
    cfg.objectives = sorted(names | set(cfg.objectives) | {cfg.objective.name})
    dag, found = gathered_dag(study.build_dag(cfg, explicit=False))
    if not any(n.startswith("eval/") for n in dag.nodes["report"].inputs):
        print(f"no complete eval under {dag.root} for this config; run `python -m pipeline run` "
              "(with the same overrides) first")
        return 1
    print(f"report over {', '.join(found)} from {dag.root}")
    result = execute(spec_for(dag, "report"))
    final = study.link_report(dag)
    print(f"report ({result['status']}): {final / 'report.md'}")
    if (dag.tracking or {}).get("mode") == "offline" and tracking.sync_hint(dag.root):
        print(tracking.sync_hint(dag.root))
    return 0
