"""Checks that run before any stage does: the models a study names exist, and share a vocabulary.

Models are named by a local directory or a Hugging Face hub id (``model.base``, ``model.behavior``
when ``model.bootstrap`` is null):

* a local path (it exists, or it starts with ``/``, ``.`` or ``~``, or has more than one ``/``) is
  used as is; it must be a model directory (``config.json``);
* a hub id already in the Hugging Face cache is read from there;
* a hub id not cached is downloaded by transformers into the cache when the stages load it, if
  the hub is reachable. Offline (``HF_HUB_OFFLINE=1``, or the hub unreachable) the run stops here
  with an error that names the model and how to provide it (``hf download …`` on a machine with
  network, or a local path).

PEAR's ratios compare π_θ and π_β token by token, and the sft stage trains the base model on the
behavior policy's token ids: base and behavior tokenizers must have the same vocabulary. Both
tokenizers are loaded (a few small files) and compared here, before sampling starts; the sft
stage checks again against the score stage's ``vocab.json``.

Only models read by stages that still have to run are checked: a study whose results are all
cached re-runs offline without its models.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
           "pytorch_model.bin.index.json")


class PreflightError(RuntimeError):
    """A study that cannot start; the message says what is missing and how to fix it."""


def hub_offline() -> bool:
    from huggingface_hub import constants

    env = any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE")
              for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return env or constants.is_offline_mode()


def is_local(ref: str) -> bool:
    """A path rather than a hub id (``org/name`` or ``name``)."""
    return Path(ref).expanduser().exists() or ref.startswith(("/", ".", "~")) or ref.count("/") > 1


def how_to_provide(ref: str) -> str:
    return (f"download it on a machine with network (`hf download {ref}`, into the Hugging Face "
            f"cache that this machine reads: HF_HOME / HF_HUB_CACHE), or point the config at a "
            f"local copy (e.g. model.base=/path/to/{ref.split('/')[-1]})")


def cached_model_dir(ref: str, cache_dir: str | Path | None = None) -> Path | None:
    """The cached snapshot of hub model ``ref`` if its config and every weight file are there."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(ref, "config.json", cache_dir=cache_dir)
    if not isinstance(config, str):
        return None
    snap = Path(config).parent
    for name in WEIGHTS:
        if (snap / name).is_file():
            if not name.endswith(".index.json"):
                return snap
            shards = set(json.loads((snap / name).read_text()).get("weight_map", {}).values())
            return snap if all((snap / s).is_file() for s in shards) else None
    return None


def resolve_model(ref: str, cache_dir: str | Path | None = None) -> str:
    """Where model ``ref`` will be read from: a local dir, a cached snapshot, or the hub id
    itself (downloaded on first use). Raises :class:`PreflightError` if it cannot be read."""
    if is_local(ref):
        path = Path(ref).expanduser()
        if not path.is_dir():
            raise PreflightError(f"model path {ref} does not exist (or is not a directory); "
                                 "give a Hugging Face model directory or a hub id such as "
                                 "Qwen/Qwen3-1.7B")
        if not (path / "config.json").is_file():
            raise PreflightError(f"model path {ref} is not a Hugging Face model directory "
                                 f"(no config.json); its files: "
                                 f"{sorted(p.name for p in path.iterdir())[:10]}")
        if not os.access(path / "config.json", os.R_OK):
            raise PreflightError(f"model path {ref} is not readable by this user")
        return str(path)
    cached = cached_model_dir(ref, cache_dir)
    if cached is not None:
        return str(cached)
    if hub_offline():
        raise PreflightError(f"model {ref!r} is not in the Hugging Face cache and the hub is "
                             f"offline (HF_HUB_OFFLINE=1); {how_to_provide(ref)}")
    return ref


def load_tokenizer(ref: str):
    """The tokenizer of model ``ref``; a download failure becomes a :class:`PreflightError`."""
    from stages.common import load_tokenizer as load

    try:
        return load(ref)
    except (OSError, ValueError) as e:  # not found, no network, offline mode, gated repo...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PreflightError(f"cannot load the tokenizer of model {ref!r} ({first}); "
                             f"{how_to_provide(ref)}") from None


def check_same_vocabulary(base: str, behavior: str) -> None:
    """Refuse base and behavior models whose tokenizers differ (PEAR needs one vocabulary)."""
    a, b = load_tokenizer(base).get_vocab(), load_tokenizer(behavior).get_vocab()
    if a == b:
        return
    only_a = sorted(set(a) - set(b))[:5]
    only_b = sorted(set(b) - set(a))[:5]
    moved = sorted(t for t in set(a) & set(b) if a[t] != b[t])[:5]
    raise PreflightError(
        f"the base model {base!r} ({len(a)} tokens) and the behavior model {behavior!r} "
        f"({len(b)} tokens) have different tokenizers: only in base {only_a}, only in behavior "
        f"{only_b}, same token with another id {moved}. PEAR compares the two models token by "
        "token and SFT trains the base on the behavior's token ids: choose models of one family "
        "that share a vocabulary (e.g. Qwen3-1.7B with Qwen3-8B).")


def external_models(dag: Any) -> dict[str, set[str]]:
    """Model references (not produced by another node) that stages still to run will read."""
    out: dict[str, set[str]] = {}
    for nid in dag.order:
        if dag.dir(nid).complete():
            continue
        for name, ref in dag.nodes[nid].inputs.items():
            if isinstance(ref, str):  # an external input: a model path or hub id
                out.setdefault(ref, set()).add(nid)
    return out


def check(cfg: Any, dag: Any) -> None:
    """Run every pre-flight check for ``dag``; stop the run with a clear message on failure."""
    try:
        needed = external_models(dag)
        for ref in sorted(needed):
            resolve_model(ref)
        model = cfg["model"]
        if not model.get("bootstrap"):
            missing = [k for k in ("base", "behavior") if not model.get(k)]
            if missing:
                raise PreflightError(f"model.bootstrap is null but model.{missing[0]} is not set: "
                                     "name a hub id or a local model directory")
        if not model.get("bootstrap") and needed:
            check_same_vocabulary(str(model["base"]), str(model["behavior"]))
    except PreflightError as e:
        raise SystemExit(f"pre-flight check failed: {e}") from None
