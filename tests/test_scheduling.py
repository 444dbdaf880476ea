"""``cluster=local`` starts ready nodes by upward rank, and only while their CPUs are free
(``pipeline/runner.py``): long RL chains start first instead of waiting behind short evals."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pipeline.cli import CONF_DIR, build_dag
from pipeline.dag import STAGE_COST
from pipeline.schedule_replay import replay


def default_dag(results: Path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"results_dir={results}", "tracking=none"])
    return build_dag(cfg, explicit=False)


def test_upward_rank_is_the_costliest_chain_to_the_end(tmp_path):
    dag = default_dag(tmp_path)
    rank = dag.upward_ranks(STAGE_COST)
    for nid, node in dag.nodes.items():
        readers = [c for c, n in dag.nodes.items() if nid in n.deps]
        below = max((rank[c] for c in readers), default=0.0)
        assert rank[nid] == pytest.approx(STAGE_COST.get(node.stage, 1.0) + below), nid
    assert rank["report"] == STAGE_COST["report"]
    rl = [n for n in dag.order if n.startswith("rl[")]
    short = [n for n in dag.order if n.startswith(("eval[", "analysis["))]
    assert len(rl) == 18 and min(rank[n] for n in rl) > max(rank[n] for n in short)
    for n in rl:
        if not n.startswith("rl[direct"):
            assert rank[n.replace("rl[", "sft[")] > rank[n]  # an SFT heads its RL chain
    assert rank["sample"] > rank["rl[direct@0]"]  # sampling heads all 15 SFT chains


def start_order(dag, policy: str) -> tuple[list[str], list[int]]:
    """The order in which the driver submits the DAG's nodes on 2 CPUs (each stage lasting its
    ``STAGE_COST`` seconds), and how many are submitted and unfinished after each submission."""
    r = replay(dag, {n: STAGE_COST.get(dag.nodes[n].stage, 1.0) for n in dag.order}, 2.0, policy)
    assert sorted(r.submitted) == sorted(dag.order)
    return r.submitted, r.in_flight


def test_local_driver_starts_by_rank_within_its_cpus(tmp_path):
    dag = default_dag(tmp_path)
    started, concurrency = start_order(dag, "rank")
    assert max(concurrency) <= 2
    assert started[0] == "bootstrap" and concurrency[0] == 1  # 2 CPUs: alone
    # once the bootstrap is done: sampling (heads every SFT chain), then direct RL, then the evals
    assert started[1:3] == ["sample", "rl[direct@0]"]
    assert started.index("rl[direct@2]") < started.index("eval[base]")
    for nid in dag.order:  # never before its inputs
        assert all(started.index(d) < started.index(nid) for d in dag.nodes[nid].deps)


def test_without_a_cpu_limit_every_ready_node_goes_at_once(tmp_path):
    dag = default_dag(tmp_path)
    _, concurrency = start_order(dag, "fifo")
    assert concurrency[6] == 6  # after the bootstrap: sample, 3 direct RL, 2 evals, at once
