"""The transformers engine (CPU or one GPU): ``model.generate`` and a teacher-forced forward.

Sampled log-probs come from the raw logits of each generation step (``output_logits=True``),
i.e. log-softmax at temperature 1 before top-p, the same quantity the score stage recomputes by
teacher forcing (a test checks the two agree). Each call to ``generate`` is seeded, so the rows
depend only on (prompts, seed), not on what ran before in the process.

Generation stops on every EOS id of the model directory's ``generation_config.json`` and the
tokenizer's EOS (``stop_token_ids``): an SFT checkpoint lists the end-of-turn token its training
responses end with there (``stages/sft_output.py``), as the vLLM engine passes the same ids.
Scoring never builds the ``[B, T, V]`` logits: decoder hidden states, then the output head on the
response positions, a chunk at a time (``head_logprobs``), in the model's dtype.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from stages.common import device, dtype, load_model, load_tokenizer
from stages.engines.base import Generation, Scored
from stages.sft_output import stop_token_ids


class HFEngine:
    def __init__(self, model: str, cfg: Mapping[str, Any]) -> None:
        self.device = device(cfg.get("device", "auto"))
        self.tokenizer = load_tokenizer(model)
        self.tokenizer.padding_side = "left"
        self.model = load_model(model, self.device, dtype(cfg.get("dtype", "auto")))
        self.stop_ids = stop_token_ids(model, self.tokenizer)
        self.batch_size = int(cfg.get("batch_size", 64))

    @torch.no_grad()
    def generate(self, prompts: list[str], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: int) -> list[list[Generation]]:
        greedy = temperature <= 0
        if greedy and n != 1:
            raise ValueError("greedy decoding (temperature 0) gives identical samples; use n=1")
        tok = self.tokenizer
        per_batch = max(1, self.batch_size // n)
        results: list[list[Generation]] = []
        for b, start in enumerate(range(0, len(prompts), per_batch)):
            chunk = prompts[start:start + per_batch]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            torch.manual_seed(seed * 1_000_003 + b)
            out = self.model.generate(
                **enc, do_sample=not greedy, temperature=None if greedy else temperature,
                top_p=None if greedy else top_p, top_k=None, max_new_tokens=max_new_tokens,
                num_return_sequences=n, output_logits=True, return_dict_in_generate=True,
                pad_token_id=tok.pad_token_id, eos_token_id=self.stop_ids)
            new = out.sequences[:, enc["input_ids"].shape[1]:]
            lp = torch.stack([torch.log_softmax(step.float(), -1).gather(-1, new[:, i, None])[:, 0]
                              for i, step in enumerate(out.logits)], dim=1)  # [B*n, steps]
            rows = [self._row(new[i], lp[i]) for i in range(new.shape[0])]
            results.extend(rows[i * n:(i + 1) * n] for i in range(len(chunk)))
        return results

    def _row(self, ids: torch.Tensor, lp: torch.Tensor) -> Generation:
        hits = torch.isin(ids, torch.tensor(self.stop_ids, device=ids.device)).nonzero()
        if len(hits):
            end, reason = int(hits[0]) + 1, "stop"
        else:
            end, reason = ids.shape[0], "length"
        token_ids = ids[:end].tolist()
        return Generation(token_ids=token_ids,
                          text=self.tokenizer.decode(token_ids, skip_special_tokens=True),
                          logprobs=lp[:end].tolist(), finish_reason=reason)

    @torch.no_grad()
    def score(self, prompt_ids: list[list[int]], response_ids: list[list[int]],
              topk: int = 0) -> list[Scored]:
        from stages.objectives import head_logprobs, lm_hidden

        order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]) + len(response_ids[i]))
        results: list[Scored | None] = [None] * len(order)
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            seqs = [list(prompt_ids[i]) + list(response_ids[i]) for i in idx]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            attn = torch.zeros_like(ids)
            for r, s in enumerate(seqs):
                ids[r, :len(s)] = torch.tensor(s)
                attn[r, :len(s)] = 1
            labels = torch.full_like(ids, -100)  # position t predicts token t+1; responses only
            for r, i in enumerate(idx):
                p, t = len(prompt_ids[i]), len(response_ids[i])
                labels[r, p - 1:p - 1 + t] = ids[r, p:p + t]
            ids, attn, labels = ids.to(self.device), attn.to(self.device), labels.to(self.device)
            hidden, head = lm_hidden(self.model, ids, attn)
            lp, tk_ids, tk_lp = head_logprobs(hidden, head, labels, topk=topk)
            for r, i in enumerate(idx):
                p, t = len(prompt_ids[i]), len(response_ids[i])
                sl = slice(p - 1, p - 1 + t)
                row = Scored(logprobs=lp[r, sl].tolist())
                if topk:
                    row.topk_ids, row.topk_logprobs = tk_ids[r, sl].tolist(), tk_lp[r, sl].tolist()
                results[i] = row
        return results  # type: ignore[return-value]

    def close(self) -> None:
        del self.model
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
