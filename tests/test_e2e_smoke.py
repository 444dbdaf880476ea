"""The whole study end to end: `python -m pipeline run +experiment=smoke` on the CPU, with Ray.

One module-scoped run (the CLI in a subprocess, Ray started locally) feeds every test here:
manifests, metric sanity, RL moving the weights, the cache on a second run, multirun reuse, and
a failing branch that does not stop the others.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, results: Path, command: str = "run", timeout: int = 900):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "pipeline", command, "+experiment=smoke",
                           f"results_dir={results}", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)
    return proc


def lines(proc, state: str) -> set[str]:
    return set(re.findall(rf"^\[(.+?)\] {state}", proc.stdout, flags=re.M))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    proc = cli(results=results)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results, proc


def stage_dirs(results: Path, stage: str) -> list[Path]:
    return sorted(p for p in (results / "smoke" / stage).iterdir() if not p.name.startswith("."))


def test_every_stage_has_a_manifest_and_the_report_is_printed(smoke):
    results, proc = smoke
    planned = re.findall(r"^  (\S+)\s+([0-9a-f]{16})\s+to run", proc.stdout, flags=re.M)
    assert len(planned) == 22  # 17 + analysis of 2 SFT, 2 RL and the direct-RL checkpoints
    for node, key in planned:
        stage = node.split("[")[0]
        manifest = results / "smoke" / stage / key / "manifest.json"
        assert manifest.is_file(), node
        assert json.loads(manifest.read_text())["key"] == key
    report = re.search(r"^report: (.+)$", proc.stdout, flags=re.M).group(1)
    assert Path(report).is_file() and "pear_token" in Path(report).read_text()
    assert (Path(report).parent / "offline_online.png").stat().st_size > 1000
    assert lines(proc, "done in") == {n for n, _ in planned}


def test_pass_at_k_is_a_probability_and_grows_with_k(smoke):
    results, _ = smoke
    evals = stage_dirs(results, "eval")
    assert len(evals) == 7  # base, behavior, 2 x sft, 2 x rl, direct rl
    for d in evals:
        m = json.loads((d / "metrics.json").read_text())
        ps = [m[f"pass@{k}"] for k in (1, 4, 8)]
        assert all(0.0 <= p <= 1.0 for p in ps), (d, ps)
        assert ps == sorted(ps), (d, ps)
        assert 0.0 <= m["maj@8"] <= 1.0 and m["avg@8"] == pytest.approx(m["pass@1"])


def test_rl_changed_the_parameters(smoke):
    results, _ = smoke
    for d in stage_dirs(results, "rl"):
        manifest = json.loads((d / "manifest.json").read_text())
        start = Path(manifest["inputs"]["model"])
        before, after = load_file(start / "model.safetensors"), load_file(d / "model.safetensors")
        assert before.keys() == after.keys()
        assert any(not (before[k] == after[k]).all() for k in before), d
        assert manifest["metrics"]["param_delta_l2"] > 0


def test_second_run_hits_the_cache_for_every_stage(smoke):
    results, first = smoke
    again = cli(results=results)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.splitlines() == [  # one summary line and the report under latest/
        f"nothing to run: all 22 stages are cached in {results.resolve() / 'smoke'}",
        f"report: {results.resolve() / 'smoke' / 'report' / 'latest' / 'report.md'}"]


def test_changing_sft_lr_plans_only_sft_and_downstream(smoke):
    results, _ = smoke
    proc = cli("sft.lr=2e-3", results=results, command="plan")
    assert proc.returncode == 0, proc.stderr[-2000:]
    todo = set(re.findall(r"^  (\S+)\s+[0-9a-f]{16}\s+to run", proc.stdout, flags=re.M))
    assert todo == {"sft[sft]", "sft[pear_token]", "eval[sft:sft]", "eval[sft:pear_token]",
                    "rl[sft]", "rl[pear_token]", "eval[rl:sft]", "eval[rl:pear_token]", "report",
                    "analysis[sft:sft]", "analysis[sft:pear_token]", "analysis[rl:sft]",
                    "analysis[rl:pear_token]"}


def test_multirun_jobs_reuse_the_shared_upstream_stages(smoke):
    results, _ = smoke
    proc = cli("-m", "objective=sft,pear_seq", results=results)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    started = re.findall(r"^\[(.+?)\] started", proc.stdout, flags=re.M)
    assert {"bootstrap", "sample", "verify", "score", "sft[sft]", "rl[direct]"}.isdisjoint(started)
    assert {"sft[pear_seq]", "rl[pear_seq]", "eval[rl:pear_seq]"} <= set(started)
    assert started.count("sft[pear_seq]") == 1
    assert len(re.findall(r"^  sample\s+[0-9a-f]{16}\s+cached", proc.stdout, flags=re.M)) == 2


def test_a_failing_branch_stops_itself_and_names_its_log(smoke):
    results, _ = smoke
    # an fsdp option transformers refuses fails sft[pear_block] inside the stage (the config
    # schema leaves sft.fsdp's strings to transformers); eval.n=4 gives the other branches
    # fresh work that must still finish
    proc = cli("objective=pear_block", "sft.fsdp=bogus", "eval.n=4",
               "eval.ks=[1,4]", "report.ks=[1,4]", results=results)
    assert proc.returncode != 0
    assert "FAILED stage sft[pear_block]" in proc.stderr
    log = re.search(r"FAILED stage sft\[pear_block\]; log: (\S+)", proc.stderr).group(1)
    assert "bogus" in Path(log).read_text()
    assert {"eval[base]", "eval[behavior]", "eval[rl:direct]"} <= lines(proc, "done in")
    assert {"rl[pear_block]", "report"} <= lines(proc, "skipped")
