"""Behavior sampling must draw from the distribution whose log-probs it stores: temperature 1 and
top_p 1 (PEAR's ratios divide by log π_β of the sampling distribution). Both engines."""
from __future__ import annotations

import pytest

from conftest import TINY_TASK
from stages import sample


@pytest.mark.parametrize("engine", ["hf", "vllm"])
@pytest.mark.parametrize("temperature, top_p", [(0.7, 1.0), (1.0, 0.95), (0.0, 1.0)])
def test_behavior_sampling_at_another_temperature_or_top_p_is_refused(tmp_path, engine,
                                                                      temperature, top_p):
    cfg = {"task": TINY_TASK, "seed": 0, "engine": {"engine": engine},
           "sample": {"n": 2, "temperature": temperature, "top_p": top_p, "max_new_tokens": 4,
                      "shard_size": 4}}
    # refused before any engine or model is loaded: the model path does not even exist
    with pytest.raises(ValueError, match="temperature 1 and top_p 1"):
        sample.run(cfg, {"model": str(tmp_path / "no-model")}, tmp_path, tmp_path)


def test_the_stored_logprobs_say_which_distribution(tiny_models, tmp_path):
    cfg = {"task": TINY_TASK, "seed": 0,
           "engine": {"engine": "hf", "device": "cpu", "dtype": "float32", "batch_size": 8},
           "sample": {"n": 1, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 4,
                      "shard_size": 64}}
    metrics = sample.run(cfg, {"model": tiny_models["behavior"]}, tmp_path, tmp_path)
    assert metrics["logprobs_of"] == sample.LOGPROBS_OF and "temperature 1" in metrics["logprobs_of"]
