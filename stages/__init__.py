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
    "verify": 2,  # 2: math-verify timeouts retried under a longer bound; timed_out column
    "score": 1,
    "sft": 4,  # 4: objectives with negatives at a fixed example budget by default
    # 3: loss = one token mean over the optimizer step; TALR τ over the step; 2: stop ids
    "eval": 3,  # 3: benchmark and timed_out columns, by_benchmark, timeouts retried (2: maj@n groups)
    "rl": 2,  # 2: GRPO prompt order laid out up front (deterministic resume)
    "analysis": 2,  # 2: gradient rotation (App. A.4) of SFT checkpoints
    "report": 3,  # 3: per-benchmark table and columns (Table 2 layout), verifier timeouts
}


def load(stage: str) -> ModuleType:
    if stage not in VERSIONS:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(VERSIONS)}")
    return importlib.import_module(f"stages.{stage}")
