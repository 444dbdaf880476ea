"""The paper's GPU experiments: their verl settings pass verl's own checks, their rl tasks
reserve verl's GPUs as leases (the gate), and they hold the settings §4.2 states."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from pipeline.cli import CONF_DIR, build_dag
from pipeline.gpus import LEASE
from pipeline.runner import task_options
from stages.rl_engines import verl as engine
from test_verl_engine import verl_config

pytest.importorskip("verl")

GPU_EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")
                         if p.stem.startswith(("synlogic_qwen3_", "math_qwen3_", "transfer_")))
SWEEP = ["sft", "pear_token", "pear_block", "pear_seq", "pear_neg", "single_step_is", "sft_kl",
         "talr", "general_family", "top_p", "top_logp", "bottom_p", "bottom_logp"]


def experiment(name: str, tmp_path) -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={name}", f"results_dir={tmp_path}"])
    return cfg


def test_the_gpu_experiments_exist():
    assert {"synlogic_qwen3_0p6b", "synlogic_qwen3_1p7b", "synlogic_qwen3_4b", "synlogic_qwen3_8b",
            "math_qwen3_4b", "math_qwen3_8b", "transfer_synlogic_to_logic"} <= set(GPU_EXPERIMENTS)


@pytest.mark.parametrize("name", GPU_EXPERIMENTS)
def test_experiment_runs_the_gpu_engines_with_the_papers_settings(name, tmp_path):
    cfg = experiment(name, tmp_path)
    c = OmegaConf.to_container(cfg, resolve=True)
    head = (CONF_DIR / "experiment" / f"{name}.yaml").read_text().split("defaults:")[0]
    assert all(w in head for w in ("Data", "Models", "GPUs", "§4")), name
    assert c["sampler"]["engine"] == "vllm" and c["rl"]["engine"] == "verl"
    assert c["model"]["bootstrap"] is None and c["model"]["behavior"] == "Qwen/Qwen3-8B"
    rl = c["rl"]
    assert (rl["lr"], rl["train_batch_size"], rl["kl_coef"]) == (1e-6, 128, 0.01)      # §4.2
    assert c["sft"]["epochs"] == 1 and c["sft"]["lr"] == (1e-5 if name.startswith("math") else 3e-5)
    if name.startswith("synlogic"):
        assert c["objectives"] == SWEEP and c["eval"]["ks"] == [1, 8]
    if name.startswith("math"):
        assert c["eval"]["n"] == 64 and 64 in c["eval"]["ks"]
    res = c["resources"]
    assert res["sft"]["num_gpus"] == c["sft"]["num_processes"]
    s = c["sampler"]
    assert s["gpus_per_worker"] == s["tensor_parallel_size"]     # one TP group per engine
    dag = build_dag(cfg, explicit=False)
    verl_gpus = rl["n_gpus_per_node"] * rl["nnodes"]
    for n in dag.nodes.values():             # what each stage task asks Ray for (pipeline/gpus.py)
        o = task_options(n, leased=True)
        lease = (o.get("resources") or {}).get(LEASE, 0)
        if n.stage == "rl":                  # the gate: verl's workers take the GPUs themselves
            assert (o["num_gpus"], lease) == (0, verl_gpus), n.id
        else:                                # one lease per GPU held; sample/score/eval hold
            assert lease == o["num_gpus"], n.id   # none: their engines run on GPU actors


@pytest.mark.parametrize("name", GPU_EXPERIMENTS)
def test_experiment_rl_settings_pass_verls_validation(name, tmp_path):
    c = OmegaConf.to_container(experiment(name, tmp_path), resolve=True)
    paths = engine.VerlPaths(model="/models/start", train_file="/d/rl.parquet",
                             val_file="/d/eval.parquet", checkpoints="/w/ckpt",
                             metrics_file="/w/m.jsonl", ray_address="auto")
    cfg = verl_config(engine.verl_overrides({"task": c["task"], "rl": c["rl"], "seed": 0}, paths))
    assert cfg.trainer.n_gpus_per_node * cfg.trainer.nnodes >= cfg.actor_rollout_ref.rollout.tensor_model_parallel_size


def test_transfer_experiment_trains_rl_and_evaluates_on_the_online_task(tmp_path):
    dag = build_dag(experiment("transfer_synlogic_to_logic", tmp_path), explicit=False)
    assert dag.nodes["sample"].cfg["task"]["suite"] == "synlogic"
    assert dag.nodes["rl[pear_token]"].cfg["task"]["suite"] == "logic"
    assert dag.nodes["eval[rl:pear_token]"].cfg["task"]["suite"] == "logic"
