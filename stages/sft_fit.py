"""One process's (or one rank's) run of the sft stage: data, ``TrainingArguments``, training, outputs.

:func:`fit` is what ``stages.sft.run`` calls on one process and what every rank of
``stages/sft_worker.py`` calls under ``torch.distributed`` (``WORLD_SIZE`` > 1); rank 0 writes
the output directory: the weights (gathered from the shards under FSDP), ``curves.parquet``, and
the tokenizer and generation config whose EOS ids include the end-of-turn token the training
responses end with (``stages/sft_output.py``), then computes the held-out NLL.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch

from stages.common import (device, last_complete_checkpoint, load_tokenizer, note, read_table,
                           seed_everything, tracking_callback, trainer_progress, write_table)
from stages.objectives import get_objective
from stages.sft_data import (Collator, EpochSampler, budget_record, check_same_vocabulary,
                             select_rows, split_heldout, to_examples, turn_end_ids)
from stages.sft_output import save_stop_files
from stages.sft_trainer import load_reference, make_trainer_class, mean_nll


def load_examples(cfg: dict, inputs: dict, objective) -> tuple[list[dict], list[dict], pd.DataFrame, dict]:
    """(train examples, held-out correct examples, the selected training rows, and for an
    objective with negatives what they were chosen from: ``sft_data.budget_record``)."""
    s, seed = cfg["sft"], int(cfg["seed"])
    df = read_table(inputs["data"], "scored.parquet")
    if objective.behavior_topk and "behavior_topk_ids" not in df:
        raise ValueError(f"objective {objective.name} needs behavior top-k log-probs; set "
                         "objective.data.topk > 0 so the score stage stores them")
    train_df, held_df = split_heldout(df, float(s["heldout_fraction"]), seed)
    data = dict(cfg["objective"].get("data") or {})
    rows = select_rows(train_df, data, objective.uses_negatives, seed)
    if not rows["correct"].any():
        raise ValueError("no verified-correct response left for SFT after the held-out split")
    held = to_examples(held_df[held_df["correct"]], objective.behavior_topk)
    budget = budget_record(train_df, data) if objective.uses_negatives else {}
    return to_examples(rows, objective.behavior_topk), held, rows, budget


def training_args(s: dict, work: Path, dev: str, steps: int, seed: int, world: int):
    from transformers import TrainingArguments

    gc, fsdp = bool(s.get("gradient_checkpointing", False)), s.get("fsdp") or None
    return TrainingArguments(
        output_dir=str(Path(work) / "trainer"), per_device_train_batch_size=int(s["batch_size"]),
        gradient_accumulation_steps=int(s.get("grad_accum", 1)), num_train_epochs=float(s["epochs"]),
        learning_rate=float(s["lr"]), warmup_steps=int(float(s["warmup_ratio"]) * steps),
        weight_decay=float(s["weight_decay"]), max_grad_norm=float(s["max_grad_norm"]),
        lr_scheduler_type="linear", logging_steps=1, save_steps=int(s["save_steps"]),
        save_total_limit=2, report_to=[], seed=seed, data_seed=seed, use_cpu=dev == "cpu",
        bf16=dev.startswith("cuda"), dataloader_num_workers=0, remove_unused_columns=False,
        disable_tqdm=True, gradient_checkpointing=gc, average_tokens_across_devices=True,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gc else None,
        fsdp=fsdp, fsdp_config=dict(s.get("fsdp_config") or {}) or None,
        # several ranks: every global batch of bs is cut into world slices (the last one is
        # filled up to bs by EpochSampler)
        accelerator_config={"split_batches": True} if world > 1 else None)


def fit(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    """The stage on one process, or one rank of several (``WORLD_SIZE``); rank 0 writes ``out``."""
    from transformers import AutoModelForCausalLM

    s, ocfg, seed = cfg["sft"], cfg["objective"], int(cfg["seed"])
    objective = get_objective(ocfg["name"])
    seed_everything(seed)
    train, held, rows, budget = load_examples(cfg, inputs, objective)
    tok = load_tokenizer(inputs["model"])
    check_same_vocabulary(tok, inputs["data"])
    model = AutoModelForCausalLM.from_pretrained(inputs["model"], dtype=torch.float32)
    collate = Collator(tok.pad_token_id)
    bs, world = int(s["batch_size"]), int(os.environ.get("WORLD_SIZE", "1"))
    if bs % world:
        raise ValueError(f"sft.batch_size={bs} (the global micro-batch) must be a multiple of "
                         f"sft.num_processes={world}")
    steps = max(1, -(-len(train) // (bs * int(s.get("grad_accum", 1))))) * int(s["epochs"])
    args = training_args(s, work, device(s.get("device", "auto")), steps, seed, world)
    # args.device: this rank's device (reading it initialises torch.distributed on several ranks)
    ref = (load_reference(inputs["model"], str(args.device), sharded=bool(args.fsdp) and world > 1)
           if objective.needs_ref else None)
    # several ranks: one extra row, ignored by the loss, fills the last global batch (EpochSampler)
    dataset = train + [{**train[0], "pad": True}] if world > 1 else train
    trainer = make_trainer_class()(model=model, args=args, train_dataset=dataset,
                                   data_collator=collate,
                                   callbacks=[trainer_progress("sft", steps), tracking_callback("sft")])
    trainer.setup_objective(objective, dict(ocfg.get("params") or {}), ref,
                            str(s.get("loss_reduction", "token_mean")))
    if world > 1 or s.get("group_by_length"):
        trainer.epoch_sampler = EpochSampler(
            [len(e["prompt_ids"]) + len(e["response_ids"]) for e in train], bs, seed,
            bool(s.get("group_by_length")), pad_index=len(train) if world > 1 else None)
    last = last_complete_checkpoint(args.output_dir)
    if last:
        note(f"resumed from {Path(last).name} of {steps} steps")
    trainer.train(resume_from_checkpoint=last)  # its training_loss counts only resumed steps

    if trainer.is_fsdp_enabled:
        trainer.save_model(str(out))  # every rank: gathers the sharded weights, rank 0 writes
    if not trainer.is_world_process_zero():
        return {}
    if trainer.is_fsdp_enabled:
        (Path(out) / "training_args.bin").unlink(missing_ok=True)
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).to(args.device)
    else:
        model = trainer.model.float()
        model.save_pretrained(out)
    stop = save_stop_files(out, tok, model.generation_config,
                           turn_end_ids(rows[rows["correct"]], tok.all_special_ids))
    curves = pd.DataFrame([h for h in trainer.state.log_history if "loss" in h])
    write_table(curves, out, "curves.parquet")
    nll = mean_nll(model, held, collate, bs, str(args.device))
    last_w = curves.iloc[-max(1, len(curves) // 5):]
    ref_local = (sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel()
                     for p in ref.parameters()) if ref is not None else None)
    return {"objective": objective.name, "train_examples": len(train),
            "train_positives": int(rows["correct"].sum()), "train_negatives": int((~rows["correct"]).sum()),
            **budget, "heldout_examples": len(held),
            "steps": int(trainer.state.global_step), "train_loss": float(curves["loss"].mean()),
            "heldout_nll": nll, "resumed_from": Path(last).name if last else None,
            "final_weight_mean": float(last_w["weight_mean"].mean()) if "weight_mean" in last_w else None,
            "reference_params_on_rank0": ref_local, **stop}
