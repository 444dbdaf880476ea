"""Fingerprints of what no stage produces: model paths, hub ids, data files, library versions.

They go into the cache key of the nodes that read them (``pipeline/dag.py``) and into the
manifest, so a new hub revision or an edited local file reruns what depends on it:

* **a local path** (a model directory, a data file or directory named in the config): the list of
  its files with their sizes, each file up to :data:`SMALL_FILE` bytes hashed whole (configs,
  tokenizers, jsonl data), larger ones by size and modification time (weights: hashing gigabytes
  would make ``plan`` slow). Copying a model directory without keeping times reruns its stages.
  Dot-directories and ``__pycache__`` are skipped.
* **a hub id**: the commit the hub's ``main`` points to now (``HfApi().model_info(id).sha``, at
  most :data:`HUB_TIMEOUT_S` seconds), which is what the stages will download. Offline
  (``HF_HUB_OFFLINE=1``) or when the hub cannot be reached: the commit of the snapshot in the local
  Hugging Face cache, which is what the stages will load; if it is not cached either, the name
  alone, and the manifest says so (``source: unresolved``).
* **libraries** (:func:`library_versions`, for ``pipeline/fingerprint.py``): the versions of the
  result-changing libraries (:data:`RESULT_LIBS`) a stage's code imports and of their requirements
  among them, and Python's major.minor.

Hub look-ups and library metadata are cached per process; ``plan`` fingerprints each path once
per DAG build.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import re
from pathlib import Path
from typing import Any

#: files up to this size are hashed whole; larger ones are keyed by size and mtime
SMALL_FILE = 1 << 20
#: seconds one hub look-up may take before falling back to the local cache
HUB_TIMEOUT_S = 5.0
#: config keys whose values name local files or directories (``path``, ``eval_path``, ``*_dir``)
PATH_KEY = re.compile(r"(^|_)(paths?|dirs?|files?)$")
#: config keys that name a checkout of code the stage runs (SynLogic's own verifiers)
CODE_PATH_KEYS = ("official_verifiers",)

_HUB: dict[tuple[str, bool], dict[str, Any]] = {}

#: import name -> distribution, for libraries whose behaviour changes results
RESULT_LIBS = {
    "torch": "torch", "transformers": "transformers", "tokenizers": "tokenizers",
    "safetensors": "safetensors", "trl": "trl", "accelerate": "accelerate",
    "datasets": "datasets", "peft": "peft", "numpy": "numpy", "pandas": "pandas",
    "pyarrow": "pyarrow", "scipy": "scipy", "sympy": "sympy", "math_verify": "math-verify",
    "latex2sympy2_extended": "latex2sympy2_extended", "reasoning_gym": "reasoning-gym",
    "verl": "verl", "vllm": "vllm", "matplotlib": "matplotlib",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_RESULT_DISTS = {_norm(d) for d in RESULT_LIBS.values()}


_LIB_CACHE: dict[str, tuple[str, list[str]] | None] = {}  # dist -> (version, its result libs)


def _dist(dist: str) -> tuple[str, list[str]] | None:
    """Version of ``dist`` and its requirements among the result-changing libraries (None: not
    installed, so the code that imports it cannot run either)."""
    if dist not in _LIB_CACHE:
        from packaging.requirements import Requirement

        try:
            version = importlib.metadata.version(dist)
            reqs = [Requirement(r) for r in importlib.metadata.requires(dist) or []]
        except importlib.metadata.PackageNotFoundError:
            _LIB_CACHE[dist] = None
        else:
            _LIB_CACHE[dist] = (version, [_norm(r.name) for r in reqs if _norm(r.name) in _RESULT_DISTS
                                          and not (r.marker and "extra" in str(r.marker))])
    return _LIB_CACHE[dist]


def library_versions(imported: frozenset[str]) -> dict[str, str]:
    """Versions of the result-changing libraries among ``imported`` (top-level import names) and
    of their requirements that are result-changing too; Python's major.minor."""
    todo = [_norm(RESULT_LIBS[m]) for m in imported if m in RESULT_LIBS]
    out = {"python": ".".join(platform.python_version_tuple()[:2])}
    while todo:
        dist = todo.pop()
        info = None if dist in out else _dist(dist)
        if info is not None:
            out[dist] = info[0]
            todo.extend(info[1])
    return dict(sorted(out.items()))




def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _files(root: Path) -> list[Path]:
    """The files under ``root`` (or ``root`` itself), without dot-directories and __pycache__."""
    if root.is_file():
        return [root]

    def skipped(p: Path) -> bool:
        return any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(root).parts)

    return sorted(p for p in root.rglob("*") if p.is_file() and not skipped(p))


def path_fingerprint(path: str | Path) -> dict[str, Any]:
    """``{"kind": "path", "path", "files", "bytes", "digest"}`` of a local file or directory."""
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"no file or directory {path}")
    entries, total = [], 0
    files = _files(root)
    for f in files:
        st = f.stat()
        total += st.st_size
        content = (_file_hash(f) if st.st_size <= SMALL_FILE
                   else f"mtime {st.st_mtime_ns}")
        rel = f.name if f == root else f.relative_to(root).as_posix()
        entries.append(f"{rel}:{st.st_size}:{content}")
    return {"kind": "path", "path": str(root), "files": len(files), "bytes": total,
            "digest": _digest(*entries)}


def _hub_sha(ref: str) -> str:
    """The commit ``main`` of hub model ``ref`` points to (network; raises when unreachable)."""
    from huggingface_hub import HfApi

    return HfApi().model_info(ref, timeout=HUB_TIMEOUT_S).sha


def hub_fingerprint(ref: str, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """``{"kind": "hub", "id", "revision", "source", "digest"}`` of hub model ``ref``; ``source``
    is ``hub``, ``cache`` (offline or unreachable: the cached snapshot) or ``unresolved``."""
    from pipeline.preflight import hub_offline

    offline = hub_offline()
    k = (f"{ref}|{cache_dir}", offline)
    if k in _HUB:
        return _HUB[k]
    rev, source, note = None, "unresolved", "offline" if offline else ""
    if not offline:
        try:
            rev, source = _hub_sha(ref), "hub"
        except Exception as e:  # no network, unknown repo, gated: fall back to the cache
            note = f"hub look-up failed: {type(e).__name__}"
    if rev is None:
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(ref, "config.json", cache_dir=cache_dir)
        if isinstance(config, str):
            rev, source = Path(config).parent.name, "cache"
    out = {"kind": "hub", "id": ref, "revision": rev, "source": source,
           "digest": _digest(ref, rev or "unresolved")}
    if note:
        out["note"] = note
    _HUB[k] = out
    return out


def fingerprint(ref: str, memo: dict[str, dict] | None = None) -> dict[str, Any]:
    """The fingerprint of an external model input: a local path or a hub id (``memo``: looked up
    once per ``memo``, e.g. once per DAG build)."""
    from pipeline.preflight import is_local

    memo = {} if memo is None else memo
    if f"ref:{ref}" not in memo:
        if is_local(ref) and Path(ref).expanduser().exists():
            memo[f"ref:{ref}"] = path_fingerprint(ref)
        elif is_local(ref):  # a missing path: preflight names it; the key holds the name
            memo[f"ref:{ref}"] = {"kind": "path", "path": ref, "missing": True,
                                  "digest": _digest(ref, "missing")}
        else:
            memo[f"ref:{ref}"] = hub_fingerprint(ref)
    return memo[f"ref:{ref}"]


def config_paths(cfg: Any, prefix: str = "") -> dict[str, str]:
    """Every path a config slice names under a path-like key: ``{"task.path": ...,
    "task.sources[0].path": ..., "task.eval_path[1]": ...}``."""
    out: dict[str, str] = {}
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            at = f"{prefix}{k}"
            if isinstance(k, str) and (PATH_KEY.search(k) or k in CODE_PATH_KEYS):
                if isinstance(v, str) and v:
                    out[at] = v
                elif isinstance(v, (list, tuple)):
                    out.update({f"{at}[{i}]": x for i, x in enumerate(v) if isinstance(x, str) and x})
            else:
                out.update(config_paths(v, f"{at}."))
    elif isinstance(cfg, (list, tuple)):
        for i, v in enumerate(cfg):
            out.update(config_paths(v, f"{prefix.rstrip('.')}[{i}]."))
    return out


def config_fingerprints(cfg: Any, memo: dict[str, dict] | None = None) -> dict[str, dict[str, Any]]:
    """Fingerprints of the local files and directories a config slice names that exist (one that
    is missing fails its stage when read; the key then holds the value alone, in the slice)."""
    memo = {} if memo is None else memo
    out = {}
    for at, p in config_paths(cfg).items():
        if Path(p).expanduser().exists():
            if f"path:{p}" not in memo:
                memo[f"path:{p}"] = path_fingerprint(p)
            out[at] = memo[f"path:{p}"]
    return out
