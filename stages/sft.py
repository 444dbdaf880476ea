"""Offline training of the base model on verified behavior data with one objective.

Uses the Hugging Face ``Trainer`` with one ``compute_loss`` for every objective: the objective
(``stages/objectives``) returns per-token losses and stop-gradient weights, and ``reduce_loss``
sums loss × weight over response tokens and divides by the number of response tokens of the whole
optimizer step (all its micro-batches, all ranks; ``sft.loss_reduction: seq_sum`` divides by its
number of sequences instead, the paper's per-sequence sum), so ``sft.grad_accum`` and
``sft.num_processes`` never change the loss; TALR's τ is the median over the step's rows likewise.

Several devices: ``sft.num_processes: N`` > 1 runs this same stage as N ranks
(``stages/sft_worker.py``): DDP through accelerate, or FSDP2 with ``sft.fsdp`` set (e.g.
``"full_shard auto_wrap"``), on GPUs (nccl) or CPU processes (gloo; accelerate's FSDP2 path,
``stages/sft_trainer.py``).
``sft.batch_size`` is the global micro-batch, cut into N slices (accelerate's ``split_batches``),
so N does not change which examples form a step (the last, short batch is filled with rows the
loss ignores); each rank divides its loss sum by the step's token count over all ranks (the HF
Trainer's ``num_items_in_batch``), times the ranks, so DDP's gradient mean is the step's token
mean, as on one process (1 vs 2 CPU processes, and 1 process accumulating 2 micro-batches vs 2
processes: the same loss curve up to float rounding, ``tests/test_sft_multiproc.py``). Also: bf16
autocast on GPU, ``sft.gradient_checkpointing``, ``sft.group_by_length`` (length-grouped batches,
seeded per epoch). The log-probs never slice the ``[B, L, V]`` logits (the labels are shifted
instead: no copy), and ``token_logprobs`` is chunked over positions; the held-out NLL builds no
``[B, L, V]`` tensor at all (``head_logprobs``).

Data: the verified-correct responses of ``scored.parquet``; an objective that uses negatives
(``pear_neg``) trains on as many rows by default, positives and verified failures in the ratio
``objective.data.negatives_ratio`` (PEAR §4.5: 50K + 50K against 100K positives;
``objective.data.budget: added`` puts the failures on top instead), and the manifest records
the counts (``sft_data.select_rows``). A seeded
``sft.heldout_fraction`` of the prompts is kept out of training; the plain NLL on their correct
responses is reported as ``heldout_nll`` (Quagmires' generalization loss).

Outputs an ordinary HF model dir (config, safetensors, tokenizer with the chat template, and a
generation config whose EOS ids include the end-of-turn token the training responses end with,
``stages/sft_output.py``) plus ``curves.parquet`` (loss, learning rate, grad norm and the weight
statistics of PEAR-style objectives per step). Checkpoints go to ``work/`` every
``sft.save_steps`` steps; a re-run resumes from the last one.

Modules: ``sft_data`` (rows, batches, epoch order), ``sft_trainer`` (the Trainer, FSDP on CPU,
held-out NLL), ``sft_fit`` (one process's run), ``sft_output`` (stop tokens of the output),
``sft_worker`` (several processes).
"""

from __future__ import annotations

from pathlib import Path

from stages.sft_data import check_same_vocabulary
from stages.sft_fit import fit
from stages.sft_worker import launch

__all__ = ["check_same_vocabulary", "fit", "run"]


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    n = int(cfg["sft"].get("num_processes") or 1)
    if n > 1:  # the same fit() as n ranks (DDP / FSDP), see stages/sft_worker.py
        return launch(cfg, inputs, out, work, n)
    return fit(cfg, inputs, out, work)
