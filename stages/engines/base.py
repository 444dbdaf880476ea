"""The engine protocol and the row types every engine returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Generation:
    token_ids: list[int]          # response tokens, up to and including EOS when it stopped
    text: str                     # decoded response, special tokens removed
    logprobs: list[float]         # log π(token) of each sampled token, temperature 1
    finish_reason: str            # "stop" (EOS) or "length"


@dataclass
class Scored:
    logprobs: list[float]                                     # one per response token
    topk_ids: list[list[int]] = field(default_factory=list)   # [T][K] when topk > 0
    topk_logprobs: list[list[float]] = field(default_factory=list)


class Engine(Protocol):
    tokenizer: object

    def generate(self, prompts: list[str], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: int) -> list[list[Generation]]: ...

    def score(self, prompt_ids: list[list[int]], response_ids: list[list[int]],
              topk: int = 0) -> list[Scored]: ...

    def close(self) -> None: ...
