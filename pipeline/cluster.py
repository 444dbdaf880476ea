"""Which Ray cluster a run uses, and one cluster per machine's GPUs.

``cluster=local`` starts Ray in this process with this machine's CPUs and GPUs, and one
``gpu_lease`` per GPU (``pipeline/gpus.py``); ``cluster=ray`` joins a running cluster by address
(its nodes started with ``ray start ... --resources='{"gpu_lease": N}'``, ``gpus.start_command``).

Two local clusters on one machine would each hand out every GPU. So a run that starts a local
cluster with GPUs first claims the machine's GPUs: a file lock in the temporary directory, held
until the process exits (the kernel drops it if the process dies). Hydra's default launcher runs
multirun jobs one after another in one process: they share one Ray instance and the claim. A
second process (a parallel launcher's job, another terminal) that would start its own local
cluster stops before any work and says which process holds the GPUs and how to share one cluster
instead (``cluster=ray``). Runs without GPUs are not limited: nothing can be double-booked.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from pipeline import gpus

_CLAIMS: dict[str, FileLock] = {}


def claim_path() -> Path:
    return Path(tempfile.gettempdir()) / f"sft-rl-pipeline-{os.getuid()}" / "local-gpus.lock"


def local_gpus(cluster: dict[str, Any]) -> int:
    n = cluster.get("num_gpus")
    return gpus.local_gpu_count() if n is None else int(n)


def claim_local_gpus(cluster: dict[str, Any], what: str, path: Path | None = None) -> None:
    """Before any work: stop if another live process already started a local cluster with this
    machine's GPUs. ``what`` describes this run in the holder note (experiment, results dir)."""
    if cluster.get("kind", "local") != "local" or local_gpus(cluster) <= 0:
        return
    path = path or claim_path()
    if str(path) in _CLAIMS:
        return  # this process holds it already (sequential multirun jobs)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    note = path.with_suffix(".holder")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            h = json.loads(note.read_text())
            who = (f"pid {h['pid']} ({h['what']}, since "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(h['since']))})")
        except (OSError, ValueError, KeyError):
            who = "another process"
        raise SystemExit(
            f"{who} already started a local Ray cluster with this machine's GPUs; a second local "
            f"cluster would hand out the same GPUs again. Run the jobs one after another (Hydra's "
            f"default launcher), give one run every objective (objectives=[...]), or start one "
            f"cluster for all of them: {gpus.start_command()}, then add cluster=ray to each job."
        ) from None
    note.write_text(json.dumps({"pid": os.getpid(), "what": what, "since": time.time()}))
    _CLAIMS[str(path)] = lock


def repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def init_ray(cluster: dict[str, Any]) -> None:
    """Start (``local``) or join (``ray``) the cluster; nothing if Ray is already initialised."""
    import ray

    if ray.is_initialized():
        return
    env = {"PYTHONPATH": os.pathsep.join(p for p in [repo_root(), os.environ.get("PYTHONPATH")] if p)}
    kw: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True,
                          "runtime_env": {"env_vars": env}}
    if cluster.get("kind") == "ray":
        ray.init(address=cluster.get("address") or "auto", **kw)
        return
    n = local_gpus(cluster)
    ray.init(num_cpus=cluster.get("num_cpus") or os.cpu_count(), num_gpus=n,
             resources={gpus.LEASE: n} if n else None, include_dashboard=False, **kw)


def describe(experiment_root: Path) -> str:
    return f"{' '.join(sys.argv[:1] + sys.argv[1:4])} ... results in {experiment_root}"
