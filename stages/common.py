"""Small helpers the stages share: progress bars, seeding, devices, tables, models."""
from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

_progress_factory: Callable[..., Any] | None = None


def set_progress_factory(factory: Callable[..., Any] | None) -> None:
    """Let the runner choose how bars are drawn (e.g. Ray's driver-side tqdm)."""
    global _progress_factory
    _progress_factory = factory


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "",
             unit: str = "it"):
    """A progress bar (tqdm API subset: iterate, ``update``, ``close``)."""
    if _progress_factory is not None:
        return _progress_factory(iterable, desc=desc, total=total, unit=unit)
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.__stderr__,
                mininterval=1.0, leave=False, dynamic_ncols=True)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device(name: str | None = "auto") -> str:
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def dtype(name: str | None):
    import torch

    if name in (None, "auto"):
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, name)


def read_table(path: str | Path, name: str) -> pd.DataFrame:
    p = Path(path) / name
    if not p.is_file():
        raise FileNotFoundError(f"expected table {p} (is the upstream stage output complete?)")
    return pd.read_parquet(p)


def write_table(df: pd.DataFrame, out: Path, name: str) -> Path:
    p = Path(out) / name
    df.to_parquet(p, index=False)
    return p


def write_json(obj: Any, path: Path) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, dev: str, dt=None):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=dt)
    return model.to(dev).eval()


def finite_or_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def last_complete_checkpoint(trainer_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` of an HF/TRL Trainer whose save finished, or None.

    The Trainer writes a checkpoint in place (weights, optimizer, RNG, then trainer_state.json
    last), so a process killed mid-save leaves a partial ``checkpoint-N``. Only a checkpoint whose
    trainer_state.json parses is taken; older complete ones survive rotation meanwhile.
    """
    root = Path(trainer_dir)
    if not root.is_dir():
        return None
    steps = []
    for p in root.glob("checkpoint-*"):
        try:
            steps.append((int(p.name.split("-")[1]), p))
        except (IndexError, ValueError):
            continue
    for _, p in sorted(steps, reverse=True):
        try:
            json.loads((p / "trainer_state.json").read_text())
            return str(p)
        except (OSError, ValueError):
            continue
    return None
