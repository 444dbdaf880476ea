"""The study as a DAG of stage nodes, built from the resolved Hydra config.

::

    bootstrap* ─> sample ─> verify ─> score ─┬─> sft[o] ─┬─> eval[sft:o]
                                              │           └─> rl[o] ─> eval[rl:o] ─┐
    base model ─────────────────────────────────> rl[direct] ─> eval[rl:direct] ───┼─> report
    base, behavior models ──> eval[base], eval[behavior] ──────────────────────────┤
    analysis[sft:o] (sft vs base; gradient rotation), analysis[rl:o] (rl vs its start) ─┘

With ``seeds=[0, 1, 2]`` every branch from sft to eval is replicated per seed (ids ``sft[o@1]``
...), sampling and scoring shared; the report aggregates over seeds.

Each node carries exactly the slice of the config its stage reads (``cfg``); that slice, the
stage version, the fingerprint of the code that computes it (``pipeline/fingerprint.py``) and the
keys of the node's inputs make its cache key, so changing ``sft.lr`` changes the keys of every sft
node and what follows, never sampling's, and an edit to a verifier's scoring changes verify's key
and what follows. An input that no node produces (a model path or hub id) and every local path the
slice names (``task.path``) count by their fingerprints (``pipeline/external.py``). Runtime-only
settings (resources, cluster, tracking, progress) are kept out of the slices.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import external, fingerprint
from pipeline.cache import StageDir, digest, stage_key
from stages import VERSIONS


@dataclass(frozen=True)
class Ref:
    """An input that is another node's output directory (or a sub-path of it)."""

    node: str
    sub: str = ""


#: a stage's typical cost relative to the others (the default toy study's seconds per node, cold,
#: 2 cores): the order in which ``cluster=local`` starts ready nodes (``Dag.upward_ranks``) and the
#: console's estimate before a stage of that type has finished; unlisted stages count 1
STAGE_COST = {"bootstrap": 80.0, "rl": 55.0, "sft": 17.0, "sample": 11.0, "eval": 5.0,
              "analysis": 3.0, "score": 4.0, "report": 4.0}


@dataclass
class Node:
    id: str                      # display name, e.g. "sft[pear_token]"
    stage: str                   # module in stages/
    cfg: dict[str, Any]          # the config slice the stage reads (hashed)
    inputs: dict[str, Ref | str]  # Ref to another node, or an external path / hub id
    resources: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    # what the key was made from besides cfg and node inputs: {"code": the stage's code
    # fingerprint, "external": fingerprints of external inputs and of paths named in cfg}
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def deps(self) -> list[str]:
        return sorted({r.node for r in self.inputs.values() if isinstance(r, Ref)})


# Engine settings that change where work runs, never its result (shards are seeded per shard and
# merged in order; tests/test_parallel.py checks 1 and 2 workers give identical rows).
RUNTIME_ENGINE_KEYS = ("workers", "gpus_per_worker", "cpus_per_worker")


def keyed(cfg: dict[str, Any]) -> dict[str, Any]:
    """The part of a node's config slice that goes into its cache key."""
    eng = cfg.get("engine")
    if isinstance(eng, dict):
        cfg = {**cfg, "engine": {k: v for k, v in eng.items() if k not in RUNTIME_ENGINE_KEYS}}
    return cfg


class Dag:
    def __init__(self, nodes: list[Node], experiment_root: Path) -> None:
        self.tracking: dict[str, Any] | None = None  # runtime only (pipeline/tracking.py)
        self.study: Any = None  # study.mode=budget settings (pipeline/budget.py); None: full
        self.nodes = {n.id: n for n in nodes}
        self.order = [n.id for n in nodes]  # built in topological order
        self.root = Path(experiment_root)
        memo: dict[str, dict] = {}  # fingerprints looked up once per build
        for node in nodes:
            input_keys, external_fps = {}, {}
            for name, ref in node.inputs.items():
                if isinstance(ref, Ref):
                    input_keys[name] = f"{self.nodes[ref.node].key}/{ref.sub}"
                else:
                    external_fps[name] = external.fingerprint(str(ref), memo)
                    input_keys[name] = f"external:{ref}@{external_fps[name]['digest']}"
            for at, fp in external.config_fingerprints(keyed(node.cfg), memo).items():
                external_fps[f"config:{at}"] = fp
                input_keys[f"config:{at}"] = fp["digest"]
            if f"stage:{node.stage}" not in memo:
                memo[f"stage:{node.stage}"] = fingerprint.stage_code(node.stage)
            code = memo[f"stage:{node.stage}"]
            node.provenance = {"code": code, "external": external_fps}
            node.key = stage_key(node.stage, VERSIONS[node.stage], keyed(node.cfg), input_keys,
                                 code["digest"])

    def dir(self, node_id: str) -> StageDir:
        n = self.nodes[node_id]
        return StageDir(self.root, n.stage, n.key)

    def input_paths(self, node_id: str) -> dict[str, str]:
        out = {}
        for name, ref in self.nodes[node_id].inputs.items():
            if isinstance(ref, Ref):
                p = self.dir(ref.node).final
                out[name] = str(p / ref.sub if ref.sub else p)
            else:
                out[name] = str(ref)
        return out

    def upward_ranks(self, cost: dict[str, float], default: float = 1.0) -> dict[str, float]:
        """Per node, the cost of the longest path from its start to the end of the DAG (its own
        stage's ``cost`` plus the largest rank among the nodes that read it): list scheduling by
        this rank (HEFT's "upward rank") starts the chains that bound the run's length first."""
        children: dict[str, list[str]] = {nid: [] for nid in self.order}
        for n in self.nodes.values():
            for d in n.deps:
                children[d].append(n.id)
        rank: dict[str, float] = {}
        for nid in reversed(self.order):  # topological order: children are ranked first
            below = max((rank[c] for c in children[nid]), default=0.0)
            rank[nid] = cost.get(self.nodes[nid].stage, default) + below
        return rank

    def descendants(self, node_id: str) -> set[str]:
        found: set[str] = set()
        frontier = [node_id]
        while frontier:
            cur = frontier.pop()
            for n in self.nodes.values():
                if cur in n.deps and n.id not in found:
                    found.add(n.id)
                    frontier.append(n.id)
        return found


def _plain(x: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(x, (DictConfig, ListConfig)):
        return OmegaConf.to_container(x, resolve=True)
    return x


def build(cfg: Any, objectives: dict[str, dict]) -> Dag:
    """Nodes of the study for ``cfg`` with one SFT→RL branch per entry of ``objectives``."""
    c = _plain(cfg)
    res = c.get("resources", {})
    retries = c.get("cluster", {}).get("max_retries", 1)

    def node(id_: str, stage: str, cfg_: dict, inputs: dict) -> Node:
        r = {"num_cpus": 1, "num_gpus": 0, **res.get("default", {}), **res.get(stage, {})}
        r["max_retries"] = retries
        return Node(id_, stage, cfg_, inputs, r)

    task, seed, engine = c["task"], c["seed"], c["sampler"]
    # transfer studies (paper §4.4): offline data from `task`, RL prompts and every eval from
    # `online_task`; unset, both are `task` and no key changes
    online = c.get("online_task") or task
    nodes: list[Node] = []
    model = c["model"]
    if model.get("bootstrap"):
        nodes.append(node("bootstrap", "bootstrap",
                          {"task": task, "bootstrap": model["bootstrap"], "seed": seed}, {}))
        base, behavior = Ref("bootstrap", "base"), Ref("bootstrap", "behavior")
    else:
        base, behavior = model["base"], model["behavior"]

    nodes.append(node("sample", "sample",
                      {"task": task, "sample": c["sample"], "engine": engine, "seed": seed},
                      {"model": behavior}))
    nodes.append(node("verify", "verify", {"task": task, "verify": c["verify"]},
                      {"responses": Ref("sample")}))
    score_ids: dict[int, str] = {}
    for name, ocfg in objectives.items():
        topk = int((ocfg.get("data") or {}).get("topk", 0) or 0)
        if topk not in score_ids:
            sid = "score" if topk == 0 else f"score[top{topk}]"
            score_ids[topk] = sid
            nodes.append(node(sid, "score", {"score": {**c["score"], "topk": topk},
                                              "engine": engine},
                              {"data": Ref("verify"), "model": behavior}))

    def evaluate(id_: str, model_ref: Ref | str) -> None:
        nodes.append(node(f"eval[{id_}]", "eval",
                          {"task": online, "eval": c["eval"], "engine": engine, "seed": seed},
                          {"model": model_ref}))

    evaluate("base", base)
    evaluate("behavior", behavior)
    report_inputs: dict[str, Ref] = {"eval/base": Ref("eval[base]"),
                                     "eval/behavior": Ref("eval[behavior]"),
                                     "verify": Ref("verify")}  # its timeouts
    a_all = c.get("analysis") or {}
    acfg = {k: v for k, v in a_all.items() if k not in ("enabled", "rotation")}
    analyse = bool(a_all.get("enabled", False))
    rotation = {k: v for k, v in (a_all.get("rotation") or {}).items() if k != "enabled"}
    rotate = bool((a_all.get("rotation") or {}).get("enabled", False))

    def analysis(id_: str, model_ref: Ref, reference: Ref | str, key: str) -> None:
        if analyse:  # Appendix A proxies of model_ref against its starting point
            # gradient rotation (A.4): SFT checkpoints only, with GRPO pilots on the online task
            slice_ = ({"analysis": {**acfg, "rotation": rotation}, "task": online}
                     if rotate and id_.startswith("sft:") else {"analysis": acfg})
            nodes.append(node(f"analysis[{id_}]", "analysis", {**slice_, "seed": seed},
                              {"model": model_ref, "reference": reference,
                               "calibration": Ref("verify")}))
            report_inputs[f"analysis/{key}"] = Ref(f"analysis[{id_}]")

    # seeds=[a, b, ...] replicates every SFT -> RL branch (sampling and scoring are shared);
    # with one seed the node ids carry no seed suffix, so single-seed keys and ids never change
    seeds = [int(s) for s in (c.get("seeds") or [seed])]
    for s in seeds:
        def tag(name: str, s: int = s) -> str:
            return f"{name}@{s}" if len(seeds) > 1 else name

        for name, ocfg in objectives.items():
            topk = int((ocfg.get("data") or {}).get("topk", 0) or 0)
            sft_id = f"sft[{tag(name)}]"
            nodes.append(node(sft_id, "sft", {"sft": c["sft"], "objective": ocfg, "seed": s},
                              {"data": Ref(score_ids[topk]), "model": base}))
            evaluate(f"sft:{tag(name)}", Ref(sft_id))
            analysis(f"sft:{tag(name)}", Ref(sft_id), base, f"sft/{name}/{s}")
            report_inputs[f"sft/{name}/{s}"] = Ref(sft_id)
            report_inputs[f"eval/sft/{name}/{s}"] = Ref(f"eval[sft:{tag(name)}]")
        for name, start in [*((o, Ref(f"sft[{tag(o)}]")) for o in objectives), ("direct", base)]:
            rl_id = f"rl[{tag(name)}]"
            nodes.append(node(rl_id, "rl", {"task": online, "rl": c["rl"], "seed": s},
                              {"model": start}))
            evaluate(f"rl:{tag(name)}", Ref(rl_id))
            analysis(f"rl:{tag(name)}", Ref(rl_id), start, f"rl/{name}/{s}")
            report_inputs[f"eval/rl/{name}/{s}"] = Ref(f"eval[rl:{tag(name)}]")
    nodes.append(node("report", "report",
                      {"report": c["report"], "experiment": c["experiment_name"]},
                      report_inputs))
    return Dag(nodes, Path(c["results_dir"]) / c["experiment_name"])


def plan_digest(dag: Dag) -> str:
    return digest({n.id: n.key for n in dag.nodes.values()})
