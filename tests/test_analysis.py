"""Appendix A proxies (stages/analysis.py) against their definitions on tiny Qwen3 models."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

from stages import analysis


@pytest.fixture(scope="module")
def models(tiny_models):
    load = lambda p: AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32).eval()  # noqa: E731
    return load(tiny_models["base"]), load(tiny_models["behavior"])


def rows(n: int, vocab: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame([{"prompt_ids": rng.integers(0, vocab, rng.integers(2, 6)).tolist(),
                          "response_ids": rng.integers(0, vocab, rng.integers(1, 9)).tolist(),
                          "correct": bool(i % 3)} for i in range(n)])


def test_forward_kl_matches_the_definition(models):
    base, behavior = models
    data = rows(7, base.config.vocab_size)
    got = analysis.forward_kl(base, behavior, data, pad_id=0, batch_size=3, dev="cpu")
    want = []
    with torch.no_grad():
        for p, r in zip(data["prompt_ids"], data["response_ids"]):
            ids = torch.tensor([p + r])
            lp = base(input_ids=ids).logits[0].double().log_softmax(-1)    # P_base
            lq = behavior(input_ids=ids).logits[0].double().log_softmax(-1)  # P_trained
            kl = (lp.exp() * (lp - lq)).sum(-1)           # KL(P_base || P_trained) per position
            want.append(kl[len(p) - 1:len(p) - 1 + len(r)].mean().item())  # response positions
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)
    assert (got > 0).all()
    same = analysis.forward_kl(base, base, data, pad_id=0, batch_size=4, dev="cpu")
    assert same == pytest.approx(np.zeros(len(data)), abs=1e-5)


def test_sparsity_and_nss_per_linear_module(models):
    base, _ = models
    moved = AutoModelForCausalLM.from_config(base.config)
    moved.load_state_dict(base.state_dict())
    name, lin = next((n, m) for n, m in moved.named_modules() if isinstance(m, torch.nn.Linear))
    w0 = lin.weight.detach().clone()
    with torch.no_grad():
        lin.weight[: w0.shape[0] // 2] += 0.05  # half the rows move by more than eps
        lin.weight[-1, 0] += 1e-7               # a move below eps counts as not updated
    df = analysis.module_shifts(base, moved, eps=1e-5, dev="cpu").set_index("module")
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in base.modules())
    assert len(df) == n_linear
    assert df.loc[name, "sparsity"] == pytest.approx(1 - (w0.shape[0] // 2) / w0.shape[0])
    s0 = np.linalg.svd(w0.double().numpy(), compute_uv=False)
    s1 = np.linalg.svd(lin.weight.detach().double().numpy(), compute_uv=False)
    assert df.loc[name, "nss"] == pytest.approx(np.linalg.norm(s1 - s0) / np.linalg.norm(s0), rel=1e-4)
    others = df.drop(index=name)
    assert (others["sparsity"] == 1.0).all() and (others["nss"].abs() < 1e-6).all()


def test_calibration_prefers_correct_responses_and_is_seeded():
    data = rows(10, 20)
    picked = analysis.calibration_rows(data, 8, seed=3)
    assert len(picked) == 8 and picked["correct"].iloc[:6].all()  # all 6 correct ones first
    assert picked.equals(analysis.calibration_rows(data, 8, seed=3))


def test_run_writes_metrics_and_modules(tiny_models, tmp_path):
    verified = rows(12, 20)
    (tmp_path / "verify").mkdir()
    verified.to_parquet(tmp_path / "verify" / "verified.parquet")
    out = tmp_path / "out"
    out.mkdir()
    cfg = {"analysis": {"calibration_size": 5, "batch_size": 2, "sparsity_eps": 1e-5,
                        "device": "cpu"}, "seed": 0}
    m = analysis.run(cfg, {"model": tiny_models["behavior"], "reference": tiny_models["base"],
                           "calibration": str(tmp_path / "verify")}, out, tmp_path / "work")
    assert json.loads((out / "analysis.json").read_text()) == m
    assert m["calibration_sequences"] == 5 and m["calibration_correct"] == 5
    assert m["forward_kl"] > 0 and 0 <= m["sparsity"] < 1 and m["nss"] > 0
    modules = pd.read_parquet(out / "modules.parquet")
    assert m["sparsity"] == pytest.approx(modules["sparsity"].mean())
