"""Gradient rotation between the offline and the online update of an SFT checkpoint (PEAR App. A.4).

From the SFT checkpoint, two pilot runs of ``analysis.rotation.steps`` optimizer steps (A.4: 10)
each collect the gradient of every linear module at every step; their means over the steps,
∇_off W and ∇_on W, give per module

    cos θ_i = σ_i(U_off,k^T U_on,k),  i = 1..k,    rotation(W) = mean_i θ_i   (degrees),

U_·,k the top-k left singular vectors of the mean gradient (A.4: k = 128), and the model's
rotation is the macro average over the linear modules. 0° means both stages push the module's
outputs along the same k directions, 90° along orthogonal ones.

* Offline pilot: the HF ``Trainer`` with plain next-token NLL (token mean over the step) on the
  verified-correct responses of the analysis calibration set, at ``offline_lr`` (``sft.lr``).
* Online pilot: TRL's ``GRPOTrainer`` (``stages/rl_engines/trl.py``'s set-up) on the online task's
  rl prompts, at ``online_lr`` (``rl.lr``), ``num_generations`` completions per prompt.

Where A.4 is silent, our choices: the offline pilot's loss is plain NLL whatever the objective
(the SFT direction at the checkpoint; the analysis node has no behavior log-probs), on the
analysis calibration responses rather than a separate set; the pilots take real optimizer steps
(AdamW, constant lr, the Trainer's gradient clipping at 1.0) and the gradient of a step is read
after clipping, just before the optimizer step; the GRPO pilot runs without its KL term (β = 0:
the reference would be the checkpoint itself, whose KL gradient is 0 at the first step and tiny
over 10); k is capped at half the module's smaller side, because two k-dimensional subspaces of
an n-dimensional space share at least 2k − n directions (θ = 0 by construction) and with k ≥ n
every rotation would be 0 (the toy model's modules are 48–384 wide), and at the numerical rank
of either mean gradient, beyond which singular vectors are arbitrary. A module whose pilot
gradient is zero (every GRPO group with equal rewards) has no rotation and is left out of the
mean; ``rotation_{offline,online}_steps_with_gradient`` in ``analysis.json`` count the steps
that had one. The mean gradients are kept on the CPU in fp32 (twice the model's parameter count).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch


def linear_modules(model) -> dict[str, torch.nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def gradient_mean_callback():
    """A ``TrainerCallback`` summing every linear module's weight gradient at each optimizer step
    (``on_pre_optimizer_step``: after clipping, before the update); ``.mean()`` is the average,
    ``signal_steps`` the steps with a non-zero gradient (GRPO: some group's rewards differed)."""
    from transformers import TrainerCallback

    class GradientMean(TrainerCallback):
        def __init__(self) -> None:
            self.sums: dict[str, torch.Tensor] = {}
            self.steps = self.signal_steps = 0

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            signal = False
            for name, m in linear_modules(model).items():
                if m.weight.grad is not None:
                    g = m.weight.grad.detach().to("cpu", torch.float32)
                    self.sums[name] = self.sums[name] + g if name in self.sums else g.clone()
                    signal = signal or bool(g.any())
            self.steps += 1
            self.signal_steps += signal

        def mean(self) -> dict[str, torch.Tensor]:
            return {n: s / max(self.steps, 1) for n, s in self.sums.items()}

    return GradientMean()


def _top_left(g: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Left singular vectors of ``g`` and its numerical rank (``matrix_rank``'s tolerance)."""
    u, s, _ = torch.linalg.svd(g.double(), full_matrices=False)
    tol = s[0] * max(g.shape) * torch.finfo(torch.float32).eps if len(s) else 0.0
    return u, int((s > tol).sum())


def subspace_rotation(g_off: torch.Tensor, g_on: torch.Tensor, k: int) -> tuple[float | None, int]:
    """(mean principal angle in degrees between the top-k left singular subspaces, the k used);
    (None, 0) when either gradient is zero or k would be 0 (see the module docstring)."""
    if g_off.shape != g_on.shape:
        raise ValueError(f"gradients of different shapes: {tuple(g_off.shape)}, {tuple(g_on.shape)}")
    u_off, r_off = _top_left(g_off)
    u_on, r_on = _top_left(g_on)
    k = min(int(k), min(g_off.shape) // 2, r_off, r_on)
    if k < 1:
        return None, 0
    cos = torch.linalg.svdvals(u_off[:, :k].T @ u_on[:, :k]).clamp(-1.0, 1.0)
    return float(torch.rad2deg(torch.arccos(cos)).mean()), k


def module_rotations(off: dict[str, torch.Tensor], on: dict[str, torch.Tensor],
                     k: int) -> pd.DataFrame:
    """One row per linear module both pilots have a gradient for: ``rotation`` (deg), ``k``."""
    rows = []
    for name in sorted(off.keys() & on.keys()):
        angle, used = subspace_rotation(off[name], on[name], k)
        rows.append({"module": name, "rotation": angle, "rotation_k": used})
    return pd.DataFrame(rows, columns=["module", "rotation", "rotation_k"])


def offline_pilot(model_dir: str, rows: pd.DataFrame, rot: dict, dev: str, work: Path, seed: int):
    """The gradients (``gradient_mean_callback``) of ``rot["steps"]`` NLL steps on ``rows``."""
    from datasets import Dataset
    from transformers import (AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments)

    from stages.common import load_tokenizer

    tok = load_tokenizer(model_dir)
    data = Dataset.from_list([
        {"input_ids": list(p) + list(r), "attention_mask": [1] * (len(p) + len(r)),
         "labels": [-100] * len(p) + list(r)}
        for p, r in zip(rows["prompt_ids"], rows["response_ids"])])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    grads = gradient_mean_callback()
    args = TrainingArguments(
        output_dir=str(work / "rotation-offline"), per_device_train_batch_size=int(rot["batch_size"]),
        max_steps=int(rot["steps"]), learning_rate=float(rot["offline_lr"]),
        lr_scheduler_type="constant", save_strategy="no", report_to=[], seed=seed, data_seed=seed,
        use_cpu=dev == "cpu", bf16=dev.startswith("cuda"), disable_tqdm=True,
        dataloader_num_workers=0, logging_steps=1)
    Trainer(model=model, args=args, train_dataset=data, callbacks=[grads],
            data_collator=DataCollatorForSeq2Seq(tok, padding=True)).train()
    return grads


def online_pilot(model_dir: str, task: dict, rot: dict, dev: str, work: Path, seed: int):
    """The gradients (``gradient_mean_callback``) of ``rot["steps"]`` GRPO steps on the task's
    rl prompts."""
    from transformers import AutoModelForCausalLM

    from stages.common import load_tokenizer
    from stages.rl_engines.trl import grpo_trainer

    r = {"steps": int(rot["steps"]), "lr": float(rot["online_lr"]), "beta": 0.0,
         "prompts_per_step": int(rot["prompts_per_step"]),
         "num_generations": int(rot["num_generations"]),
         "max_completion_length": int(rot["max_completion_length"]), "temperature": 1.0,
         "warmup_steps": 0, "save_steps": int(rot["steps"]) + 1}
    grads = gradient_mean_callback()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer = grpo_trainer(task, r, model, load_tokenizer(model_dir), work / "rotation-online",
                           seed, dev, [grads])
    trainer.train()
    return grads


def gradient_rotation(model_dir: str, task: dict, calibration: pd.DataFrame, rot: dict, dev: str,
                      work: Path, seed: int) -> tuple[pd.DataFrame, dict]:
    """Per-module rotations and the metrics of ``analysis.json`` for the SFT checkpoint."""
    correct = calibration[calibration["correct"]]
    if correct.empty:
        raise ValueError("gradient rotation needs verified-correct responses in the calibration set")
    off = offline_pilot(model_dir, correct, rot, dev, Path(work), seed)
    on = online_pilot(model_dir, task, rot, dev, Path(work), seed)
    modules = module_rotations(off.mean(), on.mean(), int(rot["k"]))
    valid = modules["rotation"].dropna()
    return modules, {"gradient_rotation": float(valid.mean()) if len(valid) else None,
                     "rotation_modules": int(len(valid)),
                     "rotation_k_max": int(modules["rotation_k"].max()) if len(modules) else 0,
                     # 0 online: every GRPO group had equal rewards, no rotation to measure
                     "rotation_offline_steps_with_gradient": off.signal_steps,
                     "rotation_online_steps_with_gradient": on.signal_steps}
