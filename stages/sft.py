"""Offline training of the base model on verified behavior data with one objective.

Uses the Hugging Face ``Trainer`` (single device here; accelerate/FSDP through the same Trainer
on clusters) with one ``compute_loss`` for every objective: the objective (``stages/objectives``)
returns per-token losses and stop-gradient weights, and ``reduce_loss`` sums loss × weight over
response tokens and divides by the number of response tokens in the micro-batch.

Data: the verified-correct responses of ``scored.parquet`` (plus verified failures when the
objective uses negatives, ``objective.data.negatives_ratio`` of the positives). A seeded
``sft.heldout_fraction`` of the prompts is kept out of training; the plain NLL on their correct
responses is reported as ``heldout_nll`` (Quagmires' generalization loss).

Outputs an ordinary HF model dir (config, safetensors, tokenizer) plus ``curves.parquet`` (loss,
learning rate, grad norm and the weight statistics of PEAR-style objectives per step). Checkpoints
go to ``work/`` every ``sft.save_steps`` steps; a re-run resumes from the last one.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import torch

from stages.common import (device, last_complete_checkpoint, load_tokenizer, progress, read_table,
                           seed_everything, write_table)
from stages.objectives import TokenBatch, get_objective, reduce_loss, token_logprobs


def split_heldout(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = sorted(df["prompt_id"].unique())
    random.Random(seed).shuffle(ids)
    held = set(ids[:int(round(fraction * len(ids)))])
    mask = df["prompt_id"].isin(held)
    return df[~mask].reset_index(drop=True), df[mask].reset_index(drop=True)


def select_rows(train: pd.DataFrame, data_cfg: dict, uses_negatives: bool, seed: int) -> pd.DataFrame:
    pos = train[train["correct"]]
    if not uses_negatives:
        return pos.reset_index(drop=True)
    neg = train[~train["correct"]]
    k = min(len(neg), int(round(float(data_cfg.get("negatives_ratio", 0.25)) * len(pos))))
    return pd.concat([pos, neg.sample(n=k, random_state=seed)], ignore_index=True)


def to_examples(df: pd.DataFrame, topk: bool) -> list[dict]:
    cols = ["prompt_ids", "response_ids", "behavior_logprobs", "correct"]
    if topk:
        cols += ["behavior_topk_ids", "behavior_topk_logprobs"]
    return [dict(zip(cols, r)) for r in df[cols].itertuples(index=False)]


class Collator:
    """Right-padded batches with every per-token tensor shifted to label positions.

    Position t of the [B, L-1] tensors predicts token t+1 of the row; ``mask`` is 1 where that
    token is a response token, and ``logp_beta`` holds its stored behavior log-prob there.
    """

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        L = max(len(r["prompt_ids"]) + len(r["response_ids"]) for r in rows)
        B = len(rows)
        ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        attn = torch.zeros((B, L), dtype=torch.long)
        mask = torch.zeros((B, L - 1))
        beta = torch.zeros((B, L - 1))
        topk = "behavior_topk_ids" in rows[0]
        if topk:
            K = len(rows[0]["behavior_topk_ids"][0])
            tk_ids = torch.zeros((B, L - 1, K), dtype=torch.long)
            tk_lp = torch.full((B, L - 1, K), -1e4)
        for i, r in enumerate(rows):
            p, t = len(r["prompt_ids"]), len(r["response_ids"])
            ids[i, :p + t] = torch.tensor(list(r["prompt_ids"]) + list(r["response_ids"]))
            attn[i, :p + t] = 1
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


def make_trainer_class():
    from transformers import Trainer

    class ObjectiveTrainer(Trainer):
        """``Trainer`` whose loss is the configured objective, reduced the same way for all."""

        def setup_objective(self, objective, params: dict, ref_model=None):
            self.objective, self.params, self.ref_model = objective, params, ref_model
            self._stats: dict[str, list[float]] = {}

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ids, attn = inputs["input_ids"], inputs["attention_mask"]
            out = model(input_ids=ids, attention_mask=attn)
            logits = out.logits[:, :-1]
            labels = ids[:, 1:]
            mask = inputs["loss_mask"].to(logits.dtype)
            ref_logits = None
            if self.objective.needs_ref:
                with torch.no_grad():
                    ref_logits = self.ref_model(input_ids=ids, attention_mask=attn).logits[:, :-1]
            batch = TokenBatch(
                logp=token_logprobs(logits, labels), logp_beta=inputs["logp_beta"].float(),
                mask=mask.float(), correct=inputs["correct"],
                logits=logits if self.objective.needs_logits else None, ref_logits=ref_logits,
                beta_topk_ids=inputs.get("beta_topk_ids"), beta_topk_logp=inputs.get("beta_topk_logp"))
            loss_tok, weight = self.objective.fn(batch, **self.params)
            loss = reduce_loss(loss_tok, weight, batch.mask)
            on = batch.mask > 0
            w = weight.detach()[on].float()
            for k, v in {"weight_mean": w.mean(), "weight_min": w.min(), "weight_max": w.max(),
                         "weight_below_1e-3": (w.abs() < 1e-3).float().mean(),
                         "nll": -(batch.logp.detach()[on]).mean()}.items():
                self._stats.setdefault(k, []).append(float(v))
            return (loss, out) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            for k, vals in self._stats.items():
                logs[k] = sum(vals) / len(vals)
            self._stats = {}
            super().log(logs, *args, **kwargs)

    return ObjectiveTrainer


def _progress_callback(total: int):
    from transformers import TrainerCallback

    class Bar(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.bar = progress(total=total, desc="sft", unit="step")
            self.bar.update(state.global_step)

        def on_step_end(self, args, state, control, **kw):
            self.bar.update(1)

        def on_train_end(self, args, state, control, **kw):
            self.bar.close()

    return Bar()


@torch.no_grad()
def mean_nll(model, examples: list[dict], collate: Collator, batch_size: int, dev: str) -> float | None:
    if not examples:
        return None
    model.eval()
    total, count = 0.0, 0.0
    for s in range(0, len(examples), batch_size):
        b = collate(examples[s:s + batch_size])
        logits = model(input_ids=b["input_ids"].to(dev), attention_mask=b["attention_mask"].to(dev)).logits
        lp = token_logprobs(logits[:, :-1], b["input_ids"][:, 1:].to(dev))
        m = b["loss_mask"].to(dev)
        total += float(-(lp * m).sum())
        count += float(m.sum())
    return total / max(count, 1.0)


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


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    from transformers import AutoModelForCausalLM, TrainingArguments

    s, ocfg, seed = cfg["sft"], cfg["objective"], int(cfg["seed"])
    objective = get_objective(ocfg["name"])
    params, data_cfg = dict(ocfg.get("params") or {}), dict(ocfg.get("data") or {})
    seed_everything(seed)
    df = read_table(inputs["data"], "scored.parquet")
    if objective.behavior_topk and "behavior_topk_ids" not in df:
        raise ValueError(f"objective {objective.name} needs behavior top-k log-probs; set "
                         "objective.data.topk > 0 so the score stage stores them")
    train_df, held_df = split_heldout(df, float(s["heldout_fraction"]), seed)
    rows = select_rows(train_df, data_cfg, objective.uses_negatives, seed)
    if not rows["correct"].any():
        raise ValueError("no verified-correct response left for SFT after the held-out split")
    train = to_examples(rows, objective.behavior_topk)
    held = to_examples(held_df[held_df["correct"]], objective.behavior_topk)

    dev = device(s.get("device", "auto"))
    tok = load_tokenizer(inputs["model"])
    check_same_vocabulary(tok, inputs["data"])
    model = AutoModelForCausalLM.from_pretrained(inputs["model"], dtype=torch.float32)
    ref = None
    if objective.needs_ref:
        ref = AutoModelForCausalLM.from_pretrained(inputs["model"], dtype=torch.float32).to(dev).eval()
        ref.requires_grad_(False)
    collate = Collator(tok.pad_token_id)
    bs, accum = int(s["batch_size"]), int(s.get("grad_accum", 1))
    steps = max(1, -(-len(train) // (bs * accum))) * int(s["epochs"])
    args = TrainingArguments(
        output_dir=str(Path(work) / "trainer"), per_device_train_batch_size=bs,
        gradient_accumulation_steps=accum, num_train_epochs=float(s["epochs"]),
        learning_rate=float(s["lr"]), warmup_steps=int(float(s["warmup_ratio"]) * steps),
        weight_decay=float(s["weight_decay"]), max_grad_norm=float(s["max_grad_norm"]),
        lr_scheduler_type="linear", logging_steps=1, save_steps=int(s["save_steps"]),
        save_total_limit=2, report_to=[], seed=seed, data_seed=seed, use_cpu=dev == "cpu",
        bf16=dev.startswith("cuda"), dataloader_num_workers=0, remove_unused_columns=False,
        disable_tqdm=True, gradient_checkpointing=bool(s.get("gradient_checkpointing", False)))
    trainer = make_trainer_class()(model=model, args=args, train_dataset=train,
                                   data_collator=collate, callbacks=[_progress_callback(steps)])
    trainer.setup_objective(objective, params, ref)
    last = last_complete_checkpoint(args.output_dir)
    result = trainer.train(resume_from_checkpoint=last)

    model = trainer.model.float()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    curves = pd.DataFrame([h for h in trainer.state.log_history if "loss" in h])
    write_table(curves, out, "curves.parquet")
    nll = mean_nll(model, held, collate, bs, dev)
    last_w = curves.iloc[-max(1, len(curves) // 5):]
    return {"objective": objective.name, "train_examples": len(train),
            "train_negatives": int((~rows["correct"]).sum()), "heldout_examples": len(held),
            "steps": int(trainer.state.global_step), "train_loss": float(result.training_loss),
            "heldout_nll": nll, "resumed_from": Path(last).name if last else None,
            "final_weight_mean": float(last_w["weight_mean"].mean()) if "weight_mean" in last_w else None}
