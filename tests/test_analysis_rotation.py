"""Gradient rotation (PEAR App. A.4, stages/analysis_rotation.py): the angle on matrices built by
hand, the pilots' gradient capture against autograd, and the analysis stage end to end."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from stages import analysis
from stages.analysis_rotation import module_rotations, offline_pilot, subspace_rotation

from conftest import TINY_TASK


def _outer(u, v) -> torch.Tensor:
    return torch.outer(torch.tensor(u, dtype=torch.float64), torch.tensor(v, dtype=torch.float64))


@pytest.mark.parametrize("phi", [0.0, 20.0, 55.0, 90.0])
def test_rank_one_gradients_rotate_by_the_angle_between_their_output_directions(phi):
    """∇_off = e1 x^T, ∇_on = (cos φ e1 + sin φ e2) y^T: U_off,1 = e1, U_on,1 at φ from it."""
    c, s = math.cos(math.radians(phi)), math.sin(math.radians(phi))
    g_off = _outer([1, 0, 0, 0, 0, 0], [1, 2, 0, 0, 0, 0])
    g_on = 3 * _outer([c, s, 0, 0, 0, 0], [0, 0, 1, -1, 0, 0])  # the input side does not matter
    angle, k = subspace_rotation(g_off, g_on, k=128)
    assert k == 1 and angle == pytest.approx(phi, abs=1e-5)


def test_two_dimensional_subspaces_average_their_principal_angles():
    """span(e1, e2) vs span(e1, cos φ e2 + sin φ e3): principal angles 0 and φ, mean φ/2."""
    phi = 60.0
    c, s = math.cos(math.radians(phi)), math.sin(math.radians(phi))
    g_off = _outer([1, 0, 0, 0, 0, 0], [1, 0, 0, 0]) + 0.5 * _outer([0, 1, 0, 0, 0, 0], [0, 1, 0, 0])
    g_on = _outer([1, 0, 0, 0, 0, 0], [1, 0, 0, 0]) + 0.5 * _outer([0, c, s, 0, 0, 0], [0, 1, 0, 0])
    angle, k = subspace_rotation(g_off, g_on, k=2)
    assert k == 2 and angle == pytest.approx(phi / 2, abs=1e-5)


def test_k_is_capped_at_half_the_smaller_side_and_zero_gradients_have_no_rotation():
    torch.manual_seed(0)
    a, b = torch.randn(6, 10), torch.randn(6, 10)
    angle, k = subspace_rotation(a, b, k=128)
    assert k == 3 and 0 < angle < 90  # k = 6 would span R^6 twice over: 0° by construction
    assert subspace_rotation(a, a, k=128)[0] == pytest.approx(0.0, abs=1e-4)
    assert subspace_rotation(torch.zeros(6, 10), b, k=128) == (None, 0)
    df = module_rotations({"x": a, "z": a}, {"x": b, "y": b}, k=2)
    assert df["module"].tolist() == ["x"] and df["rotation_k"].tolist() == [2]
    with pytest.raises(ValueError, match="different shapes"):
        subspace_rotation(a, b.T, k=2)


def test_the_offline_pilot_captures_the_step_gradient(tiny_models, tmp_path):
    """One step over all rows: the captured gradients point where autograd's gradient of the
    token-mean NLL does (up to the Trainer's clipping, a common scale)."""
    from transformers import AutoModelForCausalLM

    rng = np.random.default_rng(0)
    rows = pd.DataFrame([{"prompt_ids": rng.integers(3, 20, 4).tolist(),
                          "response_ids": rng.integers(3, 20, int(n)).tolist(), "correct": True}
                         for n in (2, 5, 3)])
    rot = {"steps": 1, "batch_size": 8, "offline_lr": 1e-3}
    grads = offline_pilot(tiny_models["base"], rows, rot, "cpu", tmp_path, seed=0)
    assert grads.steps == grads.signal_steps == 1
    got = grads.mean()

    model = AutoModelForCausalLM.from_pretrained(tiny_models["base"], dtype=torch.float32)
    nll, count = 0.0, 0
    for p, r in zip(rows["prompt_ids"], rows["response_ids"]):
        ids = torch.tensor([p + r])
        logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        tgt = ids[0, 1:]
        nll = nll - logp[len(p) - 1:, :].gather(-1, tgt[len(p) - 1:, None]).sum()
        count += len(r)
    (nll / count).backward()
    want = {n: m.weight.grad for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(got) == set(want)
    a = torch.cat([got[n].flatten() for n in sorted(want)])
    b = torch.cat([want[n].flatten() for n in sorted(want)])
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 1 - 1e-5


def test_analysis_of_an_sft_checkpoint_reports_its_gradient_rotation(tiny_models, tmp_path,
                                                                     monkeypatch):
    import stages.rl_engines.trl as trl

    def by_length(suite, items):  # the tiny model solves nothing: give GRPO groups a spread
        return lambda prompts, completions, item_id, **kw: [float(len(c) % 3) for c in completions]

    monkeypatch.setattr(trl, "reward_function", by_length)
    rng = np.random.default_rng(1)
    verified = pd.DataFrame([{"prompt_ids": rng.integers(3, 20, 4).tolist(),
                              "response_ids": rng.integers(3, 20, 5).tolist(),
                              "correct": bool(i % 4)} for i in range(12)])
    (tmp_path / "verify").mkdir()
    verified.to_parquet(tmp_path / "verify" / "verified.parquet")
    out = tmp_path / "out"
    out.mkdir()
    rot = {"steps": 2, "k": 128, "batch_size": 4, "offline_lr": 1e-3, "online_lr": 1e-3,
           "prompts_per_step": 2, "num_generations": 4, "max_completion_length": 12}
    cfg = {"analysis": {"calibration_size": 8, "batch_size": 4, "sparsity_eps": 1e-5,
                        "device": "cpu", "rotation": rot}, "task": TINY_TASK, "seed": 0}
    m = analysis.run(cfg, {"model": tiny_models["behavior"], "reference": tiny_models["base"],
                           "calibration": str(tmp_path / "verify")}, out, tmp_path / "work")
    assert json.loads((out / "analysis.json").read_text()) == m
    modules = pd.read_parquet(out / "modules.parquet")
    assert {"sparsity", "nss", "rotation", "rotation_k"} <= set(modules)
    valid = modules["rotation"].dropna()
    assert m["rotation_modules"] == len(valid) > 0
    assert 0 < m["gradient_rotation"] < 90
    assert m["gradient_rotation"] == pytest.approx(valid.mean())
    assert m["rotation_k_max"] <= 128
    assert m["rotation_offline_steps_with_gradient"] == 2
    assert 1 <= m["rotation_online_steps_with_gradient"] <= 2
