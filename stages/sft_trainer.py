"""The sft stage's ``Trainer``: the objective's loss, its statistics, FSDP2 on CPU, held-out NLL.

``ObjectiveTrainer.compute_loss`` runs the configured objective (``stages/objectives``) and
reduces it with ``reduce_loss`` over the whole optimizer step, through the Trainer's own
machinery for it: the training loop prefetches a step's micro-batches and hands every
``compute_loss`` the step's item count ``num_items_in_batch``, which the Trainer counts and sums
over the ranks (``average_tokens_across_devices``); we only show it what to count
(``_get_num_items_in_batch``: response tokens, or sequences with ``sft.loss_reduction:
seq_sum``). Each rank's loss is its sum over that global count times the number of ranks, as the
Trainer's ``compute_loss`` scales it, so DDP's (and FSDP's) gradient mean is the step's token
mean: 1 process × k accumulation steps equals k processes × 1 step.

Objectives with ``needs_step_nll`` (TALR) get the per-row mean NLL of every row of the optimizer
step: gathered over the ranks from the forward pass itself when the step is one micro-batch, or
from a no-grad forward over the step's micro-batches before the first of them otherwise (one extra
forward per micro-batch; the weights do not change within a step, so the values are those of the
training forwards).

FSDP on CPU: accelerate 1.15 turns FSDP on only for accelerator devices (``AcceleratorState``
leaves ``MULTI_CPU`` as it is and the Trainer would wrap the model in DDP), while torch's FSDP2
(``fully_shard``) runs on CPU with gloo. ``create_accelerator_and_postprocess`` therefore puts
the plugin the Trainer built from ``sft.fsdp`` / ``sft.fsdp_config`` into the accelerate state
on CPU ranks, and accelerate's own FSDP2 path (``fsdp2_prepare_model``, sharded optimizer,
full-state-dict save) does the rest, as on GPUs. ``tests/test_sft_fsdp.py`` runs it on 2 CPU
processes against DDP.

``load_reference`` gives ``sft_kl`` its frozen reference: bf16 on GPUs, and sharded with
``fully_shard`` (one 1/N slice per rank, gathered layer by layer in forward) under FSDP.

``mean_nll`` (held-out NLL) never builds the ``[B, T, V]`` logits: decoder hidden states, then
the head on response positions only (``head_logprobs``), bf16 autocast on GPU as in training.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from stages.objectives import (TokenBatch, head_logprobs, lm_hidden, loss_items, reduce_loss,
                               token_logprobs)
from stages.sft_data import Collator, EpochSampler, shifted_labels


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


def _count_view(mask: torch.Tensor, reduction: str) -> torch.Tensor:
    """``mask`` as the Trainer's ``shift_labels``: 0 on each item the loss divides by (a response
    token, or a row with one for ``seq_sum``), −100 (not counted) elsewhere."""
    loss_items(mask, reduction)  # an unknown reduction fails here, named
    on = mask > 0 if reduction == "token_mean" else (mask > 0).any(-1)
    return torch.where(on, 0, -100)


def _row_sums(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, 2]``: each row's NLL sum over its response tokens and their count (detached)."""
    m = mask.to(logp.dtype)
    return torch.stack([(-logp.detach() * m).sum(-1), m.sum(-1)], -1)


def make_trainer_class():
    from transformers import Trainer

    class ObjectiveTrainer(Trainer):
        """``Trainer`` whose loss is the configured objective, reduced the same way for all."""

        epoch_sampler: EpochSampler | None = None

        def setup_objective(self, objective, params: dict, ref_model=None,
                            reduction: str = "token_mean"):
            loss_items(torch.zeros(1, 1), reduction)  # an unknown reduction fails here, named
            self.objective, self.params, self.ref_model = objective, params, ref_model
            self.reduction, self._step_rows = reduction, None
            # compute_loss divides by num_items_in_batch: the Trainer must count it, and must not
            # divide the loss by the number of accumulation steps on top
            self.model_accepts_loss_kwargs = True
            self._stats: dict[str, float] = {}  # sums (and min / max) since the last log

        def create_accelerator_and_postprocess(self) -> None:
            super().create_accelerator_and_postprocess()
            enable_cpu_fsdp(self)

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

        def _get_num_items_in_batch(self, batch_samples: list, device) -> torch.Tensor | None:
            """The Trainer's count of the step's loss items (summed over its micro-batches and,
            with ``average_tokens_across_devices``, over the ranks), shown our ``loss_mask``."""
            views = [{"labels": None, "shift_labels": _count_view(b["loss_mask"], self.reduction)}
                     for b in batch_samples]
            return super()._get_num_items_in_batch(views, device)

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            """The step's micro-batches; for ``needs_step_nll`` over several, the rows' NLL."""
            samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
            self._step_rows = None
            if self.objective.needs_step_nll and len(samples) > 1:
                with torch.no_grad():
                    sums = [self._forward_rows(self._prepare_inputs(b)) for b in samples]
                self._step_rows = self._gather_rows(torch.cat(sums))
            return samples, num_items

        def _forward_rows(self, inputs) -> torch.Tensor:
            ids = inputs["input_ids"]
            logits = self.model(input_ids=ids, attention_mask=inputs["attention_mask"]).logits
            return _row_sums(token_logprobs(logits, shifted_labels(ids)), inputs["loss_mask"])

        def _gather_rows(self, sums: torch.Tensor) -> torch.Tensor:
            """Per-row mean NLL of ``sums`` (``_row_sums``) of every rank, empty rows left out."""
            if self.args.world_size > 1:
                sums = self.accelerator.gather(self.accelerator.pad_across_processes(sums))
            keep = sums[:, 1] > 0
            return sums[keep, 0] / sums[keep, 1]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ids, attn = inputs["input_ids"], inputs["attention_mask"]
            out = model(input_ids=ids, attention_mask=attn)
            labels = shifted_labels(ids)  # the logits are used whole, never sliced (a copy)
            ref_logits = None
            if self.objective.needs_ref:
                with torch.no_grad():
                    ref_logits = self.ref_model(input_ids=ids, attention_mask=attn).logits
            logp, mask = token_logprobs(out.logits, labels), inputs["loss_mask"].float()
            step_rows = None
            if self.objective.needs_step_nll:  # the step's rows: prefetched, or this batch's
                step_rows = self._step_rows
                if step_rows is None:
                    step_rows = self._gather_rows(_row_sums(logp, mask))
            batch = TokenBatch(
                logp=logp, logp_beta=inputs["logp_beta"].float(), mask=mask,
                correct=inputs["correct"], logits=out.logits if self.objective.needs_logits else None,
                ref_logits=ref_logits, beta_topk_ids=inputs.get("beta_topk_ids"),
                beta_topk_logp=inputs.get("beta_topk_logp"), step_seq_nll=step_rows)
            loss_tok, weight = self.objective.fn(batch, **self.params)
            if num_items_in_batch is None:  # outside the training loop: this batch alone
                loss = reduce_loss(loss_tok, weight, mask, loss_items(mask, self.reduction))
            else:  # × ranks: DDP / FSDP average the gradients (the Trainer scales it so too)
                loss = reduce_loss(loss_tok, weight, mask, num_items_in_batch) * self.args.world_size
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


def enable_cpu_fsdp(trainer) -> None:
    """On CPU ranks, hand the Trainer's FSDP plugin to accelerate (see the module docstring)."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin_args = trainer.args.fsdp_plugin_args
    state = trainer.accelerator.state
    if plugin_args is None or trainer.is_fsdp_enabled or state.distributed_type != DistributedType.MULTI_CPU:
        return
    if int(plugin_args.get("fsdp_version", 2)) != 2:
        raise ValueError("sft.fsdp on CPU runs FSDP2 only (fsdp_config.version: 2)")
    state.fsdp_plugin = FullyShardedDataParallelPlugin(**plugin_args)
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as accelerate does
    trainer.is_fsdp_enabled = True


def load_reference(path: str, dev: str, sharded: bool):
    """The frozen reference policy of ``sft_kl``: bf16 on GPU (fp32 on CPU); with ``sharded``
    (FSDP ranks) every decoder layer and the root are ``fully_shard``-ed over all ranks."""
    from transformers import AutoModelForCausalLM

    dt = torch.bfloat16 if dev.startswith("cuda") else torch.float32
    ref = AutoModelForCausalLM.from_pretrained(path, dtype=dt).to(dev).eval()
    ref.requires_grad_(False)
    if sharded:
        from torch.distributed.fsdp import fully_shard

        layers = set(getattr(ref, "_no_split_modules", None) or [])
        for m in ref.modules():
            if type(m).__name__ in layers:
                fully_shard(m)
        fully_shard(ref)
    return ref


@torch.no_grad()
def mean_nll(model, examples: list[dict], collate: Collator, batch_size: int, dev: str) -> float | None:
    """Mean negative log-likelihood per response token of ``examples`` (the held-out split)."""
    if not examples:
        return None
    model.eval()
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if dev.startswith("cuda")
           else contextlib.nullcontext())
    total, count = 0.0, 0.0
    for s in range(0, len(examples), batch_size):
        b = collate(examples[s:s + batch_size])
        labels = shifted_labels(b["input_ids"]).masked_fill(b["loss_mask"] == 0, -100).to(dev)
        with amp:
            hidden, head = lm_hidden(model, b["input_ids"].to(dev), b["attention_mask"].to(dev))
            lp, _, _ = head_logprobs(hidden, head, labels)
        total += float(-lp.sum())
        count += float((labels >= 0).sum())
    return total / max(count, 1.0)
