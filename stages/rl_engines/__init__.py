"""RL engines, chosen by ``rl=<engine>`` (conf/rl/<engine>.yaml, key ``engine``).

Each engine module has ``run(cfg, inputs, out, work) -> dict`` with the rl stage's contract:
``inputs["model"]`` is the starting HF model dir, ``out`` receives the final policy as an HF model
dir plus ``curves.parquet``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

ENGINES: dict[str, str] = {"trl": "stages.rl_engines.trl", "verl": "stages.rl_engines.verl"}


def load(name: str) -> ModuleType:
    if name not in ENGINES:
        raise ValueError(f"unknown rl engine {name!r}; valid engines: {', '.join(sorted(ENGINES))}")
    return importlib.import_module(ENGINES[name])
