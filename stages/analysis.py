"""RL-readiness proxies of a trained checkpoint against its starting point (PEAR Appendix A).

One node per pair ``(reference → model)``: ``analysis[sft:o]`` compares an SFT checkpoint with
the base model (available before RL runs, so it can predict it), ``analysis[rl:o]`` compares the
RL checkpoint with the SFT checkpoint it started from (how far RL moved it), ``analysis[rl:direct]``
RL from the base with the base. Outputs ``analysis.json`` (the metrics) and ``modules.parquet``
(one row per linear module).

* **Forward KL** (A.1): KL(P_ref ‖ P_model) = Σ_v P_ref log(P_ref / P_model) at every response
  position of a calibration set, averaged over a sequence's response tokens, then macro-averaged
  over sequences.
* **Update sparsity** (A.2): per linear module, the fraction of entries of ΔW = W_model − W_ref with
  |ΔW_ij| < ε; macro average over linear modules.
* **Normalized spectrum shift** (A.3, Zhu et al. 2025): per linear module
  ‖σ(W_model) − σ(W_ref)‖₂ / ‖σ(W_ref)‖₂ with σ the singular values; macro average.

Memory: the models are loaded in their checkpoints' own dtype (``torch_dtype`` of the config:
a bf16 hub model stays bf16, the weights of an fp32 checkpoint stay exact for the sparsity), the
KL runs under bf16 autocast on GPU, and no ``[B, L, V]`` logits are built: each model's decoder
gives hidden states, and the output heads are applied to the response positions a chunk at a time
(``head_vocab_kl``).

Deviations from the paper: the calibration set is not a separate set of question–answer pairs
but up to ``analysis.calibration_size`` verified behavior responses of the run (the verify
stage's output, correct ones first, seeded), so that it exists for every task; ε is a config
value (``analysis.sparsity_eps``; the paper does not state its own).

* **Gradient rotation** (A.4, ``stages/analysis_rotation.py``; SFT nodes only, their cfg holds
  ``analysis.rotation`` and the online ``task``): mean principal angle between the top-k left
  singular subspaces of the mean gradients of a 10-step offline (NLL) and a 10-step online (GRPO)
  pilot from the SFT checkpoint, macro-averaged over linear modules; our choices where A.4 is
  silent are listed there. ``modules.parquet`` then has ``rotation`` and ``rotation_k`` columns.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from stages.analysis_rotation import gradient_rotation
from stages.common import device, load_tokenizer, read_table, write_json, write_table
from stages.objectives import head_vocab_kl, lm_hidden


def calibration_rows(verified: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """Up to ``size`` responses, verified-correct ones first, each group in a seeded order."""
    rng = np.random.default_rng(seed)
    parts = []
    for ok in (True, False):
        part = verified[verified["correct"] == ok]
        parts.append(part.iloc[rng.permutation(len(part))])
    rows = pd.concat(parts).iloc[:size]
    return rows[rows["response_ids"].map(len) > 0].reset_index(drop=True)


def _batch(rows: pd.DataFrame, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask, and a [B, L-1] mask of positions that predict a
    response token (position t predicts token t+1)."""
    seqs = [(list(p), list(r)) for p, r in zip(rows["prompt_ids"], rows["response_ids"])]
    L = max(len(p) + len(r) for p, r in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), L), dtype=torch.long)
    mask = torch.zeros((len(seqs), L - 1))
    for i, (p, r) in enumerate(seqs):
        ids[i, :len(p) + len(r)] = torch.tensor(p + r)
        attn[i, :len(p) + len(r)] = 1
        mask[i, len(p) - 1:len(p) - 1 + len(r)] = 1
    return ids, attn, mask


@torch.no_grad()
def forward_kl(reference, model, rows: pd.DataFrame, pad_id: int, batch_size: int,
               dev: str) -> np.ndarray:
    """Per-sequence mean over response tokens of KL(P_reference ‖ P_model); shape [len(rows)]."""
    out = []
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if str(dev).startswith("cuda")
           else contextlib.nullcontext())
    for s in range(0, len(rows), batch_size):
        ids, attn, mask = _batch(rows.iloc[s:s + batch_size], pad_id)
        ids, attn = ids.to(dev), attn.to(dev)
        mask = torch.nn.functional.pad(mask, (0, 1)).to(dev)  # [B, L]: the last position, 0
        with amp:
            h_ref, head_ref = lm_hidden(reference, ids, attn)
            h, head = lm_hidden(model, ids, attn)
            kl = head_vocab_kl(h_ref, head_ref, h, head, mask)  # KL(P_ref ‖ P_model) per position
        out.append(((kl * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def linear_weights(model) -> dict[str, torch.Tensor]:
    return {name: m.weight for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


@torch.no_grad()
def module_shifts(reference, model, eps: float, dev: str) -> pd.DataFrame:
    """Update sparsity and normalized spectrum shift of every linear module both models share."""
    ref_w, new_w = linear_weights(reference), linear_weights(model)
    rows = []
    for name, w0 in ref_w.items():
        w1 = new_w.get(name)
        if w1 is None or w1.shape != w0.shape:
            continue
        w0, w1 = w0.to(dev, torch.float32), w1.to(dev, torch.float32)
        s0, s1 = torch.linalg.svdvals(w0), torch.linalg.svdvals(w1)
        rows.append({"module": name, "numel": w0.numel(),
                     "sparsity": float(((w1 - w0).abs() < eps).float().mean()),
                     "nss": float((s1 - s0).norm() / s0.norm().clamp(min=1e-12)),
                     "delta_fro": float((w1 - w0).norm())})
    if not rows:
        raise ValueError("the two checkpoints share no linear module of the same shape")
    return pd.DataFrame(rows)


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    from transformers import AutoModelForCausalLM

    a = cfg["analysis"]
    dev = device(a.get("device", "auto"))
    ref = AutoModelForCausalLM.from_pretrained(inputs["reference"], dtype="auto").to(dev).eval()
    model = AutoModelForCausalLM.from_pretrained(inputs["model"], dtype="auto").to(dev).eval()
    modules = module_shifts(ref, model, float(a["sparsity_eps"]), dev)

    verified = read_table(inputs["calibration"], "verified.parquet")
    rows = calibration_rows(verified, int(a["calibration_size"]), int(cfg["seed"]))
    pad = load_tokenizer(inputs["reference"]).pad_token_id
    kl = forward_kl(ref, model, rows, pad, int(a["batch_size"]), dev)
    metrics = {
        "forward_kl": float(kl.mean()) if len(kl) else None,
        "sparsity": float(modules["sparsity"].mean()),
        "nss": float(modules["nss"].mean()),
        "linear_modules": len(modules),
        "calibration_sequences": len(kl),
        "calibration_correct": int(rows["correct"].sum()),
    }
    rot = a.get("rotation")
    if rot:  # SFT checkpoints only (the dag gives rl nodes no rotation config)
        del ref, model  # the pilots load their own copies
        angles, found = gradient_rotation(inputs["model"], cfg["task"], rows, rot, dev, Path(work),
                                          int(cfg["seed"]))
        modules = modules.merge(angles, on="module", how="left")
        metrics.update(found)
    write_table(modules, out, "modules.parquet")
    write_json(metrics, Path(out) / "analysis.json")
    return metrics
