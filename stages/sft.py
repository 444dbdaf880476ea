"""Offline training of the base model on verified behavior data with one objective.

Uses the Hugging Face ``Trainer`` with one ``compute_loss`` for every objective: the objective
(``stages/objectives``) returns per-token losses and stop-gradient weights, and ``reduce_loss``
sums loss × weight over response tokens and divides by the number of response tokens in the
micro-batch (over all ranks, see below).

Several devices: ``sft.num_processes: N`` > 1 runs this same stage as N ranks
(``stages/sft_worker.py``): DDP through accelerate, FSDP2 with ``sft.fsdp: true`` on GPUs, gloo
DDP on CPU (where accelerate ignores FSDP; the FSDP path has not run on our machines).
``sft.batch_size`` is the global micro-batch, cut into N slices (accelerate's ``split_batches``),
so N does not change which examples form a step (the last, short batch is filled with rows the
loss ignores); each rank divides its loss by the mean token count per rank, so DDP's
gradient mean is the token mean of the global micro-batch, as on one process (1 vs 2 CPU
processes: the same loss curve up to float rounding, ``tests/test_sft_multiproc.py``). Also: bf16
autocast on GPU, ``sft.gradient_checkpointing``, ``sft.group_by_length`` (length-grouped batches,
seeded per epoch). The log-probs never slice the ``[B, L, V]`` logits (the labels are shifted
instead: no copy), and ``token_logprobs`` is chunked over positions.

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
import os
import random
from pathlib import Path

import pandas as pd
import torch

from stages.common import (device, last_complete_checkpoint, load_tokenizer, read_table,
                           seed_everything, tracking_callback, trainer_progress, write_table)
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


def _combine(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Running statistics: min of ``*_min``, max of ``*_max``, sum of the rest."""
    return {k: min(a[k], v) if k.endswith("_min") else max(a[k], v) if k.endswith("_max")
            else a[k] + v for k, v in b.items()} if a else dict(b)


def _across_ranks(stats: dict[str, float], dev) -> dict[str, float]:
    """``_combine`` over every rank (one all-reduce per kind)."""
    import torch.distributed as dist

    keys = sorted(stats)
    out = {}
    ops = dist.ReduceOp
    for suffix, op in (("_min", ops.MIN), ("_max", ops.MAX), ("", ops.SUM)):
        ks = [k for k in keys if k.endswith(suffix) and k not in out]
        t = torch.tensor([stats[k] for k in ks], dtype=torch.float64, device=dev)
        dist.all_reduce(t, op=op)
        out.update(zip(ks, t.tolist()))
    return out


def make_trainer_class():
    from transformers import Trainer

    class ObjectiveTrainer(Trainer):
        """``Trainer`` whose loss is the configured objective, reduced the same way for all."""

        epoch_sampler: EpochSampler | None = None

        def setup_objective(self, objective, params: dict, ref_model=None):
            self.objective, self.params, self.ref_model = objective, params, ref_model
            self._stats: dict[str, float] = {}  # sums (and min / max) since the last log

        def _get_train_sampler(self, train_dataset=None):
            return self.epoch_sampler or super()._get_train_sampler(train_dataset)

        def _load_optimizer_and_scheduler(self, checkpoint):
            """Resume on several CPU ranks: transformers 5.10 maps the optimizer state to
            ``args.device``, there ``cpu:0``, which ``torch.load`` cannot restore to."""
            opt = Path(checkpoint or "") / "optimizer.pt"
            if self.args.world_size <= 1 or self.args.device.type != "cpu" or not opt.is_file():
                return super()._load_optimizer_and_scheduler(checkpoint)
            self.optimizer.load_state_dict(torch.load(opt, map_location="cpu", weights_only=True))
            self.lr_scheduler.load_state_dict(
                torch.load(Path(checkpoint) / "scheduler.pt", weights_only=True))

        def _tokens_per_rank(self, mask: torch.Tensor) -> torch.Tensor | None:
            """Several ranks: this micro-batch's response tokens, averaged over the ranks (None on
            one process: ``reduce_loss`` counts the micro-batch)."""
            if self.args.world_size <= 1:
                return None
            n = mask.sum().detach()
            torch.distributed.all_reduce(n)
            return n / self.args.world_size

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ids, attn = inputs["input_ids"], inputs["attention_mask"]
            out = model(input_ids=ids, attention_mask=attn)
            labels = shifted_labels(ids)  # the logits are used whole, never sliced (a copy)
            ref_logits = None
            if self.objective.needs_ref:
                with torch.no_grad():
                    ref_logits = self.ref_model(input_ids=ids, attention_mask=attn).logits
            batch = TokenBatch(
                logp=token_logprobs(out.logits, labels), logp_beta=inputs["logp_beta"].float(),
                mask=inputs["loss_mask"].float(), correct=inputs["correct"],
                logits=out.logits if self.objective.needs_logits else None, ref_logits=ref_logits,
                beta_topk_ids=inputs.get("beta_topk_ids"), beta_topk_logp=inputs.get("beta_topk_logp"))
            loss_tok, weight = self.objective.fn(batch, **self.params)
            loss = reduce_loss(loss_tok, weight, batch.mask, self._tokens_per_rank(batch.mask))
            on = batch.mask > 0
            w = weight.detach()[on].float()
            empty = w.numel() == 0  # a rank's slice of the last batch may be padding only
            self._stats = _combine(self._stats, {
                "tokens": float(on.sum()), "weight_sum": float(w.sum()),
                "weight_min": float("inf") if empty else float(w.min()),
                "weight_max": float("-inf") if empty else float(w.max()),
                "below_sum": float((w.abs() < 1e-3).sum()),
                "nll_sum": float(-(batch.logp.detach()[on]).sum())})
            return (loss, out) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            """Token means over the steps since the last log (and over the ranks)."""
            st = self._stats
            if st and self.args.world_size > 1:  # every rank logs at the same steps
                st = _across_ranks(st, self.args.device)
            if st:
                n = max(st["tokens"], 1.0)
                logs.update({"weight_mean": st["weight_sum"] / n, "weight_min": st["weight_min"],
                             "weight_max": st["weight_max"],
                             "weight_below_1e-3": st["below_sum"] / n, "nll": st["nll_sum"] / n})
            self._stats = {}
            super().log(logs, *args, **kwargs)

    return ObjectiveTrainer


@torch.no_grad()
def mean_nll(model, examples: list[dict], collate: Collator, batch_size: int, dev: str) -> float | None:
    if not examples:
        return None
    model.eval()
    total, count = 0.0, 0.0
    for s in range(0, len(examples), batch_size):
        b = collate(examples[s:s + batch_size])
        logits = model(input_ids=b["input_ids"].to(dev), attention_mask=b["attention_mask"].to(dev)).logits
        lp = token_logprobs(logits, shifted_labels(b["input_ids"]).to(dev))
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
    n = int(cfg["sft"].get("num_processes") or 1)
    if n > 1:  # the same fit() as n ranks (DDP / FSDP), see stages/sft_worker.py
        from stages.sft_worker import launch

        return launch(cfg, inputs, out, work, n)
    return fit(cfg, inputs, out, work)


def fit(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    """The stage on one process, or one rank of several (``WORLD_SIZE``); rank 0 writes ``out``."""
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
    collate = Collator(tok.pad_token_id)
    bs, accum = int(s["batch_size"]), int(s.get("grad_accum", 1))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if bs % world:
        raise ValueError(f"sft.batch_size={bs} (the global micro-batch) must be a multiple of "
                         f"sft.num_processes={world}")
    steps = max(1, -(-len(train) // (bs * accum))) * int(s["epochs"])
    gc, fsdp = bool(s.get("gradient_checkpointing", False)), s.get("fsdp") or None
    args = TrainingArguments(
        output_dir=str(Path(work) / "trainer"), per_device_train_batch_size=bs,
        gradient_accumulation_steps=accum, num_train_epochs=float(s["epochs"]),
        learning_rate=float(s["lr"]), warmup_steps=int(float(s["warmup_ratio"]) * steps),
        weight_decay=float(s["weight_decay"]), max_grad_norm=float(s["max_grad_norm"]),
        lr_scheduler_type="linear", logging_steps=1, save_steps=int(s["save_steps"]),
        save_total_limit=2, report_to=[], seed=seed, data_seed=seed, use_cpu=dev == "cpu",
        bf16=dev.startswith("cuda"), dataloader_num_workers=0, remove_unused_columns=False,
        disable_tqdm=True, gradient_checkpointing=gc,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gc else None,
        fsdp=fsdp, fsdp_config=dict(s.get("fsdp_config") or {}) or None,
        # several ranks: every global batch of bs is cut into world slices (the last one is
        # filled up to bs by EpochSampler)
        accelerator_config={"split_batches": True} if world > 1 else None)
    dev = args.device  # this rank's device (cuda:<local rank> under DDP)
    ref = None
    if objective.needs_ref:
        ref = AutoModelForCausalLM.from_pretrained(inputs["model"], dtype=torch.float32).to(dev).eval()
        ref.requires_grad_(False)
    # several ranks: one extra row, ignored by the loss, fills the last global batch (EpochSampler)
    dataset = train + [{**train[0], "pad": True}] if world > 1 else train
    trainer = make_trainer_class()(model=model, args=args, train_dataset=dataset,
                                   data_collator=collate,
                                   callbacks=[trainer_progress("sft", steps), tracking_callback("sft")])
    trainer.setup_objective(objective, params, ref)
    if world > 1 or s.get("group_by_length"):
        trainer.epoch_sampler = EpochSampler(
            [len(e["prompt_ids"]) + len(e["response_ids"]) for e in train], bs, seed,
            bool(s.get("group_by_length")), pad_index=len(train) if world > 1 else None)
    last = last_complete_checkpoint(args.output_dir)
    trainer.train(resume_from_checkpoint=last)  # its training_loss counts only resumed steps

    if fsdp:
        trainer.save_model(str(out))  # every rank: gathers the sharded weights, rank 0 writes
    if not trainer.is_world_process_zero():
        return {}
    if fsdp:
        (Path(out) / "training_args.bin").unlink(missing_ok=True)
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).to(dev)
    else:
        model = trainer.model.float()
        model.save_pretrained(out)
    tok.save_pretrained(out)
    curves = pd.DataFrame([h for h in trainer.state.log_history if "loss" in h])
    write_table(curves, out, "curves.parquet")
    nll = mean_nll(model, held, collate, bs, dev)
    last_w = curves.iloc[-max(1, len(curves) // 5):]
    return {"objective": objective.name, "train_examples": len(train),
            "train_negatives": int((~rows["correct"]).sum()), "heldout_examples": len(held),
            "steps": int(trainer.state.global_step), "train_loss": float(curves["loss"].mean()),
            "heldout_nll": nll, "resumed_from": Path(last).name if last else None,
            "final_weight_mean": float(last_w["weight_mean"].mean()) if "weight_mean" in last_w else None}
