"""SFT on several processes: 2 CPU ranks (gloo, DDP) follow the loss curve of 1 process, and of 1
process accumulating the same step over 2 micro-batches."""
from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline.cli import CONF_DIR
from stages import sft, sft_data

# Measured on our 2-core CPU machine over 9 steps (pear_token, lr 3e-3, the last batch short):
# max |Δ| 4.8e-7 for the loss, 4.6e-7 NLL, 1.3e-7 PEAR weight mean and min, 2.4e-7 grad norm
# (float rounding: per-rank sums, thread counts, padding widths). Dividing each rank's loss by its
# own token count instead of the mean over ranks gives 7e-2, and letting accelerate fill the
# short last batch with repeated examples 2.8e-1: real errors are far above TOLERANCE.
TOLERANCE = 1e-4


def _scored(tokenizer, root: Path, prompts: int = 37, samples: int = 2) -> Path:
    """A synthetic ``scored.parquet``: varied lengths, behavior log-probs, all correct."""
    rng = random.Random(0)
    vocab = [i for i in range(len(tokenizer)) if i not in tokenizer.all_special_ids]
    rows = []
    for p in range(prompts):
        p_ids = [rng.choice(vocab) for _ in range(rng.randint(3, 8))]
        for j in range(samples):
            r_ids = [rng.choice(vocab) for _ in range(rng.randint(2, 12))]
            r_ids.append(tokenizer.eos_token_id)
            rows.append({"prompt_id": f"p{p}", "sample_idx": j, "prompt_ids": p_ids,
                         "response_ids": r_ids, "correct": True,
                         "behavior_logprobs": [-rng.uniform(0.1, 3.0) for _ in r_ids]})
    root.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(root / "scored.parquet", index=False)
    return root


def _cfg(num_processes: int, objective: str = "pear_token", **sft_over) -> dict:
    s = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "sft" / "default.yaml"))
    s.update({"lr": 3e-3, "epochs": 1, "batch_size": 8, "warmup_ratio": 0.0, "heldout_fraction": 4 / 36,
              "save_steps": 100, "device": "cpu", "num_processes": num_processes, **sft_over})
    objective = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "objective" / f"{objective}.yaml"))
    return {"sft": s, "objective": objective, "seed": 5}


def _train(cfg: dict, inputs: dict, root: Path) -> tuple[dict, pd.DataFrame]:
    out, work = root / "out", root / "work"
    out.mkdir(parents=True)
    work.mkdir(exist_ok=True)  # kept across a crash
    metrics = sft.run(cfg, inputs, out, work)
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    return metrics, pd.read_parquet(out / "curves.parquet")


@pytest.mark.parametrize("group_by_length", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_two_processes_follow_the_one_process_loss_curve(tiny_models, tmp_path, group_by_length):
    from stages.common import load_tokenizer

    data = _scored(load_tokenizer(tiny_models["base"]), tmp_path / "data")
    inputs = {"data": str(data), "model": tiny_models["base"]}
    one, c1 = _train(_cfg(1, group_by_length=group_by_length), inputs, tmp_path / "one")
    two, c2 = _train(_cfg(2, group_by_length=group_by_length), inputs, tmp_path / "two")
    # 66 examples in batches of 8: the last step has 2 (1 per rank)
    assert one["steps"] == two["steps"] == 9 and len(c1) == len(c2) == 9
    for col in ("loss", "nll", "weight_mean", "weight_min", "weight_max", "grad_norm"):
        diff = (c1[col] - c2[col]).abs().max()
        print(f"{col}: max |1 process - 2 processes| = {diff:.1e}")
        assert diff < TOLERANCE, f"{col}: 1 vs 2 processes differ by {diff:.2e}"
    assert c1["loss"].std() > 100 * TOLERANCE  # the curve moves: equality says something
    assert two["heldout_nll"] == pytest.approx(one["heldout_nll"], abs=TOLERANCE)
    assert two["train_examples"] == one["train_examples"] == 66
    assert sorted((tmp_path / "two" / "work").glob("sft-rank1.log"))


@pytest.mark.parametrize("objective,reduction,processes", [
    ("talr", "token_mean", 1), pytest.param("talr", "token_mean", 2, marks=pytest.mark.slow),
    pytest.param("pear_token", "seq_sum", 2, marks=pytest.mark.slow)])
def test_accumulating_on_one_process_equals_splitting_over_two(tiny_models, tmp_path, objective,
                                                               reduction, processes):
    """1 process × 2 accumulated micro-batches of 4 rows, and 1 (or 2) processes × 1 global
    micro-batch of 8, train on the same 8 rows per optimizer step. The step's loss is one mean
    over them (its tokens, or its sequences for seq_sum) and TALR's τ the median of all 8 rows'
    NLL, gathered over micro-batches on one process and over ranks on two: the curves agree.
    Per-micro-batch means and τ (the old behaviour) moved the 1-process accumulated talr curve by
    7e-3 (loss) and 8e-2 (grad norm) from the batch-8 one, far above TOLERANCE; now 2e-7."""
    from stages.common import load_tokenizer

    data = _scored(load_tokenizer(tiny_models["base"]), tmp_path / "data")
    inputs = {"data": str(data), "model": tiny_models["base"]}
    acc, c1 = _train(_cfg(1, objective, batch_size=4, grad_accum=2, loss_reduction=reduction),
                     inputs, tmp_path / "acc")
    two, c2 = _train(_cfg(processes, objective, loss_reduction=reduction), inputs, tmp_path / "two")
    assert acc["steps"] == two["steps"] == 9 and len(c1) == len(c2) == 9
    for col in ("loss", "nll", "weight_mean", "weight_min", "weight_max", "grad_norm"):
        diff = (c1[col] - c2[col]).abs().max()
        print(f"{col}: max |1 process x 2 micro-batches - {processes} x 1| = {diff:.1e}")
        assert diff < TOLERANCE, f"{col}: accumulation vs {processes} x 1 differ by {diff:.2e}"
    assert c1["loss"].std() > 100 * TOLERANCE
    assert two["heldout_nll"] == pytest.approx(acc["heldout_nll"], abs=TOLERANCE)


def test_an_unknown_loss_reduction_is_named(tiny_models, tmp_path):
    from stages.common import load_tokenizer

    data = _scored(load_tokenizer(tiny_models["base"]), tmp_path / "data", prompts=4)
    with pytest.raises(ValueError, match="unknown loss reduction 'mean'; valid: token_mean, seq_sum"):
        sft.fit(_cfg(1, loss_reduction="mean"), {"data": str(data), "model": tiny_models["base"]},
                tmp_path, tmp_path)


def test_batch_size_must_split_over_the_ranks(monkeypatch, tiny_models, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "3")
    from stages.common import load_tokenizer

    data = _scored(load_tokenizer(tiny_models["base"]), tmp_path / "data", prompts=4)
    with pytest.raises(ValueError, match="multiple of sft.num_processes=3"):
        sft.fit(_cfg(1), {"data": str(data), "model": tiny_models["base"]}, tmp_path, tmp_path)


def test_collator_keeps_every_position_and_labels_shift():
    import torch

    rows = [{"prompt_ids": [5, 6], "response_ids": [7, 8, 1], "behavior_logprobs": [-1, -2, -3],
             "correct": True},
            {"prompt_ids": [5], "response_ids": [9], "behavior_logprobs": [-4], "correct": True}]
    b = sft_data.Collator(pad_id=0)(rows)
    assert b["input_ids"].shape == b["loss_mask"].shape == b["logp_beta"].shape == (2, 5)
    assert b["loss_mask"].tolist() == [[0, 1, 1, 1, 0], [1, 0, 0, 0, 0]]
    labels = sft_data.shifted_labels(b["input_ids"])
    assert labels.tolist() == [[6, 7, 8, 1, -100], [9, 0, 0, 0, -100]]
    on = b["loss_mask"] > 0
    assert labels[on].tolist() == [7, 8, 1, 9]  # the response tokens, each at its predictor
    assert b["logp_beta"][on].tolist() == [-1, -2, -3, -4]
    assert torch.equal(b["attention_mask"].sum(1), torch.tensor([5, 2]))


def test_two_processes_resume_from_a_checkpoint(tiny_models, tmp_path, capsys):
    """A re-run after a crash resumes every rank from the last checkpoint: same curve, metrics."""
    import shutil

    from stages.common import load_tokenizer

    data = _scored(load_tokenizer(tiny_models["base"]), tmp_path / "data")
    inputs = {"data": str(data), "model": tiny_models["base"]}
    cfg = _cfg(2, save_steps=3)
    full, c_full = _train(cfg, inputs, tmp_path / "run")
    trainer = tmp_path / "run" / "work" / "trainer"
    shutil.rmtree(trainer / "checkpoint-9")  # as if killed after step 6's checkpoint
    shutil.rmtree(tmp_path / "run" / "out")
    capsys.readouterr()
    again, c_again = _train(cfg, inputs, tmp_path / "run")
    assert again["resumed_from"] == "checkpoint-6"
    stage_log = capsys.readouterr().out.split("--- rank 1 log")[0]  # then rank 1's own log
    assert stage_log.count("[note] resumed from checkpoint-6 of") == 1  # rank 0's note, once
    pd.testing.assert_frame_equal(c_full, c_again, check_like=True)  # column order may differ
    assert {k: v for k, v in again.items() if k != "resumed_from"} == \
        {k: v for k, v in full.items() if k != "resumed_from"}
