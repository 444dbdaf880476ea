"""``rl=verl`` through verl 0.9.1's own code on CPU (verl cannot train here: GPU only).

The override list the stage builds composes against verl's ``ppo_trainer`` config and passes
its ``validate_config``; a key verl does not have fails composition. The stage itself runs with
``launch`` replaced by ``fake_main_ppo``, which does what ``verl.trainer.main_ppo`` does up to
training (compose the same overrides, validate, load the RL parquet with ``RLHFDataset`` and the
reward with ``load_reward_manager``, score responses) and then writes a checkpoint in verl's
layout, so that everything around verl is exercised.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from stages.rl_engines import verl as engine
from conftest import ROOT, TINY_TASK

pytest.importorskip("verl")

RL_CONF = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "rl" / "verl.yaml"))
SMALL = {"train_batch_size": 4, "ppo_mini_batch_size": 4, "steps": 3, "save_freq": 2,
         "max_prompt_length": 64, "max_response_length": 32, "max_token_len_per_gpu": 256}


def paths(tmp: Path, **kw) -> engine.VerlPaths:
    base = {"model": str(tmp / "model"), "train_file": str(tmp / "rl.parquet"),
            "val_file": str(tmp / "eval.parquet"), "checkpoints": str(tmp / "ckpt"),
            "metrics_file": str(tmp / "m.jsonl"), "ray_address": "auto", "raw_prompts": True}
    return engine.VerlPaths(**{**base, **kw})


def verl_config(overrides: list[str]):
    """Compose verl's ppo_trainer with ``overrides`` and validate it, as main_ppo does."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("verl.trainer.config", version_base=None):
            cfg = compose("ppo_trainer", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    return cfg


def test_the_papers_recipe_composes_and_validates_in_verl(tmp_path):
    odd = tmp_path / "a dir, with=odd 'chars'"
    cfg = verl_config(engine.verl_overrides({"rl": RL_CONF, "seed": 3},
                                            paths(odd, name="rl-abc")))
    actor, rollout = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
    assert cfg.algorithm.adv_estimator == "grpo" and rollout.name == "vllm"
    assert actor.optim.lr == 1e-6 and cfg.data.train_batch_size == 128          # paper §4.2
    assert actor.use_kl_loss and actor.kl_loss_coef == 0.01 and actor.kl_loss_type == "low_var_kl"
    assert rollout.n == 8 and cfg.trainer.total_training_steps == 200
    assert cfg.trainer.resume_mode == "auto" and "hf_model" in actor.checkpoint.save_contents
    assert list(actor.checkpoint.load_contents) == ["model", "optimizer", "extra"]
    assert cfg.data.train_files == str(odd / "rl.parquet")                   # quoting round-trips
    assert cfg.trainer.default_local_dir == str(odd / "ckpt")
    assert cfg.reward.custom_reward_function.path == engine.REWARD_FILE
    assert Path(engine.REWARD_FILE).is_file() and cfg.reward.custom_reward_function.name == "compute_score"
    assert cfg.ray_kwargs.ray_init.address == "auto"
    assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH == str(odd / "m.jsonl")
    assert cfg.actor_rollout_ref.model.custom_chat_template == engine.RAW_CHAT_TEMPLATE
    assert cfg.actor_rollout_ref.model.override_config.attn_implementation == "sdpa"


def test_a_key_verl_does_not_have_fails_composition(tmp_path):
    from hydra.errors import ConfigCompositionException

    rl = {**RL_CONF, "overrides": ["actor_rollout_ref.actor.no_such_key=1"]}
    with pytest.raises(ConfigCompositionException, match="no_such_key"):
        verl_config(engine.verl_overrides({"rl": rl, "seed": 0}, paths(tmp_path)))
    with pytest.raises(ValueError, match="max_token_len_per_gpu"):
        engine.verl_overrides({"rl": {**RL_CONF, "max_token_len_per_gpu": 100}, "seed": 0},
                              paths(tmp_path))


def test_ray_join_prompt_style_and_checkpoint_checks(tmp_path):
    assert engine.ray_address({"RAY_RAYLET_PID": "12"}) == "auto"      # a stage's Ray worker
    assert engine.ray_address({"RAY_ADDRESS": "10.0.0.1:6379"}) == "auto"  # ray.init reads it
    assert engine.ray_address({}) is None                               # cluster=inline
    assert engine.plain_text_prompts(["1+2=", "3="]) is True
    assert engine.plain_text_prompts([[{"role": "user", "content": "x"}]]) is False
    with pytest.raises(ValueError, match="mixes"):
        engine.plain_text_prompts(["x", [{"role": "user", "content": "x"}]])
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        engine.final_hf_dir(tmp_path, 3)
    (tmp_path / engine.TRACKER).write_text("2")
    with pytest.raises(RuntimeError, match="step 2, expected rl.steps=3"):
        engine.final_hf_dir(tmp_path, 3)


def test_launch_retries_while_gpus_are_busy(tmp_path, capsys):
    marker = tmp_path / "tried"
    script = (f"import pathlib, sys; m = pathlib.Path({str(marker)!r})\n"
              "if not m.exists():\n"
              f"    m.write_text('1'); print('Total available GPUs 0 {engine.GPUS_BUSY} 8'); sys.exit(1)\n"
              "print('trained')\n")
    engine.launch([sys.executable, "-c", script], tmp_path, retries=1, wait_s=0)
    assert "trained" in capsys.readouterr().out
    marker.unlink()
    with pytest.raises(RuntimeError, match="exited with 1"):
        engine.launch([sys.executable, "-c", script], tmp_path, retries=0, wait_s=0)


def _proto(tok, prompt_ids: list[int], response: str, row: dict):
    import torch
    from verl import DataProto

    response_ids = tok(response, add_special_tokens=False)["input_ids"]
    assert tok.decode(response_ids, skip_special_tokens=True) == response
    return DataProto.from_dict(
        tensors={"prompts": torch.tensor([prompt_ids]), "responses": torch.tensor([response_ids]),
                 "attention_mask": torch.ones(1, len(prompt_ids) + len(response_ids), dtype=torch.long)},
        non_tensors={k: np.array([row[k]], dtype=object)
                     for k in ("data_source", "reward_model", "extra_info")})


def fake_main_ppo(seen: dict):
    """``launch`` stand-in: main_ppo's config, data and reward path on CPU, then a checkpoint."""

    def run(cmd: list[str], cwd: Path, retries: int, wait_s: float) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from verl.trainer.ppo.reward import load_reward_manager
        from verl.utils.dataset.rl_dataset import RLHFDataset

        from verifiers import build_suite

        assert cmd[:3] == [sys.executable, "-m", "verl.trainer.main_ppo"]
        cfg = verl_config(cmd[3:])
        model_cfg = cfg.actor_rollout_ref.model
        tok = AutoTokenizer.from_pretrained(model_cfg.path)
        ds = RLHFDataset(data_files=[cfg.data.train_files], tokenizer=tok, config=cfg.data)
        items = build_suite(TINY_TASK).items("rl")
        assert len(ds) == len(items)
        tok.chat_template = model_cfg.custom_chat_template  # what verl's agent loop renders with
        manager = load_reward_manager(cfg, tok)
        suite = build_suite(TINY_TASK)
        for i, item in enumerate(items[:6]):
            row = json.loads(json.dumps(ds.dataframe[i], default=lambda a: a.tolist()))
            text = tok.apply_chat_template(ds[i]["raw_prompt"], add_generation_prompt=True, tokenize=False)
            assert text == item.prompt  # RL sees the very text SFT and eval see
            for response in (f"A{item.answer}", f"A{int(item.answer) + 1}"):
                prompt_ids = tok(text, add_special_tokens=False)["input_ids"]
                got = manager.loop.run_until_complete(
                    manager.run_single(_proto(tok, prompt_ids, response, row)))
                seen.setdefault("rewards", []).append(
                    (got["reward_score"], suite.score(item, response).reward))
        steps, ckpt = cfg.trainer.total_training_steps, Path(cfg.trainer.default_local_dir)
        hf = ckpt / f"global_step_{steps}" / "actor" / "huggingface"
        AutoModelForCausalLM.from_pretrained(model_cfg.path).save_pretrained(hf)
        tok.save_pretrained(hf)
        (ckpt / engine.TRACKER).write_text(str(steps))
        log = Path(cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH)
        log.write_text("".join(json.dumps({"step": s, "data": {"critic/score/mean": s / 10}}) + "\n"
                               for s in range(1, steps + 1)))
        seen["cwd"] = cwd

    return run


def test_stage_runs_around_verl_and_publishes_an_hf_model(tiny_models, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seen: dict = {}
    monkeypatch.setattr(engine, "launch", fake_main_ppo(seen))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out, work = tmp_path / "out", tmp_path / ".work-k1"
    out.mkdir()
    work.mkdir()
    cfg = {"task": TINY_TASK, "rl": {**RL_CONF, **SMALL}, "seed": 0}
    metrics = engine.run(cfg, {"model": tiny_models["base"]}, out, work)

    assert seen["rewards"] and all(a == b for a, b in seen["rewards"])      # verl's reward == ours
    assert {b for _, b in seen["rewards"]} == {0.0, 1.0}
    assert seen["cwd"] == work and "actor_rollout_ref.rollout.name=vllm" in (work / "overrides.txt").read_text()
    a = AutoModelForCausalLM.from_pretrained(out).state_dict()
    b = AutoModelForCausalLM.from_pretrained(tiny_models["base"]).state_dict()
    assert all((a[k] == b[k]).all() for k in b)
    assert AutoTokenizer.from_pretrained(out).chat_template == \
        AutoTokenizer.from_pretrained(tiny_models["base"]).chat_template
    curves = pd.read_parquet(out / "curves.parquet")
    assert list(curves["step"]) == [1, 2, 3] and list(curves["reward"]) == [0.1, 0.2, 0.3]
    assert metrics["steps"] == 3 and metrics["resumed_from"] is None
    assert metrics["reward_last_quarter"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="fewer than rl.train_batch_size"):
        engine.run({**cfg, "rl": {**cfg["rl"], "train_batch_size": 999}},
                   {"model": tiny_models["base"]}, out, work)


def test_curves_keep_the_resumed_attempts_rows(tmp_path):
    a, b = tmp_path / "metrics-000.jsonl", tmp_path / "metrics-001.jsonl"
    a.write_text("".join(json.dumps({"step": s, "data": {"critic/score/mean": 0.0}}) + "\n" for s in (1, 2, 3)))
    b.write_text("".join(json.dumps({"step": s, "data": {"critic/score/mean": 1.0}}) + "\n" for s in (3, 4)))
    df = engine.read_curves([a, b])
    assert list(df["step"]) == [1, 2, 3, 4] and list(df["reward"]) == [0.0, 0.0, 1.0, 1.0]
