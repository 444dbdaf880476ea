"""GPU accounting: the 1.7B study on 8 logical GPUs never double-books one, rl stages queue
behind a lease gate that verl's own start check accepts, locks are waited for without GPUs and
with a limit, and a second local cluster on the same GPUs is refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from pipeline import gpu_sim, gpus
from pipeline.cli import CONF_DIR, build_dag
from pipeline.dag import Dag, Node
from pipeline.execute import LockTimeout, Spec, execute
from pipeline.runner import task_options

ROOT = Path(__file__).resolve().parent.parent
TASK = {"suite": "toy", "seed": 0, "sizes": {"train": 4, "rl": 4, "eval": 4}, "pretrain_size": 10}


def study(tmp_path: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=synlogic_qwen3_1p7b",
                                           f"results_dir={tmp_path}", "tracking=none"])
    return build_dag(cfg, explicit=False), OmegaConf.to_container(cfg, resolve=True)


def test_simulated_8_gpu_study_never_double_books_a_gpu(tmp_path):
    """The 1.7B study's DAG (13 objectives, direct RL, every eval and analysis) through the real
    runner on 8 logical GPUs; stage bodies sleep and record the GPU ids Ray gave them; rl runs
    verl's own ResourcePoolManager (free-GPU check) and placement groups inside its gate."""
    pytest.importorskip("verl")
    dag, cfg = study(tmp_path / "results")
    assert len(dag.nodes) == 87
    plan = gpu_sim.Plan(gpu_hours=gpu_sim.GPU_HOURS_1P7B, shards=gpu_sim.shards_for(cfg),
                        seconds_per_gpu_hour=0.25, records=str(tmp_path / "records"))
    res = gpu_sim.run(dag, plan, num_gpus=8)
    assert res.states == {nid: "done" for nid in dag.order}     # nothing failed on a busy cluster
    assert gpu_sim.violations(res.records, 8) == []  # always ids; never twice at once; <= 8
    by_key: dict[str, list[dict]] = {}
    for r in res.records:
        by_key.setdefault(r["key"], []).append(r)
    for n in dag.nodes.values():
        recs = by_key.get(n.key, [])
        if n.stage in ("sample", "score", "eval"):  # one eval shard too: on an actor with a GPU
            assert recs and all(r["kind"] == "engine" and len(r["gpu_ids"]) == 1 for r in recs), n.id
        elif n.stage == "rl":                       # verl's 8 workers, one GPU each, all distinct
            assert sorted(len(r["gpu_ids"]) for r in recs) == [1] * 8, n.id
            assert len({r["gpu_ids"][0] for r in recs}) == 8, n.id
        elif n.stage in ("sft", "analysis"):
            assert [len(r["gpu_ids"]) for r in recs] == [n.resources["num_gpus"]], n.id
    assert max(u for _, u in gpu_sim.utilisation(res.records)) == 8


def test_task_options_gate_verl_and_lease_every_gpu(tmp_path):
    dag, _ = study(tmp_path)
    o = task_options(dag.nodes["rl[sft]"], leased=True)
    assert (o["num_gpus"], o["resources"]) == (0, {gpus.LEASE: 8.0})
    assert task_options(dag.nodes["sft[sft]"], leased=True)["resources"] == {gpus.LEASE: 8.0}
    assert "resources" not in task_options(dag.nodes["eval[base]"], leased=True)
    assert "resources" not in task_options(dag.nodes["rl[sft]"], leased=False)
    trl = Node("rl[x]", "rl", {"rl": {"engine": "trl"}}, {}, {"num_cpus": 1, "num_gpus": 0})
    assert task_options(trl, leased=True)["num_gpus"] == 0 and "resources" not in task_options(trl, True)


def test_requests_no_node_can_hold_and_gpu_nodes_without_leases_are_refused(monkeypatch):
    node = {"CPU": 96.0, "GPU": 8.0, gpus.LEASE: 8.0}
    monkeypatch.setattr(gpus, "_alive_nodes", lambda: [node])
    gpus.check_fits({"rl[sft]": {"CPU": 2.0, "GPU": 0.0, gpus.LEASE: 8.0}})
    with pytest.raises(RuntimeError, match=r"rl\[sft\] asks for 2 CPU, 16 gpu_lease"):
        gpus.check_fits({"rl[sft]": {"CPU": 2.0, "GPU": 0.0, gpus.LEASE: 16.0}})  # nnodes=2
    gpus.check_leases(needs_gate=True)
    monkeypatch.setattr(gpus, "_alive_nodes", lambda: [{"CPU": 96.0, "GPU": 8.0}])
    gpus.check_leases(needs_gate=False)
    with pytest.raises(RuntimeError, match="ray start --head --num-gpus"):
        gpus.check_leases(needs_gate=True)


def verify_node(tmp_path: Path) -> tuple[Node, Path]:
    from verifiers import build_suite

    src = tmp_path / "responses"
    src.mkdir(parents=True)
    rows = [{"prompt_id": it.id, "sample_idx": 0, "response": f"A{it.answer}"}
            for it in build_suite(TASK).items("train")]
    pd.DataFrame(rows).to_parquet(src / "responses.parquet")
    cfg = {"task": TASK, "verify": {"min_correct": 1, "max_bad_fraction": 0.0}}
    return Node("verify", "verify", cfg, {"responses": str(src)},
                {"num_cpus": 1, "num_gpus": 1, "max_retries": 0}), tmp_path / "exp"


def test_a_lock_wait_has_a_limit_and_names_the_holder(tmp_path):
    node, root = verify_node(tmp_path)
    dag = Dag([node], root)
    sd = dag.dir("verify")
    held = sd.lock()
    held.acquire()  # another holder (a second descriptor conflicts like another process)
    sd.write_holder()
    spec = Spec(id="verify", stage="verify", key=node.key, cfg=node.cfg,
                inputs=dag.input_paths("verify"), input_keys={}, experiment_root=str(root))
    try:
        assert execute(spec, lock_timeout=0)["status"] == "busy"
        with pytest.raises(LockTimeout, match=rf"held after 0.3 s by pid {os.getpid()}"):
            execute(spec, lock_timeout=0.3)
    finally:
        sd.clear_holder()
        held.release()
    assert execute(spec, lock_timeout=0.3)["status"] == "done"


@pytest.fixture(scope="module")
def one_gpu_ray():
    ray = pytest.importorskip("ray")
    from pipeline.runner import init_ray

    if ray.is_initialized():
        ray.shutdown()
    init_ray({"kind": "local", "num_cpus": 2, "num_gpus": 1})  # a logical GPU and its lease
    yield ray
    ray.shutdown()


def test_a_stage_locked_by_another_process_waits_without_holding_its_gpu(one_gpu_ray, tmp_path):
    from pipeline import runner

    ray = one_gpu_ray
    node, root = verify_node(tmp_path)
    dag = Dag([node], root)
    sd = dag.dir("verify")
    held = sd.lock()
    held.acquire()
    sd.write_holder()
    lines: list[str] = []
    out = runner.run(dag, {"kind": "local", "lock_timeout_s": 4}, echo=lines.append)
    assert out.states == {"verify": "failed"} and f"pid {os.getpid()}" in out.errors["verify"]
    assert any("waiting: another process is computing it" in s for s in lines)

    box: dict = {}
    t = threading.Thread(target=lambda: box.update(out=runner.run(
        dag, {"kind": "local", "lock_timeout_s": 120}, echo=lambda s: None)))
    t.start()
    time.sleep(3.0)
    free = ray.available_resources()
    assert free.get("GPU") == 1 and free.get(gpus.LEASE) == 1   # waiting holds neither
    sd.clear_holder()
    held.release()
    t.join(timeout=120)
    assert box["out"].states == {"verify": "done"}


CLAIM = """
import sys
from pipeline.cluster import claim_local_gpus
from pathlib import Path
claim_local_gpus({"kind": "local", "num_gpus": 8}, "second job", path=Path(sys.argv[1]))
print("CLAIMED")
"""


def test_a_second_local_cluster_on_the_same_gpus_is_refused(tmp_path):
    from pipeline.cluster import claim_local_gpus

    path = tmp_path / "local-gpus.lock"
    claim_local_gpus({"kind": "local", "num_gpus": 0}, "cpu only", path=path)
    assert not path.exists()  # nothing to double-book without GPUs
    claim_local_gpus({"kind": "local", "num_gpus": 8}, "first job", path=path)
    claim_local_gpus({"kind": "local", "num_gpus": 8}, "next job, same process", path=path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CLAIM, str(path)], env=env, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode != 0 and "CLAIMED" not in proc.stdout
    assert f"pid {os.getpid()} (first job" in proc.stderr and "cluster=ray" in proc.stderr
    assert json.loads(path.with_suffix(".holder").read_text())["pid"] == os.getpid()
