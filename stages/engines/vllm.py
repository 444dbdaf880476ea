"""The vLLM engine (GPU): offline ``vllm.LLM`` for sampling and teacher-forced scoring.

NOT EXECUTED IN THIS REPOSITORY: vLLM cannot be installed on our CPU machines (LIBRARIES.md), so
this module follows vLLM's documented API (read from vllm-project/vllm, the 0.2x line that
``verl[vllm]==0.9.1`` pins: vllm 0.24.0) and only its pure conversion functions run in the tests,
on objects of exactly the shapes vLLM documents (``tests/test_vllm_engine.py``). The shapes:

* ``LLM.generate`` returns one ``RequestOutput`` per prompt, in prompt order, with
  ``.outputs``: ``CompletionOutput(index, text, token_ids, cumulative_logprob, logprobs,
  finish_reason, ...)``. ``token_ids`` includes the stop token (EOS) when it stopped on one (the
  detokenizer only leaves it out of ``text``); ``finish_reason`` is "stop", "length" or "abort".
* ``logprobs`` (sample) is one ``dict[token_id -> Logprob(logprob, rank, decoded_token)]`` per
  generated token, holding the sampled token and the top-``k`` alternatives (``logprobs=0``:
  the sampled token only). ``prompt_logprobs`` is the same per prompt token, with ``None`` at
  position 0 (nothing predicts the first token). Newer versions may return ``FlatLogprobs``,
  which indexes and iterates like that list of dicts; the conversion uses only that.

Which log-probs: vLLM's ``logprobs_mode`` (``ModelConfig``) is ``raw_logprobs`` by default,
"the values before applying any logit processors ... processed means after ... temperature and
top_k/top_p". We request ``raw_logprobs`` explicitly (``conf/sampler/vllm.yaml``), so sampled
log-probs are log-softmax of the unscaled logits: log π_β at temperature 1, before top-p, the
quantity the hf engine returns and PEAR's ratios need. Prompt log-probs are log-softmax of the
raw logits in every mode. Requests with ``prompt_logprobs`` skip reading the prefix cache (vLLM
sets ``skip_reading_prefix_cache`` for them), so every scored position is computed.

Deviations from the hf engine, all small: prompts go in as token ids (``TokensPrompt``-shaped
dicts) tokenized exactly as the sample stage records them; each prompt gets its own sampling
seed (``prompt_seed``), so rows depend on (prompt position, seed) and not on batching, up to
vLLM's numerics (bf16 kernels are not batch-invariant; the score stage reports the largest
sampled-vs-scored gap).

Stop ids: both engines stop on the EOS ids of the model directory's ``generation_config.json``
and the tokenizer's EOS (``stages.sft_output.stop_token_ids``), passed as ``stop_token_ids``
(vLLM also adds the generation config's EOS ids itself); an SFT checkpoint lists the end-of-turn
token of its training responses there. vLLM keeps the stop token in ``token_ids``.
"""
from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from typing import Any

from stages.engines.base import Generation, Scored

FINISH_REASONS = {"stop": "stop", "length": "length"}

# conf/sampler/vllm.yaml key -> vllm.LLM (EngineArgs) keyword; None values are left to vLLM.
LLM_KEYS = ("dtype", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len",
            "max_num_seqs", "enforce_eager", "enable_prefix_caching", "seed", "logprobs_mode",
            "max_logprobs", "distributed_executor_backend", "trust_remote_code")


def llm_kwargs(model: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` from the sampler config (pure; tested)."""
    kw = {"model": model, **{k: cfg[k] for k in LLM_KEYS if cfg.get(k) is not None}}
    kw.setdefault("logprobs_mode", "raw_logprobs")
    kw.setdefault("max_logprobs", 20)  # vLLM's cap on top-k per position (its default too)
    kw.update(dict(cfg.get("engine_kwargs") or {}))
    return kw


def prompt_seed(seed: int, i: int) -> int:
    """Sampling seed of the i-th prompt of a call. vLLM gives sample j of a request seed + j, so
    prompts are 2**16 apart: no two samples of one call share a random stream."""
    return ((seed * 1_000_003 + i) << 16) % 2**63


def sampling_kwargs(n: int, temperature: float, top_p: float, max_new_tokens: int,
                    seed: int, stop_token_ids: Sequence[int] = ()) -> dict[str, Any]:
    """``SamplingParams`` for ``generate``: sampled-token log-probs only, no detokenizing, stop
    on ``stop_token_ids``."""
    if temperature <= 0 and n != 1:
        raise ValueError("greedy decoding (temperature 0) gives identical samples; use n=1")
    if n > 2**16:
        raise ValueError(f"n={n}: at most {2**16} samples per prompt")
    return {"n": n, "temperature": max(0.0, temperature), "top_p": top_p if temperature > 0 else 1.0,
            "max_tokens": max_new_tokens, "seed": seed, "logprobs": 0, "detokenize": False,
            "stop_token_ids": [int(t) for t in stop_token_ids]}


def scoring_kwargs(topk: int) -> dict[str, Any]:
    """``SamplingParams`` for ``score``: teacher-forced ``prompt_logprobs``, one dummy token."""
    return {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": int(topk), "detokenize": False}


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
    lps = [float(position[t].logprob) for position, t in zip(completion.logprobs, ids)]
    return Generation(token_ids=ids, text=tokenizer.decode(ids, skip_special_tokens=True),
                      logprobs=lps, finish_reason=reason)


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
    row = Scored(logprobs=[])
    for t, tok in enumerate(response_ids):
        position = prompt_logprobs[prompt_len + t]
        row.logprobs.append(float(position[int(tok)].logprob))
        if topk:
            best = sorted(position.items(), key=lambda kv: -kv[1].logprob)[:topk]
            if len(best) < topk:
                raise ValueError(f"vLLM returned {len(best)} alternatives, asked for top-{topk}")
            row.topk_ids.append([int(k) for k, _ in best])
            row.topk_logprobs.append([float(v.logprob) for _, v in best])
    return row


class VLLMEngine:
    """The engine protocol (``stages.engines.base.Engine``) over ``vllm.LLM``.

    ``llm`` and ``params`` (the ``SamplingParams`` class) can be given to run this class without
    vLLM: the tests pass stand-ins that return vLLM's documented output shapes.
    """

    def __init__(self, model: str, cfg: Mapping[str, Any], llm: Any = None, params: Any = None) -> None:
        from stages.common import load_tokenizer
        from stages.sft_output import stop_token_ids

        self.tokenizer = load_tokenizer(model)
        self.stop_ids = stop_token_ids(model, self.tokenizer)
        kw = llm_kwargs(model, cfg)
        self.max_logprobs = int(kw["max_logprobs"])
        if llm is None:
            from vllm import LLM, SamplingParams  # GPU-only dependency: the [gpu] extra

            llm, params = LLM(**kw), SamplingParams
        self.llm, self.params = llm, params

    def _token_prompts(self, token_ids: Sequence[Sequence[int]]) -> list[dict[str, list[int]]]:
        return [{"prompt_token_ids": [int(t) for t in ids]} for ids in token_ids]  # TokensPrompt

    def generate(self, prompts: list[str], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: int) -> list[list[Generation]]:
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        params = [self.params(**sampling_kwargs(n, temperature, top_p, max_new_tokens,
                                                prompt_seed(seed, i), self.stop_ids))
                  for i in range(len(ids))]
        outs = self.llm.generate(self._token_prompts(ids), params, use_tqdm=False)
        return [generations_from_vllm(o, self.tokenizer) for o in outs]

    def score(self, prompt_ids: list[list[int]], response_ids: list[list[int]],
              topk: int = 0) -> list[Scored]:
        if topk > self.max_logprobs:
            raise ValueError(f"top-{topk} scores need sampler.max_logprobs >= {topk} "
                             f"(now {self.max_logprobs})")
        seqs = [list(p) + list(r) for p, r in zip(prompt_ids, response_ids)]
        outs = self.llm.generate(self._token_prompts(seqs), self.params(**scoring_kwargs(topk)),
                                 use_tqdm=False)
        return [scored_from_vllm(o.prompt_logprobs, len(p), r, topk)
                for o, p, r in zip(outs, prompt_ids, response_ids)]

    def close(self) -> None:
        """Best effort: vLLM frees its GPU memory when the engine is collected; the stage's Ray
        worker (num_gpus > 0) also exits after the task (Ray's default max_calls=1 for GPU tasks)."""
        shutdown = getattr(getattr(self.llm, "llm_engine", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        del self.llm
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
