"""The vLLM engine's own code without vLLM: conversions of vLLM's outputs (hand-built, with the
fields vLLM's ``Logprob`` / ``CompletionOutput`` carry), request parameters, the CPU overrides,
stop ids and the head-size check. The real engine runs in ``tests/test_vllm_cpu.py``.
"""
from __future__ import annotations

import json
import shutil

import pytest

from stages.engines import make_engine
from stages.engines.vllm import (check_head_dim, generation_from_vllm, llm_kwargs, platform_cfg,
                                 prompt_seed, sampling_kwargs, scored_from_vllm, scoring_kwargs,
                                 stop_token_ids)
from vllm_support import HAVE_VLLM, HF, vllm_cfg


class LP:  # the two fields of vllm.logprobs.Logprob that the conversion reads
    def __init__(self, logprob: float, rank: int | None = None) -> None:
        self.logprob, self.rank = logprob, rank


class Completion:  # the fields of vllm.outputs.CompletionOutput that the conversion reads
    def __init__(self, token_ids, logprobs, finish_reason, index=0) -> None:
        self.token_ids, self.logprobs = token_ids, logprobs
        self.finish_reason, self.index = finish_reason, index


# -- our conversions, on hand-built outputs (no vLLM needed) ----------------------------------
def test_generation_keeps_ids_eos_and_sampled_logprobs(tiny_models):
    tok = make_engine(tiny_models["base"], {**HF, "batch_size": 8}).tokenizer
    eos = tok.eos_token_id
    ids = tok("3+4", add_special_tokens=False)["input_ids"] + [eos]
    lps = [{t: LP(-0.5 - i, 3), 0: LP(-0.01, 1)} for i, t in enumerate(ids)]
    g = generation_from_vllm(Completion(ids, lps, "stop"), tok)
    assert g.token_ids == ids and g.text == "3+4" and g.finish_reason == "stop"
    assert g.logprobs == [-0.5, -1.5, -2.5, -3.5]
    with pytest.raises(RuntimeError, match="abort"):
        generation_from_vllm(Completion(ids, lps, "abort"), tok)
    with pytest.raises(ValueError, match="logprobs=0"):
        generation_from_vllm(Completion(ids, None, "stop"), tok)
    with pytest.raises(ValueError, match="positions"):
        generation_from_vllm(Completion(ids, lps[:-1], "length"), tok)


def test_scores_read_the_response_positions_and_the_topk():
    # sequence = prompt [11, 12] + response [13, 14]; position j scores token j given < j
    plp = [None, {12: LP(-9.0, 5)}, {13: LP(-0.7, 2), 99: LP(-0.2, 1), 77: LP(-3.0, 3)},
           {14: LP(-4.0, 7), 50: LP(-0.1, 1), 51: LP(-0.3, 2)}]
    s = scored_from_vllm(plp, prompt_len=2, response_ids=[13, 14], topk=2)
    assert s.logprobs == [-0.7, -4.0]
    assert s.topk_ids == [[99, 13], [50, 51]]            # the actual token only when in the top-k
    assert s.topk_logprobs == [[-0.2, -0.7], [-0.1, -0.3]]
    assert scored_from_vllm(plp, 2, [13, 14]).topk_ids == []
    with pytest.raises(ValueError, match="positions"):
        scored_from_vllm(plp[:-1], 2, [13, 14])
    with pytest.raises(ValueError, match="alternatives"):
        scored_from_vllm(plp, 2, [13, 14], topk=4)


def test_request_parameters_and_the_cpu_overrides():
    cfg = vllm_cfg(tensor_parallel_size=2, engine_kwargs={"quantization": "fp8"})
    gpu = llm_kwargs("Qwen/Qwen3-8B", platform_cfg(cfg, on_cpu=False))
    assert gpu["tensor_parallel_size"] == 2 and gpu["quantization"] == "fp8"
    assert gpu["logprobs_mode"] == "raw_logprobs" and gpu["dtype"] == "auto"
    assert "kv_cache_memory_bytes" not in gpu and gpu["gpu_memory_utilization"] == 0.85
    cpu_cfg = platform_cfg(cfg, on_cpu=True)
    cpu = llm_kwargs("m", cpu_cfg)
    assert cpu["dtype"] == "float32" and cpu["enforce_eager"] is True
    assert cpu["distributed_executor_backend"] == "uni" and cpu["kv_cache_memory_bytes"] > 0
    assert cpu_cfg["env"]["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and "cpu" not in cpu_cfg
    s = sampling_kwargs(n=4, temperature=1.0, top_p=0.95, max_new_tokens=64, seed=7, stop=[1, 5])
    assert s["logprobs"] == 0 and s["seed"] == 7 and s["stop_token_ids"] == [1, 5]
    assert scoring_kwargs(3)["prompt_logprobs"] == 3
    with pytest.raises(ValueError, match="n=1"):
        sampling_kwargs(n=2, temperature=0.0, top_p=1.0, max_new_tokens=4, seed=0)
    # vLLM seeds sample j of a request with seed + j: no two samples of a call may share one
    seeds = [prompt_seed(7, i) + j for i in range(100) for j in range(64)]
    assert len(set(seeds)) == len(seeds) and max(seeds) < 2**63


def test_stop_ids_come_from_the_tokenizer_and_the_generation_config(tiny_models, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_models["base"], model)
    tok = make_engine(str(model), {**HF, "batch_size": 8}).tokenizer
    eos = tok.eos_token_id
    gen = json.loads((model / "generation_config.json").read_text())
    assert stop_token_ids(str(model), tok) == [eos]
    for value, want in ((7, [eos, 7]), ([eos, 9, 3], sorted({eos, 9, 3})), (None, [eos])):
        (model / "generation_config.json").write_text(json.dumps({**gen, "eos_token_id": value}))
        assert stop_token_ids(str(model), tok) == sorted(want)


def test_a_head_size_the_attention_backend_refuses_is_named(tiny_models):
    check_head_dim("Qwen/Qwen3-8B", [32])  # a hub id: left to vLLM
    with pytest.raises(ValueError, match="head_dim 16 is not supported.*32"):
        check_head_dim(tiny_models["base"], [32, 64, 128])  # the default tiny test models: 16


@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed")
def test_vllm_is_imported_only_when_the_engine_is_built(tiny_models):
    with pytest.raises(ModuleNotFoundError, match="vllm"):
        make_engine(tiny_models["base"], vllm_cfg())


def test_every_engine_has_its_config_file_and_back():
    import yaml

    from conftest import ROOT
    from stages.engines import ENGINES
    from stages.rl_engines import ENGINES as RL_ENGINES

    for group, registry in (("sampler", ENGINES), ("rl", RL_ENGINES)):
        confs = {p.stem: yaml.safe_load(p.read_text())["engine"]
                 for p in (ROOT / "conf" / group).glob("*.yaml")}
        assert set(confs.values()) == set(registry), group
        assert all(name == engine for name, engine in confs.items()), group
