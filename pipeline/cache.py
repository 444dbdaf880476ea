"""Content-addressed stage outputs: keys, atomic publication, locks.

Layout of one stage output::

    results/<experiment>/<stage>/<key>/          complete iff it holds manifest.json
    results/<experiment>/<stage>/.tmp-<key>-*    being written (removed or renamed into <key>/)
    results/<experiment>/<stage>/.work-<key>/    mid-stage checkpoints/shards, kept across crashes
    results/<experiment>/<stage>/.work-<key>/.pipeline-code   code fingerprint that wrote them
    results/<experiment>/<stage>/.locks/<key>.lock
    results/<experiment>/<stage>/.locks/<key>.holder   who holds the lock (pid, host, since)
    results/<experiment>/logs/<stage>-<key>.log

``key`` hashes the stage name, the stage's version, the fingerprint of the code that computes it
(``pipeline/fingerprint.py``: its source and the project code it reaches, normalised so comments
and docstrings do not count, and the versions of result-changing libraries), the resolved config
the stage reads and the keys of its inputs (another node's key, or the fingerprint of a local path
or hub revision, ``pipeline/external.py``). The manifest is written last inside the temporary
directory, which is then renamed into place in one ``os.rename``: a directory named ``<key>`` is
always whole.

Resumable state in ``.work-<key>/`` is stamped with the code fingerprint of the process that
started it; a stage resumes it only under the same fingerprint, otherwise it starts afresh (the
key already changes with the code, so this guards state left by older versions of the pipeline).

Locks are ``fcntl`` advisory locks (``filelock.FileLock``): the kernel drops them when the holder
dies, so a lock left by a killed process is recovered by the next process that asks. They work on
local disks and on NFSv4 with working ``lockd``; on file systems without POSIX locks two processes
could compute the same stage twice (still safe: the second rename loses and is discarded).
The holder writes who it is next to the lock (the lock file itself is truncated by every process
that asks for it), so a process that waits can say whom it waits for.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from filelock import FileLock

MANIFEST = "manifest.json"
#: file in a .work-<key>/ dir holding the code fingerprint of the state inside
WORK_STAMP = ".pipeline-code"


def digest(obj: Any) -> str:
    """A stable hash of a JSON-able object (dict keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stage_key(stage: str, version: int, cfg: dict, input_keys: dict[str, str],
              code: str = "") -> str:
    """The cache key: ``code`` is the stage's code fingerprint (``pipeline/fingerprint.py``),
    ``input_keys`` the keys of node inputs and the fingerprints of external ones."""
    return digest({"stage": stage, "version": version, "code": code, "cfg": cfg,
                   "inputs": input_keys})


def is_complete(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def read_manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary file, fsync and rename."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file, fsync and rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


class StageDir:
    """Paths and publication protocol for one (stage, key)."""

    def __init__(self, experiment_root: Path, stage: str, key: str) -> None:
        self.root = Path(experiment_root) / stage
        self.stage, self.key = stage, key
        self.final = self.root / key
        self.work = self.root / f".work-{key}"
        self.lock_path = self.root / ".locks" / f"{key}.lock"
        self.log = Path(experiment_root) / "logs" / f"{stage}-{key}.log"

    def complete(self) -> bool:
        return is_complete(self.final)

    def lock(self) -> FileLock:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.lock_path))

    @property
    def holder_path(self) -> Path:
        return self.lock_path.with_suffix(".holder")

    def write_holder(self) -> None:
        """Call right after taking ``lock()``: record this process as the holder."""
        write_json_atomic(self.holder_path, {"pid": os.getpid(), "host": platform.node(),
                                             "since": time.time()})

    def clear_holder(self) -> None:
        """Call right before releasing ``lock()``."""
        self.holder_path.unlink(missing_ok=True)

    def holder(self) -> str:
        """Who holds the lock, in words (for messages of processes that wait on it)."""
        try:
            h = json.loads(self.holder_path.read_text())
        except (OSError, ValueError):
            return f"an unknown process (no readable {self.holder_path.name})"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["since"]))
        return f"pid {h['pid']} on {h['host']} since {since} (its log: {self.log})"

    def fresh_tmp(self) -> Path:
        """A new empty temporary output dir; stale ones (from dead writers) are removed.

        Call only while holding ``lock()``: then no other live process writes this key.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(f".tmp-{self.key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.root / f".tmp-{self.key}-{os.getpid()}"
        tmp.mkdir()
        return tmp

    def open_work(self, code: str) -> str:
        """Create the resumable-state dir for code fingerprint ``code``; state written under
        another fingerprint (or none) is removed first. Returns what was done, in words ("" if
        nothing was removed). Call only while holding ``lock()``."""
        stamp = self.work / WORK_STAMP
        said = ""
        if self.work.exists():
            old = stamp.read_text().strip() if stamp.is_file() else None
            if old != code and any(p.name != WORK_STAMP for p in self.work.iterdir()):
                said = (f"discarded resumable state in {self.work}: written by code "
                        f"{old or '(no fingerprint)'}, this run is {code}")
                shutil.rmtree(self.work)
        self.work.mkdir(parents=True, exist_ok=True)
        if not stamp.is_file() or stamp.read_text().strip() != code:
            write_text_atomic(stamp, code)
        return said

    def publish(self, tmp: Path, manifest: dict) -> None:
        """Write the manifest last, fsync, and rename ``tmp`` to the final directory."""
        _fsync_tree(tmp)
        write_json_atomic(tmp / MANIFEST, manifest)
        if self.final.exists():  # a writer on a lock-less file system got there first
            if is_complete(self.final):
                shutil.rmtree(tmp, ignore_errors=True)
                return
            shutil.rmtree(self.final)  # cannot happen with rename, but never keep a partial dir
        os.rename(tmp, self.final)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        shutil.rmtree(self.work, ignore_errors=True)
