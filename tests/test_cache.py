"""Stage outputs: atomic publication, locks between processes, recovery from dead writers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cache import StageDir, stage_key
from pipeline.execute import Spec, execute

ROOT = Path(__file__).resolve().parent.parent
TASK = {"suite": "toy", "seed": 0, "sizes": {"train": 4, "rl": 4, "eval": 4}, "pretrain_size": 10}


def verify_spec(tmp_path: Path) -> Spec:
    """A real, cheap stage (verify) on a hand-made responses table."""
    from verifiers import build_suite

    items = build_suite(TASK).items("train")
    src = tmp_path / "responses"
    src.mkdir(exist_ok=True)
    rows = [{"prompt_id": it.id, "sample_idx": 0, "response": f"x;A{it.answer}"} for it in items]
    pd.DataFrame(rows).to_parquet(src / "responses.parquet")
    cfg = {"task": TASK, "verify": {"min_correct": 1, "max_bad_fraction": 0.0}}
    return Spec(id="verify", stage="verify", key=stage_key("verify", 1, cfg, {"responses": "x"}),
                cfg=cfg, inputs={"responses": str(src)}, input_keys={"responses": "x"},
                experiment_root=str(tmp_path / "exp"))


def test_key_depends_on_config_version_and_inputs():
    k = stage_key("sft", 1, {"lr": 1e-3}, {"data": "a"})
    assert k == stage_key("sft", 1, {"lr": 1e-3}, {"data": "a"})
    assert len({k, stage_key("sft", 2, {"lr": 1e-3}, {"data": "a"}),
                stage_key("sft", 1, {"lr": 2e-3}, {"data": "a"}),
                stage_key("sft", 1, {"lr": 1e-3}, {"data": "b"})}) == 4


def test_execute_publishes_whole_dirs_with_the_manifest_last(tmp_path):
    spec = verify_spec(tmp_path)
    result = execute(spec)
    assert result["status"] == "done" and result["metrics"]["correct"] == 4
    sd = StageDir(Path(spec.experiment_root), "verify", spec.key)
    manifest = json.loads((sd.final / "manifest.json").read_text())
    assert manifest["key"] == spec.key and manifest["config"] == spec.cfg
    assert "torch" in manifest["versions"] and manifest["timings"]["seconds"] >= 0
    assert manifest["seeds"] == {"task.seed": 0}
    assert (sd.final / "verified.parquet").is_file()
    assert not list(sd.root.glob(".tmp-*")) and not sd.work.exists()
    assert "=== verify" in sd.log.read_text()
    assert execute(spec)["status"] == "cached"


def test_a_failed_stage_leaves_no_complete_looking_dir(tmp_path):
    spec = verify_spec(tmp_path)
    spec.cfg = {**spec.cfg, "verify": {"min_correct": 100, "max_bad_fraction": 0.0}}
    with pytest.raises(ValueError, match="only 4 of 4 responses verified correct"):
        execute(spec)
    sd = StageDir(Path(spec.experiment_root), "verify", spec.key)
    assert not sd.final.exists() and not list(sd.root.glob(".tmp-*"))
    assert "ValueError: only 4 of 4" in sd.log.read_text()  # the traceback is in the stage log


def test_stale_temp_dirs_of_dead_writers_are_removed(tmp_path):
    spec = verify_spec(tmp_path)
    sd = StageDir(Path(spec.experiment_root), "verify", spec.key)
    stale = sd.root / f".tmp-{spec.key}-999999"
    stale.mkdir(parents=True)
    (stale / "half-written.parquet").write_bytes(b"\0" * 10)
    execute(spec)
    assert not stale.exists() and sd.complete()


def _hold_lock_script(lock_path: Path, flag: Path) -> str:
    return textwrap.dedent(f"""
        import time
        from filelock import FileLock
        lock = FileLock({str(lock_path)!r}); lock.acquire()
        open({str(flag)!r}, "w").write("held")
        time.sleep(600)
    """)


def test_a_lock_left_by_a_killed_process_is_recovered(tmp_path):
    spec = verify_spec(tmp_path)
    sd = StageDir(Path(spec.experiment_root), "verify", spec.key)
    sd.lock_path.parent.mkdir(parents=True)
    flag = tmp_path / "flag"
    holder = subprocess.Popen([sys.executable, "-c", _hold_lock_script(sd.lock_path, flag)])
    try:
        for _ in range(200):
            if flag.exists():
                break
            time.sleep(0.05)
        assert flag.exists()
        with pytest.raises(Exception):
            sd.lock().acquire(timeout=0.2)  # held by a live process
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert execute(spec)["status"] == "done"  # the kernel released the dead holder's lock
    finally:
        holder.kill()


def test_parallel_processes_compute_a_stage_once(tmp_path):
    spec = verify_spec(tmp_path)
    sd = StageDir(Path(spec.experiment_root), "verify", spec.key)
    code = textwrap.dedent("""
        import json, sys
        from pipeline.execute import Spec, execute
        spec = Spec(**json.loads(sys.argv[1]))
        print(json.dumps(execute(spec)["status"]))
    """)
    from dataclasses import asdict

    lock = sd.lock()
    lock.acquire()  # both workers start while the key is locked, then race for it
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, json.dumps(asdict(spec))], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    time.sleep(2.0)
    lock.release()
    statuses = sorted(json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs)
    assert statuses == ["done", "reused", "reused"]
    assert sd.log.read_text().count("=== verify") == 1
