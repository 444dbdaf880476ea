"""Data parallel sample/score/eval: shards on Ray actors give the same rows as one engine."""
from __future__ import annotations

import os
import shutil
import sys
import time
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import torch

import stages.common as common
from conftest import TINY_TASK

ENGINE = {"engine": "hf", "device": "cpu", "dtype": "float32", "batch_size": 8}


class _Echo:
    def __init__(self, tag: str) -> None:
        self.tag, self.closed = tag, False

    def close(self) -> None:
        self.closed = True


def _square(worker: _Echo, x: int) -> tuple[str, int]:
    return worker.tag, x * x


def test_local_map_builds_one_worker_lazily_and_keeps_order():
    built: list[_Echo] = []

    def make() -> _Echo:
        built.append(_Echo("w"))
        return built[-1]

    assert list(common.parallel_map(make, _square, [])) == [] and not built
    out = list(common.parallel_map(make, _square, [1, 2, 3], workers=4))
    assert out == [(0, ("w", 1)), (1, ("w", 4)), (2, ("w", 9))]
    assert len(built) == 1 and built[0].closed


def test_worker_options_read_the_engine_config():
    assert common.worker_options({"engine": "hf"}) == {
        "workers": 1, "gpus_per_worker": None, "cpus_per_worker": 1.0}
    assert common.worker_options({"workers": 3, "gpus_per_worker": 2, "cpus_per_worker": 4}) == {
        "workers": 3, "gpus_per_worker": 2.0, "cpus_per_worker": 4.0}
    assert common.worker_options({"gpus_per_worker": "auto"})["gpus_per_worker"] is None


@pytest.fixture(scope="module")
def ray_pool():
    """A 2-CPU local Ray and ``ray_map`` installed as the stages' ``parallel_map``."""
    ray = pytest.importorskip("ray")
    from pipeline.parallel import ray_map
    from pipeline.runner import init_ray

    fresh = not ray.is_initialized()
    init_ray({"kind": "local", "num_cpus": 2, "num_gpus": 0})
    # the helpers below live in this test module, which the actors cannot import
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    common.set_parallel_map(ray_map)
    yield ray
    common.set_parallel_map(None)
    if fresh:
        ray.shutdown()


def _meet(rendezvous: str, worker: _Echo, i: int) -> int:
    """Record this worker's pid, then wait until two workers have: proves they run at once."""
    Path(rendezvous, f"{os.getpid()}-{i}").touch()
    deadline = time.time() + 120
    while len({p.name.split("-")[0] for p in Path(rendezvous).iterdir()}) < 2:
        if time.time() > deadline:
            raise TimeoutError("the second worker never ran a task")
        time.sleep(0.05)
    return os.getpid()


def test_ray_map_runs_workers_at_once_and_returns_every_task(ray_pool, tmp_path):
    tasks = list(range(6))
    got = dict(common.parallel_map(partial(_Echo, "w"), partial(_meet, str(tmp_path)), tasks,
                                   workers=2, cpus_per_worker=1))
    assert sorted(got) == tasks
    assert len(set(got.values())) == 2 and os.getpid() not in got.values()


def test_ray_map_refuses_a_worker_no_node_can_hold(ray_pool):
    with pytest.raises(RuntimeError, match="gpus_per_worker"):
        list(common.parallel_map(partial(_Echo, "w"), _square, [1, 2], workers=2,
                                 gpus_per_worker=1))


def _run_stage(stage, cfg: dict, inputs: dict, root: Path, done: list[Path] = ()) -> Path:
    """Run a stage function; ``done``: shard files of a crashed run already in ``work/``."""
    out, work = root / "out", root / "work"
    out.mkdir(parents=True)
    work.mkdir()
    for f in done:
        shutil.copy(f, work / f.name)
    stage.run(cfg, inputs, out, work)
    return out


def test_one_and_two_workers_write_the_same_rows(ray_pool, tiny_models, tmp_path):
    """sample, score and eval with fixed seeds: 1 worker (in-process) == 2 Ray actors, also
    when the 2-worker run resumes from some shards of an interrupted one."""
    model = tiny_models["behavior"]
    samp = {"n": 2, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 10, "shard_size": 4}
    ev = {"split": "eval", "n": 2, "ks": [1, 2], "temperature": 1.0, "top_p": 1.0,
          "max_new_tokens": 10, "shard_size": 4}
    tables = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each actor (cpus_per_worker=1): float sums depend on threads
    try:
        tables[1] = _three_stages(model, samp, ev, 1, tmp_path / "w1")
        # the 2-worker run resumes a crashed one: shards 0 and 2 of 4 are already saved
        done = [tmp_path / "w1" / "sample" / "work" / f"shard-{k:05d}.parquet" for k in (0, 2)]
        tables[2] = _three_stages(model, samp, ev, 2, tmp_path / "w2", done)
    finally:
        torch.set_num_threads(threads)
    for name in ("responses", "scored", "eval"):
        a, b = tables[1][name], tables[2][name]
        assert len(a) > 0 and list(a.columns) == list(b.columns)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    scored = tables[1]["scored"]
    assert list(scored["prompt_id"].drop_duplicates()) == [it.id for it in _train_items()]
    for lp, sp in zip(scored["behavior_logprobs"], scored["sample_logprobs"]):
        assert list(lp) == pytest.approx(list(sp), abs=1e-4)


def _three_stages(model: str, samp: dict, ev: dict, workers: int, root: Path,
                  done: list[Path] = ()) -> dict:
    from stages import eval as eval_stage
    from stages import sample, score

    eng = {**ENGINE, "workers": workers, "cpus_per_worker": 1}
    s_out = _run_stage(sample, {"task": TINY_TASK, "sample": samp, "engine": eng, "seed": 3},
                       {"model": model}, root / "sample", done)
    # score reads verify's table; the sampled rows carry every column it needs
    (root / "verified").mkdir()
    os.replace(s_out / "responses.parquet", root / "verified" / "verified.parquet")
    c_out = _run_stage(score, {"score": {"shard_size": 10, "topk": 2}, "engine": eng},
                       {"data": str(root / "verified"), "model": model}, root / "score")
    e_out = _run_stage(eval_stage, {"task": TINY_TASK, "eval": ev, "engine": eng, "seed": 3},
                       {"model": model}, root / "eval")
    assert len(list((root / "score" / "work").glob("shard-*.parquet"))) == 4  # 32 rows / 10
    return {"responses": pd.read_parquet(root / "verified" / "verified.parquet"),
            "scored": pd.read_parquet(c_out / "scored.parquet"),
            "eval": pd.read_parquet(e_out / "samples.parquet")}


def _train_items():
    from verifiers import build_suite

    return build_suite(TINY_TASK).items("train")
