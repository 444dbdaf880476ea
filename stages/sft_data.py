"""The sft stage's data: held-out split, row selection, batches, epoch order, end-of-turn ids.

Rows are the score stage's ``scored.parquet`` (prompt and response token ids, behavior
log-probs, the verifier's ``correct``, the sampler's ``finish_reason``). ``Collator`` builds
right-padded batches whose per-token tensors sit at label positions, so the model's ``[B, L, V]``
logits are used whole (``logits[:, :-1]`` would be a copy). ``EpochSampler`` fixes the order of
every epoch from the seed, the same on every rank. ``turn_end_ids`` reads which tokens ended the
behavior's turns, the ids an SFT checkpoint must stop on (``stages/sft_output.py``).
"""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pandas as pd
import torch


def split_heldout(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = sorted(df["prompt_id"].unique())
    random.Random(seed).shuffle(ids)
    held = set(ids[:int(round(fraction * len(ids)))])
    mask = df["prompt_id"].isin(held)
    return df[~mask].reset_index(drop=True), df[mask].reset_index(drop=True)


BUDGETS = ("fixed", "added")


def select_rows(train: pd.DataFrame, data_cfg: dict, uses_negatives: bool, seed: int) -> pd.DataFrame:
    """The rows an objective trains on: every verified-correct row; for an objective that learns
    from failures (``pear_neg``), positives and verified failures by ``data_cfg``:

    * ``budget: fixed`` (default; PEAR §4.5: 50K positives + 50K negatives against 100K
      positives): as many rows as the positive-only objectives get (P = all positives), of
      which ``negatives_ratio`` failures per positive: round(P / (1 + r)) positives and the
      rest failures, both seeded samples. Too few failures: all of them, positives fill the rest.
    * ``budget: added``: every positive plus ``negatives_ratio`` × P failures on top (more
      examples and optimizer steps than the other objectives).

    An answer the verifier ran out of time on (``timed_out``) was never judged: it is no failure.
    """
    pos = train[train["correct"]]
    if not uses_negatives:
        return pos.reset_index(drop=True)
    budget, ratio = str(data_cfg.get("budget", "fixed")), float(data_cfg.get("negatives_ratio", 1.0))
    if budget not in BUDGETS:
        raise ValueError(f"objective.data.budget={budget!r}; valid: {', '.join(BUDGETS)}")
    if not ratio >= 0:
        raise ValueError(f"objective.data.negatives_ratio must be >= 0, got {ratio}")
    neg = train[failures(train)]
    if budget == "added":
        k = min(len(neg), int(round(ratio * len(pos))))
        return pd.concat([pos, neg.sample(n=k, random_state=seed)], ignore_index=True)
    k = min(len(neg), len(pos) - int(round(len(pos) / (1.0 + ratio))))
    return pd.concat([pos.sample(n=len(pos) - k, random_state=seed), neg.sample(n=k, random_state=seed)],
                     ignore_index=True)


def failures(train: pd.DataFrame) -> pd.Series:
    """Verified failures: judged wrong, and judged at all (not ``timed_out``)."""
    failed = ~train["correct"].astype(bool)
    if "timed_out" in train:
        failed &= ~train["timed_out"].astype(bool)
    return failed


def budget_record(train: pd.DataFrame, data_cfg: dict) -> dict:
    """The manifest's record of an objective with negatives: its budget rule and ratio, and the
    positives and failures it chose from (after the held-out split)."""
    return {"budget": str(data_cfg.get("budget", "fixed")),
            "negatives_ratio": float(data_cfg.get("negatives_ratio", 1.0)),
            "positives_available": int(train["correct"].sum()),
            "negatives_available": int(failures(train).sum())}


def to_examples(df: pd.DataFrame, topk: bool) -> list[dict]:
    cols = ["prompt_ids", "response_ids", "behavior_logprobs", "correct"]
    if topk:
        cols += ["behavior_topk_ids", "behavior_topk_logprobs"]
    return [dict(zip(cols, r)) for r in df[cols].itertuples(index=False)]


class Collator:
    """Right-padded batches with every per-token tensor shifted to label positions.

    Position t of the [B, L] tensors predicts token t+1 of the row (the last position predicts
    nothing: mask 0); ``mask`` is 1 where that token is a response token, and ``logp_beta`` holds
    its stored behavior log-prob there. L positions, not L-1, so that the model's logits are used
    whole: ``logits[:, :-1]`` is a non-contiguous view that would be copied.
    """

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        L = max(len(r["prompt_ids"]) + len(r["response_ids"]) for r in rows)
        B = len(rows)
        ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        attn = torch.zeros((B, L), dtype=torch.long)
        mask = torch.zeros((B, L))
        beta = torch.zeros((B, L))
        topk = "behavior_topk_ids" in rows[0]
        if topk:
            K = len(rows[0]["behavior_topk_ids"][0])
            tk_ids = torch.zeros((B, L, K), dtype=torch.long)
            tk_lp = torch.full((B, L, K), -1e4)
        for i, r in enumerate(rows):
            p, t = len(r["prompt_ids"]), len(r["response_ids"])
            ids[i, :p + t] = torch.tensor(list(r["prompt_ids"]) + list(r["response_ids"]))
            attn[i, :p + t] = 1
            if r.get("pad"):  # filler row of data parallel training: attended, never learned
                continue
            mask[i, p - 1:p - 1 + t] = 1
            beta[i, p - 1:p - 1 + t] = torch.tensor(list(r["behavior_logprobs"]), dtype=torch.float)
            if topk:
                tk_ids[i, p - 1:p - 1 + t] = torch.tensor([list(x) for x in r["behavior_topk_ids"]])
                tk_lp[i, p - 1:p - 1 + t] = torch.tensor([list(x) for x in r["behavior_topk_logprobs"]])
        out = {"input_ids": ids, "attention_mask": attn, "loss_mask": mask, "logp_beta": beta,
               "correct": torch.tensor([bool(r["correct"]) for r in rows])}
        if topk:
            out["beta_topk_ids"], out["beta_topk_logp"] = tk_ids, tk_lp
        return out


def shifted_labels(ids: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` labels on the logits' positions: token t+1 at t, -100 (no label) at the end."""
    return torch.nn.functional.pad(ids[:, 1:], (0, 1), value=-100)


class EpochSampler(torch.utils.data.Sampler):
    """The order of one epoch, seeded by (seed, epoch): every rank draws the same, and a resumed
    run the same batches.

    A random permutation (as accelerate's ``SeedableRandomSampler`` draws it on one process), or
    with ``group_by_length`` batches of similar length (transformers'
    ``get_length_grouped_indices``), grouped by the global micro-batch, so the number of ranks
    never changes the order. ``pad_index`` (several ranks) fills the last global batch up to
    ``batch_size`` with a row the loss ignores, so that every rank gets its slice of each batch.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool,
                 pad_index: int | None = None) -> None:
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.group_by_length, self.pad_index, self.epoch = group_by_length, pad_index, 0

    def set_epoch(self, epoch: int) -> None:  # accelerate's dataloader calls it every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.lengths)
        return n if self.pad_index is None else n + (-n % self.batch_size)

    def __iter__(self):
        from transformers.trainer_pt_utils import get_length_grouped_indices

        g = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.group_by_length:
            order = get_length_grouped_indices(self.lengths, self.batch_size, generator=g)
        else:
            order = torch.randperm(len(self.lengths), generator=g).tolist()
        if self.pad_index is not None:
            order += [self.pad_index] * (-len(order) % self.batch_size)
        return iter(order)


def check_same_vocabulary(tok, data_dir: str) -> None:
    """PEAR compares π_θ and π_β token by token: the two tokenizers must be the same."""
    path = Path(data_dir) / "vocab.json"
    if not path.is_file():
        return
    behavior = json.loads(path.read_text())
    base = tok.get_vocab()
    if behavior != base:
        diff = sorted(set(behavior.items()) ^ set(base.items()))[:5]
        raise ValueError(f"the base model's tokenizer ({len(base)} tokens) differs from the behavior "
                         f"policy's ({len(behavior)} tokens), e.g. {diff}; the behavior log-probs "
                         "would not be comparable. Use models of one family that share a vocabulary.")


def turn_end_ids(df: pd.DataFrame, special_ids: list[int]) -> list[int]:
    """The token ids that end the behavior's turns, most frequent first.

    With a ``finish_reason`` column (the sample stage's), the last token of every response that
    stopped (``"stop"``: the engine stopped on it); without one, the last tokens that are special
    tokens of the tokenizer (``special_ids``). Truncated responses (``"length"``) end anywhere and
    are not counted. Empty when no response ended on a stop token.
    """
    if "finish_reason" in df:
        ends = [int(r[-1]) for r, f in zip(df["response_ids"], df["finish_reason"])
                if f == "stop" and len(r)]
    else:
        special = set(int(i) for i in special_ids)
        ends = [int(r[-1]) for r in df["response_ids"] if len(r) and int(r[-1]) in special]
    return [i for i, _ in Counter(ends).most_common()]
