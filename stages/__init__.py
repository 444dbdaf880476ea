"""One module per pipeline stage, each with ``run(cfg, inputs, out, work) -> dict`` (metrics).

A stage reads its inputs from paths (``inputs`` maps a name to a directory or a hub id), writes
only under ``out`` (a fresh temporary directory that the pipeline renames into place after the
stage returns) and may keep resumable state under ``work`` (kept across crashes, deleted after
success). Stages import no Ray and know nothing of Hydra or the cache: they run in a plain test.

``VERSIONS`` lists the stages. Its numbers are part of every cache key, next to a fingerprint of
the code each stage reaches (``pipeline/fingerprint.py``), which changes by itself when that code
does: bump a number only for a change the fingerprint cannot see (a non-Python file the stage
reads, a name looked up at run time).
"""
from __future__ import annotations

import importlib
from types import ModuleType

VERSIONS: dict[str, int] = {
    "bootstrap": 1,
    "sample": 1,
    "verify": 1,
    "score": 1,
    "sft": 3,  # 3: loss = one token mean over the optimizer step; TALR τ over the step
    # 2: output generation config stops on the data's end-of-turn ids
    "eval": 2,  # 2: maj@n votes only among answers, grouped by suite.same_answer; answer_group
    "rl": 2,  # 2: GRPO prompt order laid out up front (deterministic resume)
    "analysis": 2,  # 2: gradient rotation (App. A.4) of SFT checkpoints
    "report": 2,
}


def load(stage: str) -> ModuleType:
    if stage not in VERSIONS:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(VERSIONS)}")
    return importlib.import_module(f"stages.{stage}")
