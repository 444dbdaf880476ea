"""Config composition and the DAG's cache keys: what reruns when a setting changes."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pipeline.cli import CONF_DIR, build_dag

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def compose_cfg(*overrides: str, results: Path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"results_dir={results}", *overrides])


# a two-objective, one-seed study: the key tests below name its nodes
TWO = ("objectives=[sft,pear_token]", "seeds=null")


def keys(dag) -> dict[str, str]:
    return {nid: n.key for nid, n in dag.nodes.items()}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_builds_a_dag(name, tmp_path):
    cfg = compose_cfg(f"+experiment={name}", results=tmp_path)
    dag = build_dag(cfg, explicit=False)
    assert dag.order[-1] == "report"
    assert dag.root == tmp_path / cfg.experiment_name
    for nid in dag.order:  # topological: every dependency comes earlier
        assert all(dag.order.index(d) < dag.order.index(nid) for d in dag.nodes[nid].deps)


def test_experiment_files_are_global_overlays_with_a_launch_command():
    for name in EXPERIMENTS:
        text = (CONF_DIR / "experiment" / f"{name}.yaml").read_text()
        assert text.startswith("# @package _global_"), name
        assert f"+experiment={name}" in text, f"{name}: header must hold its launch command"


def test_default_study_has_a_branch_per_objective_plus_direct_rl(tmp_path):
    dag = build_dag(compose_cfg(results=tmp_path), explicit=False)
    objectives = ["sft", "pear_token", "pear_seq", "sft_kl", "talr"]
    for s in (0, 1, 2):  # five objectives and direct RL, three seeds, sampling shared
        for o in objectives:
            assert {f"sft[{o}@{s}]", f"rl[{o}@{s}]", f"eval[rl:{o}@{s}]"} <= set(dag.nodes)
        assert dag.nodes[f"rl[direct@{s}]"].deps == ["bootstrap"]
    assert sum(n.stage == "sft" for n in dag.nodes.values()) == 15
    assert sum(n.stage == "rl" for n in dag.nodes.values()) == 18
    assert sum(n.stage in ("sample", "score") for n in dag.nodes.values()) == 2
    two = build_dag(compose_cfg(*TWO, results=tmp_path), explicit=False)
    assert {"sft[sft]", "sft[pear_token]", "rl[sft]", "rl[pear_token]", "rl[direct]",
            "eval[base]", "eval[behavior]", "eval[rl:direct]", "bootstrap"} <= set(two.nodes)


def test_chosen_objective_and_overrides_reach_the_sft_node(tmp_path):
    cfg = compose_cfg("+experiment=smoke", "objective=pear_token", "sft.lr=1e-4", results=tmp_path)
    dag = build_dag(cfg, explicit=True)
    sfts = [n for n in dag.nodes.values() if n.stage == "sft"]
    assert [n.id for n in sfts] == ["sft[pear_token]"]
    assert sfts[0].cfg["sft"]["lr"] == 1e-4
    assert sfts[0].cfg["objective"]["params"]["gamma"] == 0.999


def test_changing_sft_lr_reruns_sft_and_what_follows_only(tmp_path):
    a = keys(build_dag(compose_cfg(*TWO, results=tmp_path), explicit=False))
    b = keys(build_dag(compose_cfg(*TWO, "sft.lr=5e-4", results=tmp_path), explicit=False))
    changed = {n for n in a if a[n] != b[n]}
    assert changed == {"sft[sft]", "sft[pear_token]", "eval[sft:sft]", "eval[sft:pear_token]",
                       "rl[sft]", "rl[pear_token]", "eval[rl:sft]", "eval[rl:pear_token]", "report",
                       "analysis[sft:sft]", "analysis[sft:pear_token]", "analysis[rl:sft]",
                       "analysis[rl:pear_token]"}


def test_changing_rl_or_runtime_settings(tmp_path):
    a = keys(build_dag(compose_cfg(*TWO, results=tmp_path), explicit=False))
    rl = keys(build_dag(compose_cfg(*TWO, "rl.steps=7", results=tmp_path), explicit=False))
    assert {n for n in a if a[n] != rl[n]} == {
        "rl[sft]", "rl[pear_token]", "rl[direct]", "eval[rl:sft]", "eval[rl:pear_token]",
        "eval[rl:direct]", "report", "analysis[rl:sft]", "analysis[rl:pear_token]",
        "analysis[rl:direct]"}
    runtime = keys(build_dag(compose_cfg(*TWO, "cluster=inline", "resources.default.num_cpus=2",
                                         "sampler.workers=4", "sampler.gpus_per_worker=2",
                                         "sampler.cpus_per_worker=3", results=tmp_path),
                             explicit=False))
    assert runtime == a


def test_a_kd_objective_gets_its_own_topk_score_node(tmp_path):
    dag = build_dag(compose_cfg("objectives=[sft,kd]", "seeds=null", results=tmp_path), explicit=False)
    assert dag.nodes["sft[kd]"].deps == ["bootstrap", "score[top20]"]
    assert dag.nodes["score[top20]"].cfg["score"]["topk"] == 20
    assert "score" in dag.nodes["sft[sft]"].deps


def test_unknown_objective_in_the_study_lists_valid_names(tmp_path):
    with pytest.raises(ValueError, match="valid: .*pear_token"):
        build_dag(compose_cfg("objectives=[sft,nope]", results=tmp_path), explicit=False)
