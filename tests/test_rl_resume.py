"""GRPO (TRL) resumed from a checkpoint ends with exactly the weights of an uninterrupted run.

Found by benchmarks/fault_injection.py: TRL's sampler reshuffles every epoch from a generator a
resumed run does not restore, so a kill after an epoch boundary changed the final model.
"""
from __future__ import annotations

import shutil

from safetensors.torch import load_file


TASK = {"suite": "toy", "seed": 0, "sizes": {"train": 16, "rl": 16, "eval": 12},
        "min_operands": 2, "max_operands": 3, "max_operand": 9, "pretrain_size": 600}
RL = {"engine": "trl", "steps": 6, "lr": 1e-3, "prompts_per_step": 8, "num_generations": 2,
      "beta": 0.01, "temperature": 1.0, "max_completion_length": 16, "save_steps": 2,
      "device": "cpu"}


def test_resumed_grpo_matches_an_uninterrupted_run(tiny_models, tmp_path):
    from stages import rl

    cfg = {"task": TASK, "rl": RL, "seed": 0}  # 16 rl prompts: step 3 starts epoch 2
    dirs = {k: tmp_path / k for k in ("a", "wa", "b", "wb")}
    for d in dirs.values():
        d.mkdir()
    rl.run(cfg, {"model": tiny_models["base"]}, dirs["a"], dirs["wa"])
    shutil.copytree(dirs["wa"] / "trainer" / "checkpoint-4", dirs["wb"] / "trainer" / "checkpoint-4")
    metrics = rl.run(cfg, {"model": tiny_models["base"]}, dirs["b"], dirs["wb"])
    assert metrics["resumed_from"] == "checkpoint-4"
    a, b = load_file(dirs["a"] / "model.safetensors"), load_file(dirs["b"] / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
