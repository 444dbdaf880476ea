"""Shared fixtures: tiny models bootstrapped once per test session (no download)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
# no test reaches the network: hub ids in cache keys fall back to the local cache or the name
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_TASK = {"suite": "toy", "seed": 0, "sizes": {"train": 16, "rl": 16, "eval": 12},
             "min_operands": 2, "max_operands": 3, "max_operand": 9, "pretrain_size": 600}
TINY_BOOTSTRAP = {
    "vocab_size": 32, "batch_size": 32,
    "arch": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
             "max_position_embeddings": 64},
    "base": {"steps": 5, "lr": 3e-3},
    "behavior": {"steps": 15, "lr": 3e-3, "p_correction": 0.1},
}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """{'base': dir, 'behavior': dir} built by the bootstrap stage itself, called as a function."""
    from stages import bootstrap

    out = tmp_path_factory.mktemp("bootstrap")
    work = tmp_path_factory.mktemp("bootstrap-work")
    bootstrap.run({"task": TINY_TASK, "bootstrap": TINY_BOOTSTRAP, "seed": 0}, {}, out, work)
    return {"base": str(out / "base"), "behavior": str(out / "behavior")}
