"""Weights & Biases tracking: one W&B run per computed stage.

``execute`` calls :func:`start` around a stage and installs the returned tracker with
``stages.common.set_tracker``; stages log through ``stages.common.tracker()`` and never import
wandb. A run has group = the experiment (``tracking.group``), job_type = the stage, name = the
node id, config = the stage's resolved config slice (secrets redacted) plus the node's key and
input keys, the stage's metrics as its summary, and whatever the stage streams (SFT and RL
curves through ``stages.common.tracking_callback``; the report's tables and charts).

Mode (``tracking.mode``): ``auto`` honours ``WANDB_MODE`` if set, else goes online when an API
key is configured (``WANDB_API_KEY`` or a netrc entry for the W&B host; only their presence is
checked) and offline otherwise; offline runs land in ``<results>/<experiment>/wandb/`` and
``pipeline run`` prints the ``wandb sync`` command that uploads them. ``tracking=none`` turns it
all off. Tracking never fails a stage: a W&B error is written to the stage log and the stage runs
on untracked.

:func:`read_offline_run` parses an offline run file (wandb's LevelDB-style record log) back into
its config, history and summary, for tests and for inspection without an account.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import struct
import time
import traceback
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REDACTED = "<redacted>"
_SECRET_WORDS = {"token", "secret", "password", "passwd", "credential", "credentials", "apikey"}


def is_secret_key(key: Any) -> bool:
    """``api_key``, ``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY``...; not ``max_new_tokens``."""
    parts = [p for p in re.split(r"[_\-.\s]+", str(key).lower()) if p]
    joined = "_".join(parts)
    return bool(_SECRET_WORDS & set(parts)) or any(
        w in joined for w in ("api_key", "access_key", "private_key"))


def _secret_values() -> list[str]:
    return [v for k, v in os.environ.items() if is_secret_key(k) and len(v) >= 8]


def scrub(obj: Any, _secrets: list[str] | None = None) -> Any:
    """``obj`` with the values of secret-looking keys, and any string holding the value of a
    secret-looking environment variable (``WANDB_API_KEY``, ``HF_TOKEN``...), redacted."""
    secrets = _secret_values() if _secrets is None else _secrets
    if isinstance(obj, dict):
        return {k: REDACTED if is_secret_key(k) and obj[k] not in (None, "")
                else scrub(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v, secrets) for v in obj]
    if isinstance(obj, str) and any(s in obj for s in secrets):
        return REDACTED
    return obj


def _api_host() -> str:
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    return re.sub(r"^https?://", "", url).split("/")[0]


def logged_in() -> bool:
    """Whether a W&B API key is configured (env or netrc). The key itself is never read out."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    try:
        return netrc.netrc().authenticators(_api_host()) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: str | None) -> str:
    if mode and mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if logged_in() else "offline")


def settings(tracking_cfg: dict, experiment: str, experiment_root: Path,
             sweep: dict | None = None) -> dict:
    """The plain-data tracking settings a stage worker needs (no secret in them)."""
    t = dict(tracking_cfg or {})
    if t.get("backend", "none") == "none":
        return {"backend": "none"}
    tags = list(t.get("tags") or [])
    if sweep:
        tags.append(f"sweep:{sweep['id']}")
    return {"backend": t["backend"], "project": t.get("project") or "sft-rl-pipeline",
            "entity": t.get("entity"), "group": t.get("group") or experiment,
            "mode": resolve_mode(t.get("mode")), "tags": tags, "sweep": sweep or None,
            "dir": str(Path(t.get("dir") or experiment_root).expanduser().resolve())}


def _scalars(metrics: dict, prefix: str = "") -> dict[str, float | int | str]:
    """Flatten nested metrics to ``a/b`` keys, keeping numbers and short strings."""
    out: dict[str, Any] = {}
    for k, v in (metrics or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_scalars(v, f"{key}/"))
        elif isinstance(v, bool) or v is None:
            continue
        elif isinstance(v, (int, float)):
            if not (isinstance(v, float) and not math.isfinite(v)):
                out[key] = v
        elif isinstance(v, str) and len(v) < 200:
            out[key] = v
    return out


def _plain(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


class WandbTracker:
    """The tracker a stage sees (``stages.common.tracker()``), bound to one W&B run."""

    def __init__(self, run, wandb) -> None:
        self.run, self.wandb = run, wandb

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        try:
            self.run.log({k: _plain(v) for k, v in metrics.items()}, step=step)
        except Exception:  # never let tracking fail a stage
            log.warning("W&B log failed:\n%s", traceback.format_exc())

    def log_report(self, tables: dict, charts: list[dict], images: dict[str, Path]) -> None:
        wandb = self.wandb
        try:
            wt = {name: wandb.Table(dataframe=df.astype(object).where(df.notna(), None))
                  for name, df in tables.items()}
            payload: dict[str, Any] = dict(wt)
            for c in charts:
                if c["kind"] == "line_series":
                    ys = [[_plain(float(y)) for y in row] for row in c["ys"]]
                    payload[c["key"]] = wandb.plot.line_series(
                        xs=c["xs"], ys=ys, keys=c["keys"], title=c["title"], xname=c["xname"])
                elif c["kind"] == "scatter":
                    payload[c["key"]] = wandb.plot.scatter(wt[c["table"]], c["x"], c["y"],
                                                           title=c["title"])
            payload.update({f"plots/{k}": wandb.Image(str(p)) for k, p in images.items()})
            self.run.log(payload)
        except Exception:
            log.warning("W&B report logging failed:\n%s", traceback.format_exc())

    def finish(self, metrics: dict | None, failed: bool = False) -> None:
        try:
            if metrics:
                self.run.summary.update(_scalars(scrub(metrics)))
            self.run.finish(exit_code=1 if failed else 0)
        except Exception:
            log.warning("W&B finish failed:\n%s", traceback.format_exc())


def start(spec: Any) -> WandbTracker | None:
    """A W&B run for the stage of ``spec`` (an ``execute.Spec``), or None when tracking is off
    or W&B fails to start (the reason goes to the stage log)."""
    t = getattr(spec, "tracking", None) or {}
    if t.get("backend", "none") != "wandb" or t.get("mode") == "disabled":
        return None
    try:
        import wandb

        run = wandb.init(
            project=t["project"], entity=t.get("entity"), group=t["group"], job_type=spec.stage,
            name=spec.id, tags=[spec.stage, *t.get("tags", [])], dir=t["dir"], mode=t["mode"],
            config=scrub({**spec.cfg, "_node": {"id": spec.id, "key": spec.key,
                                                "input_keys": spec.input_keys,
                                                "sweep": t.get("sweep")}}),
            reinit="create_new",
            settings=wandb.Settings(console="off", disable_git=True, disable_code=True,
                                    save_code=False, x_save_requirements=False))
        return WandbTracker(run, wandb)
    except Exception:
        log.warning("W&B tracking is off for %s: wandb.init failed:\n%s", spec.id,
                    traceback.format_exc())
        return None


def begin(spec: Any) -> WandbTracker | None:
    """Start the stage's run (if tracking is on) and install it as the stages' tracker."""
    from stages.common import set_tracker

    track = start(spec)
    set_tracker(track)
    return track


def end(track: WandbTracker | None, metrics: dict | None, failed: bool = False) -> None:
    """Put the stage's metrics in the run's summary, finish it, uninstall the tracker."""
    from stages.common import set_tracker

    set_tracker(None)
    if track is not None:
        track.finish(metrics, failed=failed)


# --- reading offline runs back ----------------------------------------------------------------

def offline_runs(experiment_root: Path) -> list[Path]:
    return sorted((Path(experiment_root) / "wandb").glob("offline-run-*"))


def sync_hint(experiment_root: Path) -> str | None:
    runs = offline_runs(experiment_root)
    if not runs:
        return None
    return (f"W&B: {len(runs)} offline run(s) in {Path(experiment_root) / 'wandb'}; upload with "
            f"`wandb login` then `wandb sync {Path(experiment_root) / 'wandb'}/offline-run-*`")


def _records(path: Path):
    """Raw records of a ``run-*.wandb`` file: a 7-byte header (":W&B", magic, version), then
    32 KiB blocks of chunks, each with a 7-byte header (crc32, length, type FULL/FIRST/MIDDLE/
    LAST), as in LevelDB's log format."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0 and n == 0:  # zero padding to the end of the block
            pos += left - 7
            continue
        if pos + n > len(data):  # the writer is mid-record
            return
        chunk, pos = data[pos:pos + n], pos + n
        if kind == 1:
            yield chunk
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            yield buf + chunk


def _items(updates, into: dict | None = None) -> dict[str, Any]:
    """Items of a history/summary/config record; nested keys (a table's fields) become dicts."""
    out = {} if into is None else into
    for it in updates:
        try:
            value = json.loads(it.value_json)
        except ValueError:
            value = it.value_json
        path = [it.key] if it.key else list(it.nested_key)
        node = out
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return out


def read_offline_run(run_dir: Path, wait: float = 10.0) -> dict[str, Any]:
    """``{"run": {group, job_type, name, id}, "config", "history": [rows], "summary", "exited"}``
    of an offline run directory (``.../wandb/offline-run-*``); ``files`` is its files/ folder.

    ``run.finish()`` returns before wandb's service has written everything: a run whose exit
    record is not there yet is read again for up to ``wait`` seconds.
    """
    deadline = time.time() + wait
    while True:
        out = _read_run(Path(run_dir))
        if out["exited"] or time.time() > deadline:
            return out
        time.sleep(0.1)


def _read_run(run_dir: Path) -> dict[str, Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    out: dict[str, Any] = {"run": {}, "config": {}, "history": [], "summary": {},
                           "files": run_dir / "files", "exited": False}
    for raw in _records(next(run_dir.glob("run-*.wandb"))):
        r = pb.Record()
        r.ParseFromString(raw)
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out["run"] = {"group": r.run.run_group, "job_type": r.run.job_type,
                          "name": r.run.display_name, "id": r.run.run_id,
                          "tags": list(r.run.tags)}
            out["config"].update(_items(r.run.config.update))
        elif kind == "config":
            out["config"].update({k: v for k, v in _items(r.config.update).items() if k})
        elif kind == "history":
            out["history"].append(_items(r.history.item))
        elif kind == "summary":
            _items(r.summary.update, into=out["summary"])
        elif kind == "exit":
            out["exited"] = True
    return out
