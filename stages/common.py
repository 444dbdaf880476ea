"""Small helpers the stages share: progress bars and notes (``stages/progress.py``), seeding,
devices, tables, models."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd

from stages.progress import (no_progress, note, progress, set_progress_factory,  # noqa: F401
                             trainer_progress)

# --- Data parallelism: one engine per worker over a list of shards --------------------------
# A stage calls ``parallel_map(make_worker, fn, tasks, **worker_options(cfg["engine"]))``. The
# default below runs everything in this process with one worker; the runner swaps in
# ``pipeline.parallel.ray_map`` (Ray actors, one engine each) so that stages never import Ray.
# Results carry their task index: a stage saves each shard as it arrives and merges in order.

def local_map(make_worker: Callable[[], Any], fn: Callable[[Any, Any], Any], tasks: Sequence[Any],
              **options: Any) -> Iterator[tuple[int, Any]]:
    """Run ``fn(worker, task)`` for every task in order, with one worker built here (lazily)."""
    if not tasks:
        return
    worker = make_worker()
    try:
        for i, task in enumerate(tasks):
            yield i, fn(worker, task)
    finally:
        close = getattr(worker, "close", None)
        if close is not None:
            close()


_parallel_map: Callable[..., Iterator[tuple[int, Any]]] = local_map


def set_parallel_map(impl: Callable[..., Iterator[tuple[int, Any]]] | None) -> None:
    """Let the runner choose how shards are spread over workers (None: back to ``local_map``)."""
    global _parallel_map
    _parallel_map = impl or local_map


def parallel_map(make_worker: Callable[[], Any], fn: Callable[[Any, Any], Any],
                 tasks: Sequence[Any], *, workers: int = 1, gpus_per_worker: float | None = None,
                 cpus_per_worker: float = 1.0) -> Iterator[tuple[int, Any]]:
    """Yield ``(i, fn(worker, tasks[i]))`` for every task, in completion order.

    Each worker is built once by ``make_worker()`` (an engine: it loads the model) and runs many
    tasks. ``make_worker``, ``fn``, the tasks and the results must be picklable (module-level
    functions, ``functools.partial``, dataclasses, DataFrames) because a worker may live in
    another process. ``fn`` must depend on its task only, never on which worker runs it or
    what ran before, so the results are the same for any number of workers.

    Args:
        workers: how many workers at most (the in-process default always uses one).
        gpus_per_worker: GPUs each worker holds (a tensor-parallel group: several); None lets the
            implementation choose (Ray: 1 if the cluster has GPUs, else 0).
        cpus_per_worker: CPU cores each worker holds (also its torch thread count).
    """
    return _parallel_map(make_worker, fn, tasks, workers=workers,
                         gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker)


def worker_options(engine_cfg: dict) -> dict[str, Any]:
    """``parallel_map``'s keyword arguments from an engine config (``conf/sampler/*.yaml``)."""
    gpus = engine_cfg.get("gpus_per_worker")
    return {"workers": int(engine_cfg.get("workers") or 1),
            "gpus_per_worker": None if gpus in (None, "auto") else float(gpus),
            "cpus_per_worker": float(engine_cfg.get("cpus_per_worker") or 1)}


def write_shard(df: pd.DataFrame, path: Path) -> None:
    """Save one finished shard atomically (a crash leaves no half-written shard file)."""
    tmp = Path(path).with_suffix(f".{os.getpid()}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


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


# --- Experiment tracking: the runner installs a tracker (pipeline/tracking.py, W&B) ------------
# Stages never import wandb: they log through ``tracker()``, a no-op unless the runner set one.

class NullTracker:
    """The tracker interface, doing nothing."""

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        pass

    def log_report(self, tables: dict[str, pd.DataFrame], charts: list[dict],
                   images: dict[str, Path]) -> None:
        """Tables, chart specs (``{"key", "kind": "line_series"|"scatter", ...}``) and PNGs."""


_tracker: Any = NullTracker()


def set_tracker(t: Any | None) -> None:
    global _tracker
    _tracker = t if t is not None else NullTracker()


def tracker() -> Any:
    return _tracker


def tracking_callback(prefix: str):
    """A transformers ``TrainerCallback`` streaming every Trainer log (loss, lr, reward, KL,
    PEAR weight statistics...) to the tracker under ``<prefix>/``, at the global step."""
    from transformers import TrainerCallback

    class Track(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            scalars = {f"{prefix}/{k}": v for k, v in (logs or {}).items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if scalars:
                _tracker.log(scalars, step=int(state.global_step))

    return Track()
