"""Shared by the tests that run the real vLLM (marked ``vllm``; the vllm-cpu environment,
``scripts/vllm_cpu_env.sh``): the skip when vLLM is not installed, the engine settings, and toy
models whose attention head size vLLM's CPU attention accepts (head_dim 32; it refuses 16)."""
from __future__ import annotations

import copy
import importlib.util

import pytest

from conftest import TINY_BOOTSTRAP, TINY_TASK

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = [pytest.mark.vllm, pytest.mark.skipif(
    not HAVE_VLLM, reason="vLLM is not installed: build its environment with "
    "scripts/vllm_cpu_env.sh and run `pytest -m \"vllm and not slow\"` there")]

HF = {"engine": "hf", "device": "cpu", "dtype": "float32", "batch_size": 64}


def vllm_cfg(**over) -> dict:
    """conf/sampler/vllm.yaml as Hydra composes it, with ``over`` on top."""
    from omegaconf import OmegaConf

    from conftest import ROOT

    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "sampler" / "vllm.yaml"),
                                 resolve=True)
    return {**cfg, **over}


@pytest.fixture(scope="session")
def vllm_models(tmp_path_factory) -> dict[str, str]:
    """The bootstrap stage's tiny base and behavior models, with head_dim 32."""
    from stages import bootstrap

    boot = copy.deepcopy(TINY_BOOTSTRAP)
    boot["arch"].update(hidden_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=32)
    out = tmp_path_factory.mktemp("bootstrap-hd32")
    bootstrap.run({"task": TINY_TASK, "bootstrap": boot, "seed": 0}, {}, out,
                  tmp_path_factory.mktemp("bootstrap-hd32-work"))
    return {"base": str(out / "base"), "behavior": str(out / "behavior")}
