"""The vLLM engine without vLLM: its conversions on objects of vLLM's documented shapes, and the
engine contract against the hf engine with a stand-in ``LLM`` that answers from the same model.

vLLM cannot be installed here (LIBRARIES.md). The stand-ins below mirror, field for field,
``vllm.logprobs.Logprob``, ``vllm.outputs.CompletionOutput`` and ``vllm.outputs.RequestOutput``
(read from vllm-project/vllm): per generated token a ``dict[token_id -> Logprob]`` with the
sampled token plus the top-k; ``prompt_logprobs`` the same per prompt token with ``None`` first.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from stages.engines import make_engine
from stages.engines.vllm import (VLLMEngine, generation_from_vllm, llm_kwargs, prompt_seed,
                                 sampling_kwargs, scored_from_vllm, scoring_kwargs)

HF = {"engine": "hf", "device": "cpu", "dtype": "float32", "batch_size": 8}
VLLM = {"engine": "vllm", "tensor_parallel_size": 1, "max_logprobs": 20}
PROMPTS = ["3+4=", "7-2+5=", "9+9-1="]

@dataclass
class SamplingParams:  # the vllm.SamplingParams fields the engine uses, with vLLM's defaults
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    max_tokens: int | None = 16
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    detokenize: bool = True
    stop_token_ids: list[int] | None = None


@dataclass
class Logprob:  # vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


def request_output(prompt_ids, outputs, prompt_logprobs=None):  # vllm.outputs.RequestOutput
    return SimpleNamespace(request_id="0", prompt=None, prompt_token_ids=prompt_ids,
                           prompt_logprobs=prompt_logprobs, outputs=outputs, finished=True)


def position(logprobs: torch.Tensor, token: int, k: int) -> dict[int, Logprob]:
    """What vLLM returns for one position: the given token with its rank, then the top-k."""
    rank = int((logprobs > logprobs[token]).sum()) + 1
    out = {token: Logprob(float(logprobs[token]), rank)}
    if k:
        top = torch.topk(logprobs, k)
        for r, (v, i) in enumerate(zip(top.values, top.indices), start=1):
            out[int(i)] = Logprob(float(v), r)
    return out


class HFBackedLLM:
    """Stand-in for ``vllm.LLM`` that answers ``generate`` from a transformers model."""

    def __init__(self, model, eos: int) -> None:
        self.model, self.eos = model, eos

    @torch.no_grad()
    def generate(self, prompts, sampling_params, use_tqdm=True):
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        return [self._one(p["prompt_token_ids"], sp) for p, sp in zip(prompts, params)]

    def _one(self, ids, sp):
        x = torch.tensor([ids])
        if sp.prompt_logprobs is not None:
            lp = torch.log_softmax(self.model(input_ids=x).logits[0].float(), -1)
            plp = [None] + [position(lp[j - 1], ids[j], sp.prompt_logprobs) for j in range(1, len(ids))]
            done = CompletionOutput(0, "", [int(lp[-1].argmax())], None, None, "length")
            return request_output(ids, [done], plp)
        outs = []
        for i in range(sp.n):
            torch.manual_seed(sp.seed + i)  # vLLM: child request i of a parent gets seed + i
            g = self.model.generate(x, attention_mask=torch.ones_like(x), do_sample=True,
                                    temperature=sp.temperature, top_p=sp.top_p, top_k=None,
                                    max_new_tokens=sp.max_tokens, output_logits=True,
                                    return_dict_in_generate=True, pad_token_id=self.eos,
                                    eos_token_id=self.eos)
            new = g.sequences[0, len(ids):].tolist()
            lps = torch.log_softmax(torch.stack(g.logits, 1)[0].float(), -1)
            end = new.index(self.eos) + 1 if self.eos in new else len(new)
            pos = [position(lps[t], new[t], sp.logprobs) for t in range(end)]
            outs.append(CompletionOutput(i, "", new[:end], None, pos,
                                         "stop" if self.eos in new else "length"))
        return request_output(ids, outs[::-1])  # any order: the engine sorts by index


@pytest.fixture(scope="module")
def engines(tiny_models):
    hf = make_engine(tiny_models["behavior"], HF)
    fake = HFBackedLLM(hf.model, hf.tokenizer.eos_token_id)
    vl = VLLMEngine(tiny_models["behavior"], VLLM, llm=fake, params=SamplingParams)
    return hf, vl


def rows(gens):
    return [[(g.token_ids, g.text, g.finish_reason) for g in x] for x in gens]


# -- the conversions, on hand-built outputs ---------------------------------------------------
def test_generation_keeps_ids_eos_and_sampled_logprobs(tiny_models):
    tok = make_engine(tiny_models["base"], HF).tokenizer
    eos = tok.eos_token_id
    ids = tok("3+4", add_special_tokens=False)["input_ids"] + [eos]
    lps = [{t: Logprob(-0.5 - i, 3), 0: Logprob(-0.01, 1)} for i, t in enumerate(ids)]
    g = generation_from_vllm(CompletionOutput(0, "ignored", ids, None, lps, "stop"), tok)
    assert g.token_ids == ids and g.text == "3+4" and g.finish_reason == "stop"
    assert g.logprobs == [-0.5, -1.5, -2.5, -3.5]
    with pytest.raises(RuntimeError, match="abort"):
        generation_from_vllm(CompletionOutput(0, "", ids, None, lps, "abort"), tok)
    with pytest.raises(ValueError, match="logprobs=0"):
        generation_from_vllm(CompletionOutput(0, "", ids, None, None, "stop"), tok)
    with pytest.raises(ValueError, match="positions"):
        generation_from_vllm(CompletionOutput(0, "", ids, None, lps[:-1], "length"), tok)


def test_scores_read_the_response_positions_and_the_topk():
    # sequence = prompt [11, 12] + response [13, 14]; position j scores token j given < j
    plp = [None, {12: Logprob(-9.0, 5)},
           {13: Logprob(-0.7, 2), 99: Logprob(-0.2, 1), 77: Logprob(-3.0, 3)},
           {14: Logprob(-4.0, 7), 50: Logprob(-0.1, 1), 51: Logprob(-0.3, 2)}]
    s = scored_from_vllm(plp, prompt_len=2, response_ids=[13, 14], topk=2)
    assert s.logprobs == [-0.7, -4.0]
    assert s.topk_ids == [[99, 13], [50, 51]]            # the actual token only when in the top-k
    assert s.topk_logprobs == [[-0.2, -0.7], [-0.1, -0.3]]
    assert scored_from_vllm(plp, 2, [13, 14]).topk_ids == []
    with pytest.raises(ValueError, match="positions"):
        scored_from_vllm(plp[:-1], 2, [13, 14])


def test_request_parameters_are_vllms_and_ask_for_raw_logprobs():
    kw = llm_kwargs("Qwen/Qwen3-8B", {"engine": "vllm", "tensor_parallel_size": 2,
                                       "max_model_len": None, "engine_kwargs": {"quantization": "fp8"}})
    assert kw == {"model": "Qwen/Qwen3-8B", "tensor_parallel_size": 2, "logprobs_mode": "raw_logprobs",
                  "max_logprobs": 20, "quantization": "fp8"}
    s = sampling_kwargs(n=4, temperature=1.0, top_p=0.95, max_new_tokens=64, seed=7)
    assert s["logprobs"] == 0 and s["seed"] == 7 and s["n"] == 4
    SamplingParams(**s), SamplingParams(**scoring_kwargs(3))  # only vLLM's field names
    with pytest.raises(ValueError, match="n=1"):
        sampling_kwargs(n=2, temperature=0.0, top_p=1.0, max_new_tokens=4, seed=0)
    # vLLM seeds sample j of a request with seed + j: no two samples of a call may share one
    seeds = [prompt_seed(7, i) + j for i in range(100) for j in range(64)]
    assert len(set(seeds)) == len(seeds) and max(seeds) < 2**63


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_is_imported_only_when_the_engine_is_built(tiny_models):
    with pytest.raises(ModuleNotFoundError, match="vllm"):
        make_engine(tiny_models["base"], VLLM)


# -- the engine contract, vLLM engine vs hf engine on the same model ------------------------
def test_both_engines_score_the_same_rows_alike(engines):
    hf, vl = engines
    p_ids = [hf.tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    gens = hf.generate(PROMPTS, n=2, temperature=1.0, top_p=1.0, max_new_tokens=10, seed=3)
    p_rows = [p for p in p_ids for _ in range(2)]
    r_rows = [g.token_ids for x in gens for g in x]
    a, b = hf.score(p_rows, r_rows, topk=3), vl.score(p_rows, r_rows, topk=3)
    for x, y in zip(a, b):
        assert y.logprobs == pytest.approx(x.logprobs, abs=1e-5)
        assert y.topk_ids == x.topk_ids
        assert y.topk_logprobs == [pytest.approx(t, abs=1e-5) for t in x.topk_logprobs]
    with pytest.raises(ValueError, match="max_logprobs >= 21"):
        vl.score(p_rows, r_rows, topk=21)


def test_vllm_engine_generations_meet_the_hf_contract(engines):
    hf, vl = engines
    a = vl.generate(PROMPTS, n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=5)
    assert rows(a) == rows(vl.generate(PROMPTS, n=3, temperature=1.0, top_p=1.0,
                                       max_new_tokens=12, seed=5))
    assert rows(a) != rows(vl.generate(PROMPTS, n=3, temperature=1.0, top_p=1.0,
                                       max_new_tokens=12, seed=6))
    eos = vl.tokenizer.eos_token_id
    p_ids = [vl.tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    flat = [g for x in a for g in x]
    scored = hf.score([p for p in p_ids for _ in range(3)], [g.token_ids for g in flat])
    assert [len(x) for x in a] == [3, 3, 3]
    for g, s in zip(flat, scored):
        assert len(g.logprobs) == len(g.token_ids) <= 12
        assert all(lp <= 0 and math.isfinite(lp) for lp in g.logprobs)
        assert (g.finish_reason == "stop") == (g.token_ids[-1] == eos) and eos not in g.token_ids[:-1]
        assert g.text == hf.tokenizer.decode(g.token_ids, skip_special_tokens=True)
        assert s.logprobs == pytest.approx(g.logprobs, abs=1e-4)  # sampled == teacher-forced


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
