"""Online RL (GRPO) from an SFT or base model; reward = the task verifier.

The engine is a config group: ``rl=trl`` (``stages/rl_engines/trl.py``, TRL's GRPOTrainer on CPU
or one GPU). Every engine writes the final policy to ``out`` as an HF model dir, so eval loads it
like any other model.
"""
from __future__ import annotations

from pathlib import Path

from stages.rl_engines import load


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    return load(cfg["rl"].get("engine", "trl")).run(cfg, inputs, out, work)
