"""verifiers/verl_reward.py through verl 0.9.1's own code paths.

The exported parquet is loaded by ``verl.utils.dataset.rl_dataset.RLHFDataset`` with a local
tokenizer that has a chat template, and ``compute_score`` is loaded by
``verl.trainer.ppo.reward.load_reward_manager`` from ``reward.custom_reward_function.path/name``
and called by the ``NaiveRewardManager`` it returns (from its thread pool, as in training).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
REWARD_FILE = ROOT / "verifiers" / "verl_reward.py"

pytest.importorskip("verl")

SUITE_CFGS = {
    "toy": {"sizes": {"train": 4, "rl": 4, "eval": 4}, "pretrain_size": 0},
    "logic": {"seed": 2, "sizes": {"train": 0, "rl": 4, "eval": 0},
              "games": {"maze": {}, "knights_knaves": {}, "mini_sudoku": {}, "countdown": {}}},
    "synlogic": {"path": str(DATA / "synlogic_rows.jsonl"), "sizes": {"train": 0, "rl": None, "eval": 0},
                 "skip_types": ["zebra_puzzle", "arc_agi"]},
    "math": {"sizes": {"train": 0, "rl": 4, "eval": 0}},
}


def right_and_wrong(suite: str, answer: str, task: str | None) -> tuple[str, str]:
    if suite == "toy":
        return f"A{answer}", f"A{int(answer) + 1}"
    if suite == "math":
        return f"<think>ok</think>\\boxed{{{answer}}}", "\\boxed{-12345}"
    if suite == "synlogic":
        answers = json.loads((DATA / "synlogic_answers.json").read_text())[task]
        return f"<answer>{answers['correct']}</answer>", f"<answer>{answers['near_miss']}</answer>"
    return f"<think>ok</think><answer>{answer}</answer>", "<answer>surely wrong</answer>"


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE (exact round trip) with a chat template, built locally."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["<answer>12</answer> \\boxed{x} the answer is"], trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    hf.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                        "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    return hf


@pytest.fixture(scope="module")
def parquets(tmp_path_factory) -> dict[str, Path]:
    from verifiers.verl_reward import write_verl_parquet

    out = tmp_path_factory.mktemp("verl")
    paths = {}
    for suite, cfg in SUITE_CFGS.items():
        paths[suite] = out / f"{suite}.parquet"
        assert write_verl_parquet(suite, "rl", paths[suite], cfg) > 0
    return paths


@pytest.fixture(scope="module")
def verl_cfg(parquets):
    from hydra import compose, initialize_config_module

    with initialize_config_module("verl.trainer.config", version_base=None):
        return compose("ppo_trainer", overrides=[
            f"data.train_files={parquets['toy']}", f"data.val_files={parquets['toy']}",
            "data.max_prompt_length=4096",
            f"reward.custom_reward_function.path={REWARD_FILE}",
            "reward.custom_reward_function.name=compute_score",
        ])


def test_parquet_schema(parquets):
    for suite, path in parquets.items():
        df = pd.read_parquet(path)
        assert list(df.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
        row = df.iloc[0]
        assert row["data_source"] == suite or row["data_source"].startswith(f"{suite}/")
        assert row["reward_model"]["style"] == "rule" and isinstance(row["reward_model"]["ground_truth"], str)
        assert {"split", "index", "suite", "item_id", "metadata"} <= set(row["extra_info"])
        assert row["extra_info"]["split"] == "rl" and row["prompt"][0]["role"] == "user"


def test_rlhf_dataset_loads_every_export(parquets, tokenizer, verl_cfg):
    from verl.utils.dataset.rl_dataset import RLHFDataset

    for suite, path in parquets.items():
        ds = RLHFDataset(data_files=[str(path)], tokenizer=tokenizer, config=verl_cfg.data)
        assert len(ds) == len(pd.read_parquet(path)), suite
        row = ds[0]
        assert row["reward_model"]["ground_truth"] and row["extra_info"]["suite"] == suite
        text = tokenizer.apply_chat_template(row["raw_prompt"], add_generation_prompt=True, tokenize=False)
        assert text.endswith("<|assistant|>") and row["raw_prompt"][0]["content"] in text


def _proto(tokenizer, row: dict, response: str):
    import torch

    from verl import DataProto

    prompt_ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True,
                                               return_dict=False)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(response_ids, skip_special_tokens=True) == response  # exact round trip
    mask = torch.ones(1, len(prompt_ids) + len(response_ids), dtype=torch.long)
    return DataProto.from_dict(
        tensors={"prompts": torch.tensor([prompt_ids]), "responses": torch.tensor([response_ids]),
                 "attention_mask": mask},
        non_tensors={k: np.array([row[k]], dtype=object) for k in ("data_source", "reward_model", "extra_info")},
    )


def test_reward_manager_scores_through_compute_score(parquets, tokenizer, verl_cfg):
    from verl.trainer.ppo.reward import load_reward_manager

    manager = load_reward_manager(verl_cfg, tokenizer)
    assert type(manager).__name__ == "NaiveRewardManager"
    for suite, path in parquets.items():
        for row in pd.read_parquet(path).to_dict("records")[:4]:
            row = json.loads(json.dumps(row, default=lambda a: a.tolist()))  # numpy -> python
            task = json.loads(row["extra_info"]["metadata"]).get("task")
            right, wrong = right_and_wrong(suite, row["reward_model"]["ground_truth"], task)
            for response, expected in ((right, 1.0), (wrong, 0.0)):
                out = manager.loop.run_until_complete(manager.run_single(_proto(tokenizer, row, response)))
                assert out["reward_score"] == expected, (suite, row["data_source"], response, out)
                assert out["reward_extra_info"]["acc"] == expected


def test_compute_score_on_synlogic_native_rows_and_bad_rows():
    from verifiers.verl_reward import compute_score

    row = json.loads((DATA / "synlogic_rows.jsonl").read_text().splitlines()[0])
    answers = json.loads((DATA / "synlogic_answers.json").read_text())
    task = row["data_source"]
    good = compute_score("val/" + task, f"<answer>{answers[task]['correct']}</answer>",
                         row["reward_model"]["ground_truth"], row["extra_info"])
    assert good == {"score": 1.0, "acc": 1.0}
    assert compute_score("nonsense", "x", "1", {})["score"] == 0.0
    assert compute_score("logic/maze", "<answer>1</answer>", "1", {"suite": "logic", "metadata": "{}"})["score"] == 0.0
