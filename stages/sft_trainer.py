"""The sft stage's ``Trainer``: the objective's loss, its statistics, FSDP2 on CPU, held-out NLL.

``ObjectiveTrainer.compute_loss`` runs the configured objective (``stages/objectives``) and
reduces it with ``reduce_loss``; on several ranks each rank divides by the mean token count per
rank, so DDP's (and FSDP's) gradient mean is the token mean of the global micro-batch.

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

from stages.objectives import TokenBatch, head_logprobs, lm_hidden, reduce_loss, token_logprobs
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


def make_trainer_class():
    from transformers import Trainer

    class ObjectiveTrainer(Trainer):
        """``Trainer`` whose loss is the configured objective, reduced the same way for all."""

        epoch_sampler: EpochSampler | None = None

        def setup_objective(self, objective, params: dict, ref_model=None):
            self.objective, self.params, self.ref_model = objective, params, ref_model
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
