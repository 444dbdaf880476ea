"""The report's place in the DAG: seeds, analysis nodes, tracking kept out of keys, ``status``
states and the gathered report of ``pipeline report`` (no stage runs here)."""
from __future__ import annotations

import json

from hydra import compose, initialize_config_dir

from pipeline import results
from pipeline.cache import MANIFEST
from pipeline.cli import CONF_DIR, build_dag


def cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"results_dir={tmp_path}", "+experiment=smoke", *overrides])


def keys(dag):
    return {nid: n.key for nid, n in dag.nodes.items()}


def test_one_seed_keeps_ids_and_keys(tmp_path):
    plain = keys(build_dag(cfg(tmp_path), explicit=False))
    assert keys(build_dag(cfg(tmp_path, "seeds=[0]"), explicit=False)) == plain
    assert not any("@" in nid for nid in plain)


def test_seeds_replicate_the_branches_and_share_sampling(tmp_path):
    plain = keys(build_dag(cfg(tmp_path), explicit=False))
    dag = build_dag(cfg(tmp_path, "seeds=[0,1,2]"), explicit=False)
    ids = set(dag.nodes)
    for s in (0, 1, 2):
        assert {f"sft[sft@{s}]", f"rl[pear_token@{s}]", f"rl[direct@{s}]", f"eval[rl:direct@{s}]",
                f"analysis[sft:sft@{s}]", f"analysis[rl:pear_token@{s}]"} <= ids
        assert dag.nodes[f"sft[sft@{s}]"].cfg["seed"] == s
        assert f"eval/rl/pear_token/{s}" in dag.nodes["report"].inputs
    assert sum(n.stage == "sample" for n in dag.nodes.values()) == 1
    assert dag.nodes["sample"].key == plain["sample"] and dag.nodes["score"].key == plain["score"]
    # seed 0's branch is the single-seed branch: a seeds=[0,1,2] run reuses an earlier run's
    assert dag.nodes["sft[sft@0]"].key == plain["sft[sft]"]
    assert dag.nodes["eval[rl:pear_token@0]"].key == plain["eval[rl:pear_token]"]
    assert dag.nodes["sft[sft@1]"].key != plain["sft[sft]"]


def test_analysis_nodes_compare_each_checkpoint_with_its_start(tmp_path):
    dag = build_dag(cfg(tmp_path), explicit=False)
    a = dag.nodes["analysis[sft:pear_token]"]
    assert a.inputs["model"].node == "sft[pear_token]" and a.inputs["reference"].node == "bootstrap"
    assert a.inputs["reference"].sub == "base" and a.inputs["calibration"].node == "verify"
    assert dag.nodes["analysis[rl:sft]"].inputs["reference"].node == "sft[sft]"
    assert "enabled" not in a.cfg["analysis"]
    off = build_dag(cfg(tmp_path, "analysis.enabled=false"), explicit=False)
    assert not any(n.stage == "analysis" for n in off.nodes.values())
    assert not any(k.startswith("analysis/") for k in off.nodes["report"].inputs)


def test_gradient_rotation_runs_on_sft_checkpoints_with_the_rl_settings(tmp_path):
    """App. A.4: the rotation pilots start from SFT checkpoints only; their lr and GRPO group
    follow sft.* and rl.* (smoke: rl lr 5e-4, 4 generations of up to 48 tokens)."""
    dag = build_dag(cfg(tmp_path), explicit=False)
    a = dag.nodes["analysis[sft:pear_token]"].cfg
    rot = a["analysis"]["rotation"]
    assert a["task"]["suite"] == "toy" and "enabled" not in rot
    assert (rot["steps"], rot["k"], rot["online_lr"], rot["offline_lr"]) == (2, 128, 5e-4, 1e-3)
    assert (rot["num_generations"], rot["max_completion_length"]) == (4, 48)
    for rl_node in ("analysis[rl:sft]", "analysis[rl:direct]"):
        assert "rotation" not in dag.nodes[rl_node].cfg["analysis"]
        assert "task" not in dag.nodes[rl_node].cfg
    off = build_dag(cfg(tmp_path, "analysis.rotation.enabled=false"), explicit=False)
    assert "rotation" not in off.nodes["analysis[sft:pear_token]"].cfg["analysis"]
    assert off.nodes["analysis[rl:sft]"].key == dag.nodes["analysis[rl:sft]"].key
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        verl = compose("config", overrides=[f"results_dir={tmp_path}", "rl=verl", "seeds=[0]"])
    rot = build_dag(verl, explicit=False).nodes["analysis[sft:sft]"].cfg["analysis"]["rotation"]
    assert (rot["num_generations"], rot["max_completion_length"]) == (8, 8192)  # verl's keys


def test_tracking_settings_are_runtime_only(tmp_path):
    on = build_dag(cfg(tmp_path, "tracking=wandb", "tracking.mode=offline"), explicit=False)
    off = build_dag(cfg(tmp_path, "tracking=none"), explicit=False)
    assert keys(on) == keys(off)
    assert on.tracking["group"] == "smoke" and on.tracking["mode"] == "offline"
    assert on.tracking["dir"] == str(tmp_path / "smoke") and off.tracking == {"backend": "none"}


def complete(dag, nid, started=0.0, metrics=None):
    d = dag.dir(nid).final
    d.mkdir(parents=True)
    (d / MANIFEST).write_text(json.dumps({"timings": {"started": started, "seconds": 1.5},
                                          "metrics": metrics or {}}))


def test_status_states(tmp_path):
    dag = build_dag(cfg(tmp_path), explicit=False)
    complete(dag, "bootstrap", started=0.0)
    results.record_run(dag, started=100.0)
    complete(dag, "sample", started=200.0, metrics={"responses": 128})
    dag.dir("verify").log.parent.mkdir(parents=True, exist_ok=True)
    dag.dir("verify").log.write_text("=== verify\nValueError: no correct response\n")
    held = dag.dir("score").lock()  # another holder of the lock: a stage computing "score"
    held.acquire()
    try:
        lines = []
        states = results.print_status(dag, echo=lines.append)
    finally:
        held.release()
    assert states["bootstrap"] == "cached" and states["sample"] == "done"
    assert states["verify"] == "failed" and states["score"] == "running"
    assert states["report"] == "missing"
    text = "\n".join(lines)
    assert "responses=128" in text and "no correct response" in text and "1.5 s" in text
    assert text.splitlines()[-1].startswith(f"{len(dag.nodes)} nodes: 1 done, 1 cached, 1 running")


def test_gathered_report_keeps_only_complete_outputs(tmp_path):
    c = cfg(tmp_path)
    c.objectives = ["sft", "pear_token", "talr"]
    full = build_dag(c, explicit=False)
    for nid in ("eval[base]", "eval[sft:talr]", "eval[rl:talr]", "sft[talr]", "eval[rl:direct]"):
        complete(full, nid)
    dag, found = results.gathered_dag(full)
    assert found == ["direct", "talr"]
    assert set(dag.nodes["report"].inputs) == {"eval/base", "eval/sft/talr/0", "eval/rl/talr/0",
                                               "sft/talr/0", "eval/rl/direct/0"}
    assert dag.nodes["report"].key != full.nodes["report"].key
    assert {n: k for n, k in keys(dag).items() if n != "report"} == \
        {n: k for n, k in keys(full).items() if n != "report"}
