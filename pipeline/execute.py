"""Run one stage node: lock its key, compute into a temp dir, publish atomically.

This is the body of every Ray task (``pipeline.runner``) and runs as a plain function too. It is
safe against crashes at any moment (the temp dir is discarded, ``work/`` keeps resumable state)
and against concurrent runs of the same key in other processes (the second waits on the lock,
then finds the published result and reuses it).

Waiting on another process's lock has a limit (``lock_timeout``, from ``cluster.lock_timeout_s``);
past it the stage fails with :class:`LockTimeout`, naming the holder. Inside a Ray task the runner
calls with ``lock_timeout=0``: a busy lock returns ``{"status": "busy"}`` at once, so the task
gives back its GPUs and the driver waits for the lock instead (``pipeline/runner.py``).

While the stage runs, its progress bars and notes go to ``console.json`` in its work directory
(``stages/progress.py``), which the driver polls (``pipeline/console.py``). Its stdout, stderr
and logging go to its log; handlers a library set up on those streams are released when the
stage ends, so that a later stage in the same process (a reused Ray worker) never writes to
this one's closed log.

Before computing, the process recomputes the stage's code fingerprint from the sources it would
run (``pipeline/fingerprint.py``) and stops with :class:`CodeChanged`, naming the modules, if it
is not the one the key was planned with (code edited during a run, a node of a Ray cluster with
other code or libraries). The manifest records that fingerprint and those of the external inputs.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
import os
import platform
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from filelock import Timeout

from pipeline import tracking
from pipeline.cache import StageDir, read_manifest
from stages import progress

#: default limit on waiting for another process's lock (s): longer than any stage should hold it
LOCK_TIMEOUT_S = 48 * 3600.0

_LIBS = ("torch", "transformers", "trl", "tokenizers", "accelerate", "ray", "hydra-core",
         "reasoning-gym", "math-verify", "verl", "vllm", "pandas", "pyarrow")


@dataclass
class Spec:
    """Everything a worker needs to run one node; plain data so Ray can ship it."""

    id: str
    stage: str
    key: str
    cfg: dict[str, Any]
    inputs: dict[str, str]
    input_keys: dict[str, str]
    experiment_root: str
    num_cpus: int = 1
    tracking: dict[str, Any] | None = None  # pipeline.tracking.settings(); None: no tracking
    # {"code": stage code fingerprint, "external": fingerprints of external inputs} (dag.py);
    # None: no code check (a Spec made by hand)
    provenance: dict[str, Any] | None = None


def seeds_of(cfg: Any, prefix: str = "") -> dict[str, int]:
    """Every seed in a config slice (``seed``, ``task.seed``, ...). Stages derive all randomness
    from these: model init and data order from ``seed``, sampling shard k from
    (``seed``, k), task items from ``task.seed``."""
    out: dict[str, int] = {}
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            path = f"{prefix}{k}"
            if k.endswith("seed") and isinstance(v, int):
                out[path] = v
            else:
                out.update(seeds_of(v, f"{path}."))
    return out


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in _LIBS:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


class _Tee(io.TextIOBase):
    """Send writes to the log file; lines that ``passthrough`` accepts also to the console.
    Once its stage has ended (``detach``) everything goes to the console: a reference someone
    kept never writes into the closed log."""

    def __init__(self, log: io.TextIOBase, console: Any, passthrough: Callable[[str], bool]):
        self.log, self.console, self.passthrough = log, console, passthrough
        self.attached = True

    def write(self, s: str) -> int:
        if not self.attached or self.passthrough(s):
            self.console.write(s)
            self.console.flush()
        else:
            self.log.write(s)
            self.log.flush()
        return len(s)

    def flush(self) -> None:
        (self.log if self.attached else self.console).flush()

    def detach(self) -> None:
        self.attached = False


class _Current(io.TextIOBase):
    """Whatever ``sys.<name>`` is at the moment of each write: the next stage's log, or the
    console between stages."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, s: str) -> int:
        return getattr(sys, self.name).write(s)

    def flush(self) -> None:
        getattr(sys, self.name).flush()


def _release_handlers(tees: dict[int, str]) -> None:
    """Loggers that a library configured during the stage hold handlers on the stage's
    ``sys.stdout``/``sys.stderr`` (transformers' default handler is a ``StreamHandler()`` made on
    first use, its ``flush`` bound to that stream). Point them at :class:`_Current` instead, so
    that in a reused process (a Ray worker) a later stage's messages go to that stage's log
    rather than into this one's closed file (``ValueError: I/O operation on closed file``)."""
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for lg in loggers:
        for h in list(lg.handlers):
            if not isinstance(h, logging.StreamHandler):
                continue
            bound = getattr(vars(h).get("flush"), "__self__", None)  # h.flush = stream.flush
            if id(bound) in tees:
                del h.flush
            if id(h.stream) in tees:
                h.setStream(_Current(tees[id(h.stream)]))


@contextlib.contextmanager
def capture(log_path: Path, passthrough: Callable[[str], bool] = lambda s: False):
    """Route stdout, stderr and logging of the stage into its log file; when the stage ends,
    every handler left on those streams is released (:func:`_release_handlers`)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1) as log:
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        old = sys.stdout, sys.stderr
        tees = _Tee(log, old[0], passthrough), _Tee(log, old[1], passthrough)
        sys.stdout, sys.stderr = tees
        try:
            yield log
        finally:
            sys.stdout, sys.stderr = old
            root.removeHandler(handler)
            root.setLevel(old_level)
            _release_handlers({id(tees[0]): "stdout", id(tees[1]): "stderr", id(log): "stderr"})
            for t in tees:
                t.detach()


class LockTimeout(RuntimeError):
    """Another process held a stage's lock for longer than the run waits."""


def take_lock(sd: StageDir, lock_timeout: float, on_wait: Callable[[str], None] | None = None,
              name: str = "") -> Any:
    """Take ``sd``'s lock and return it; None if busy and ``lock_timeout`` is 0, else wait up
    to ``lock_timeout`` seconds and raise :class:`LockTimeout` naming the holder."""
    lock = sd.lock()
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if lock_timeout <= 0:
            return None
        if on_wait:
            on_wait(f"{name or sd.key}: another process is computing it ({sd.holder()}); "
                    f"waiting for its lock (at most {lock_timeout:g} s)")
        try:
            lock.acquire(timeout=lock_timeout)
        except Timeout:
            raise LockTimeout(f"{name or sd.key}: the lock {sd.lock_path} is still held after "
                              f"{lock_timeout:g} s by {sd.holder()}; if that process is stuck, "
                              f"stop it (its lock is released when it dies)") from None
    sd.write_holder()
    return lock


def release_lock(sd: StageDir, lock: Any) -> None:
    sd.clear_holder()
    lock.release()


class CodeChanged(RuntimeError):
    """The code (or a library) a stage would run differs from the code its key was made from."""


def check_code(spec: Spec) -> str:
    """The stage's code fingerprint as this process sees it (the source on disk, its libraries);
    raise :class:`CodeChanged` if it is not the one the run was planned with: the stage would
    publish output computed by other code under the planned key."""
    from pipeline import fingerprint

    now = fingerprint.stage_code(spec.stage)
    planned = (spec.provenance or {}).get("code")
    if planned and planned.get("digest") != now["digest"]:
        what = ", ".join(fingerprint.changed_modules(planned, now)) or "?"
        raise CodeChanged(f"{spec.id}: the code that computes it is not the code this run was "
                          f"planned with (changed: {what}); run again to plan with the code as "
                          f"it is now")
    return now["digest"]


def execute(spec: Spec, passthrough: Callable[[str], bool] = lambda s: False,
            on_wait: Callable[[str], None] | None = None,
            lock_timeout: float = LOCK_TIMEOUT_S) -> dict[str, Any]:
    """Compute ``spec`` unless its output is complete; return status, seconds and metrics
    (status ``busy``, with ``holder``, if another process holds the lock and ``lock_timeout``
    is 0)."""
    sd = StageDir(Path(spec.experiment_root), spec.stage, spec.key)
    if sd.complete():
        return {"status": "cached", "seconds": 0.0, "metrics": read_manifest(sd.final)["metrics"]}
    lock = take_lock(sd, lock_timeout, on_wait, spec.id)
    if lock is None:
        return {"status": "busy", "seconds": 0.0, "metrics": {}, "holder": sd.holder()}
    try:
        if sd.complete():
            m = read_manifest(sd.final)
            return {"status": "reused", "seconds": 0.0, "metrics": m["metrics"]}
        code = check_code(spec)
        tmp = sd.fresh_tmp()
        discarded = sd.open_work(code)
        started = time.time()
        with capture(sd.log, passthrough) as log:
            log.write(f"\n=== {spec.id} key={spec.key} pid={os.getpid()} "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            if discarded:
                log.write(discarded + "\n")
            _set_threads(spec.num_cpus)
            from stages import load

            _injected_fault(spec)
            track = tracking.begin(spec)
            channel = progress.Channel(sd.work / progress.CHANNEL_FILE)  # the driver polls it
            progress.set_channel(channel)
            try:
                metrics = load(spec.stage).run(spec.cfg, dict(spec.inputs), tmp, sd.work) or {}
            except BaseException:
                log.write(traceback.format_exc())
                shutil.rmtree(tmp, ignore_errors=True)
                tracking.end(track, None, failed=True)
                raise
            finally:
                progress.set_channel(None)
            tracking.end(track, metrics)
        seconds = time.time() - started
        sd.publish(tmp, {
            "stage": spec.stage, "node": spec.id, "key": spec.key, "config": spec.cfg,
            "inputs": spec.inputs, "input_keys": spec.input_keys, "metrics": metrics,
            "timings": {"started": started, "seconds": seconds},
            "versions": library_versions(), "seeds": seeds_of(spec.cfg), "host": platform.node(),
            "pid": os.getpid(), "provenance": spec.provenance,
        })
        return {"status": "done", "seconds": seconds, "metrics": metrics, "notes": channel.notes}
    finally:
        release_lock(sd, lock)


def _injected_fault(spec: Spec) -> None:
    """Chaos hook for reliability tests: ``PIPELINE_FAULT=<node id>:<marker file>`` makes the
    process running that node die abruptly (``os._exit``) mid-stage, once: the marker records
    that the fault fired, so the retry (or the re-run) goes through."""
    want = os.environ.get("PIPELINE_FAULT", "")
    node, _, marker = want.partition(":")
    if node == spec.id and marker and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(137)


def _set_threads(n: int) -> None:
    """torch's intra-op threads = the stage's CPUs: read from ``OMP_NUM_THREADS`` when torch is
    first imported, set directly if this process imported it already (a reused Ray worker)."""
    n = max(1, int(n))
    os.environ["OMP_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)

