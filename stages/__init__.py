"""One module per pipeline stage, each with ``run(cfg, inputs, out, work) -> dict`` (metrics).

A stage reads its inputs from paths (``inputs`` maps a name to a directory or a hub id), writes
only under ``out`` (a fresh temporary directory that the pipeline renames into place after the
stage returns) and may keep resumable state under ``work`` (kept across crashes, deleted after
success). Stages import no Ray and know nothing of Hydra or the cache: they run in a plain test.

``VERSIONS`` is part of every cache key: bump a stage's number when its output changes for the
same config and inputs, so that stale results are recomputed.
"""
from __future__ import annotations

import importlib
from types import ModuleType

VERSIONS: dict[str, int] = {
    "bootstrap": 1,
    "sample": 1,
    "verify": 2,  # 2: math-verify timeouts retried under a longer bound; timed_out column
    "score": 1,
    "sft": 3,  # 3: objectives with negatives at a fixed example budget by default (2: stop ids)
    "eval": 3,  # 3: benchmark and timed_out columns, by_benchmark, timeouts retried (2: maj@n groups)
    "rl": 2,  # 2: GRPO prompt order laid out up front (deterministic resume)
    "analysis": 1,
    "report": 3,  # 3: per-benchmark table and columns (Table 2 layout), verifier timeouts
}


def load(stage: str) -> ModuleType:
    if stage not in VERSIONS:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(VERSIONS)}")
    return importlib.import_module(f"stages.{stage}")
