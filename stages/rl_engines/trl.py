"""``rl=trl``: GRPO with TRL on CPU or one GPU, reward = the task verifier.

It runs TRL's ``GRPOTrainer`` on the task's
``rl`` prompts: ``rl.num_generations`` completions per prompt form a group, rewards are the
verifier's, advantages are group-normalised, ``rl.beta`` is the KL coefficient to the starting
model. The paper's recipe (§4.2: lr 1e-6, batch 128, KL 0.01, verl on GPUs) is the GPU engine's
default; the toy models take a larger lr and a few dozen steps.

Outputs an HF model dir and ``curves.parquet`` (reward, KL, loss per step). The output keeps the
input model's stop tokens: its tokenizer (chat template, EOS) and a generation config whose EOS
ids are the input's (``stages/sft_output.py``; TRL's rollouts stop on
``model.generation_config.eos_token_id`` plus the tokenizer's EOS). Checkpoints go to ``work/``
every ``rl.save_steps`` steps and a re-run resumes from the last one.
"""
from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import torch

from stages.common import (device, last_complete_checkpoint, load_tokenizer, note,
                           seed_everything, tracking_callback, trainer_progress, write_table)
from stages.sample import prompt_strings
from stages.sft_output import save_stop_files
from verifiers import build_suite


def reward_function(suite, items: dict):
    """A TRL reward function scoring each completion with the task verifier."""

    def verifier_reward(prompts, completions, item_id, **kwargs) -> list[float]:
        out = []
        for iid, completion in zip(item_id, completions):
            text = completion if isinstance(completion, str) else completion[-1]["content"]
            out.append(float(suite.score(items[iid], text).reward))
        return out

    return verifier_reward


def prompt_order(rows: list[dict], total: int, seed: int) -> list[dict]:
    """The whole run's prompts in order: seeded permutations of the rl split, one per pass.

    TRL's sampler reshuffles each epoch from a generator whose state a resumed run does not
    restore, so a run resumed after an epoch boundary would see other prompts than an
    uninterrupted one. Laying out every step's prompts up front (and not shuffling in TRL) makes
    the data order a pure function of the seed: the Trainer resumes by skipping consumed batches.
    """
    if not rows:
        raise ValueError("the task's rl split has no prompts")
    order: list[dict] = []
    for epoch in range(-(-total // len(rows))):
        perm = rows[:]
        random.Random(seed * 1_000_003 + epoch).shuffle(perm)
        order.extend(perm)
    return order[:total]


def grpo_trainer(task: dict, r: dict, model, tok, output_dir: Path, seed: int, dev: str,
                 callbacks: list):
    """TRL's ``GRPOTrainer`` for ``model`` on the task's rl prompts with the settings ``r``
    (``conf/rl/trl.yaml``'s keys); also the online pilot of ``stages/analysis_rotation.py``."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    suite = build_suite(task)
    items = suite.items("rl")
    rows = [{"prompt": p, "item_id": it.id} for it, p in zip(items, prompt_strings(items, tok))]
    data = Dataset.from_list(prompt_order(rows, int(r["steps"]) * int(r["prompts_per_step"]), seed))
    G = int(r["num_generations"])
    args = GRPOConfig(
        output_dir=str(output_dir), learning_rate=float(r["lr"]), beta=float(r["beta"]),
        num_generations=G, per_device_train_batch_size=int(r["prompts_per_step"]) * G,
        max_completion_length=int(r["max_completion_length"]), temperature=float(r["temperature"]),
        max_steps=int(r["steps"]), logging_steps=1, save_steps=int(r["save_steps"]),
        save_total_limit=2, report_to=[], seed=seed, data_seed=seed, use_cpu=dev == "cpu",
        bf16=dev.startswith("cuda"), loss_type=r.get("loss_type", "grpo"), disable_tqdm=True,
        lr_scheduler_type="constant_with_warmup", warmup_steps=int(r.get("warmup_steps", 0)),
        shuffle_dataset=False, num_iterations=int(r.get("num_iterations", 1)),
        gradient_checkpointing=bool(r.get("gradient_checkpointing", False)))
    return GRPOTrainer(model=model, reward_funcs=reward_function(suite, {it.id: it for it in items}),
                       args=args, train_dataset=data, processing_class=tok, callbacks=callbacks)


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    from transformers import AutoModelForCausalLM

    r, seed = cfg["rl"], int(cfg["seed"])
    seed_everything(seed)
    tok = load_tokenizer(inputs["model"])
    model = AutoModelForCausalLM.from_pretrained(inputs["model"], dtype=torch.float32)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer = grpo_trainer(cfg["task"], r, model, tok, Path(work) / "trainer", seed,
                           device(r.get("device", "auto")),
                           [trainer_progress("rl", int(r["steps"])), tracking_callback("rl")])
    last = last_complete_checkpoint(trainer.args.output_dir)
    if last:
        note(f"resumed from {Path(last).name} of {int(r['steps'])} steps")
    trainer.train(resume_from_checkpoint=last)

    final = trainer.model.float()
    final.save_pretrained(out)
    save_stop_files(out, tok, final.generation_config, turn_ids=[])
    curves = pd.DataFrame([h for h in trainer.state.log_history if "reward" in h])
    write_table(curves, out, "curves.parquet")
    delta = sum(float((v.float() - start[k].float()).pow(2).sum())
                for k, v in final.state_dict().items() if k in start) ** 0.5
    head = curves["reward"].iloc[:max(1, len(curves) // 4)].mean() if len(curves) else None
    tail = curves["reward"].iloc[-max(1, len(curves) // 4):].mean() if len(curves) else None
    return {"steps": int(trainer.state.global_step), "param_delta_l2": delta,
            "reward_first_quarter": head, "reward_last_quarter": tail,
            "resumed_from": Path(last).name if last else None}
