"""The study's answer end to end: one `+experiment=smoke` run with W&B offline (Ray, CLI in a
subprocess), then `status`, a separate one-objective job and `report` gathering all branches.

Checks the W&B promises by reading the offline run files back: a run per computed stage with
group = experiment and job_type = stage, the SFT / RL curves streamed, the report run holding the
offline-vs-online table; and that no secret from the environment reaches any file.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline import tracking

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {"WANDB_API_KEY": "0123456789abcdef-sentinel-wandb-key", "HF_TOKEN": "hf_sentinelTOKEN987654"}


def cli(command: str, *args: str, results: Path, timeout: int = 900):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    env.update({"PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false", **SECRETS})
    proc = subprocess.run([sys.executable, "-m", "pipeline", command, "+experiment=smoke",
                           f"results_dir={results}", "tracking=wandb", "tracking.mode=offline", *args],
                          cwd=ROOT, env=env, text=True, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    proc = cli("run", results=results)
    runs = {}
    for d in tracking.offline_runs(results / "smoke"):
        r = tracking.read_offline_run(d)
        runs[r["run"]["name"]] = r
    return results, proc, runs


def test_a_wandb_run_per_stage_with_its_config_and_metrics(smoke):
    results, proc, runs = smoke
    computed = set(re.findall(r"^\[(.+?)\] done in", proc.stdout, flags=re.M))
    assert set(runs) == computed
    assert f"wandb sync {results / 'smoke' / 'wandb'}/offline-run-*" in proc.stdout
    for name, r in runs.items():
        assert r["run"]["group"] == "smoke" and r["run"]["job_type"] == name.split("[")[0]
        manifest = json.loads((results / "smoke" / r["run"]["job_type"] / r["config"]["_node"]["key"]
                               / "manifest.json").read_text())
        assert {k: r["config"][k] for k in manifest["config"]} == manifest["config"]
    ev = runs["eval[rl:pear_token]"]
    metrics = json.loads((results / "smoke" / "eval" / ev["config"]["_node"]["key"]
                          / "metrics.json").read_text())
    assert ev["summary"]["pass@1"] == pytest.approx(metrics["pass@1"])


def test_sft_and_rl_curves_are_streamed(smoke):
    _, _, runs = smoke
    sft = runs["sft[pear_token]"]["history"]
    assert any("sft/loss" in h and "sft/weight_mean" in h for h in sft)
    rl = runs["rl[sft]"]["history"]
    steps = [h["_step"] for h in rl if "rl/reward" in h]
    assert len(steps) >= 2 and steps == sorted(steps)
    assert any("rl/loss" in h and "rl/entropy" in h for h in rl)  # (rl/kl only when rl.beta > 0)


def test_report_run_holds_the_table_and_charts(smoke):
    results, _, runs = smoke
    r = runs["report"]
    table = r["summary"]["offline_online"]
    data = json.loads((r["files"] / table["path"]).read_text())
    policies = [row[data["columns"].index("policy")] for row in data["data"]]
    assert set(policies) == {"base", "behavior", "sft", "pear_token", "direct"}
    assert {"offline_pass@1", "online_pass@1", "offline_rank", "rank_change"} <= set(data["columns"])
    csv = pd.read_csv(results / "smoke" / "report" / "latest" / "results.csv")
    assert len(csv) == table["nrows"]
    assert "slope/pass@1_table" in r["summary"] and "pass_at_k/offline_table" in r["summary"]
    assert any(k.startswith("proxy/") for k in r["summary"])
    for png in ("offline_online", "proxies", "pass_at_k"):
        assert (r["files"] / r["summary"][f"plots/{png}"]["path"]).stat().st_size > 5000


def test_no_secret_reaches_any_file(smoke):
    results, _, _ = smoke
    for path in results.rglob("*"):
        if path.is_file() and not path.is_symlink():
            blob = path.read_bytes()
            for value in SECRETS.values():
                assert value.encode() not in blob, path


def test_report_md_and_proxies_from_the_run(smoke):
    results, _, _ = smoke
    md = (results / "smoke" / "report" / "latest" / "report.md").read_text()
    assert "## Which offline number predicts online pass@1?" in md and "| pear_token |" in md
    # two objectives: the answer says so instead of printing τ = ±1.00
    assert md.startswith("# Offline vs online: smoke\n\n## Answer\n") and "Too few to judge" in md
    assert "**PEAR vs SFT after RL:** pear_token − sft = " in md
    df = pd.read_csv(results / "smoke" / "report" / "latest" / "results.csv").set_index("policy")
    assert df.loc[["sft", "pear_token"], ["kl_to_base", "nss_base_sft"]].gt(0).all().all()
    # maj@n: the eval's own metric and the report's agree (both vote among answers only)
    base = [d for d in (results / "smoke" / "eval").iterdir() if (d / "manifest.json").is_file()
            and json.loads((d / "manifest.json").read_text())["node"] == "eval[base]"]
    assert len(base) == 1
    m = json.loads((base[0] / "metrics.json").read_text())
    assert df.loc["base", "offline_maj@8"] == pytest.approx(m["maj@8"])
    # RL vs its start (the base for direct); a few smoke GRPO steps may leave it unmoved
    assert df.loc[["sft", "pear_token", "direct"], ["nss_sft_rl", "kl_rl"]].ge(0).all().all()


def test_status_then_a_separate_job_then_report_gathers_all_branches(smoke):
    results, _, _ = smoke
    status = cli("status", results=results).stdout
    nodes = re.findall(r"^  (\S+)\s+(done|cached|running|failed|missing)\s", status, flags=re.M)
    assert len(nodes) == 22 and all(s == "done" for _, s in nodes), status
    assert re.search(r"^  eval\[rl:sft\]\s+done .*pass@1=", status, flags=re.M)
    cli("run", "objective=talr", results=results)  # a separate job, as one of `-m objective=...`
    report = cli("report", results=results).stdout
    assert "report over direct, pear_token, sft, talr" in report
    md = Path(re.search(r"^report \(done\): (.+)$", report, flags=re.M).group(1))
    assert md.parent == (results / "smoke" / "report" / "latest").resolve()
    df = pd.read_csv(md.parent / "results.csv").set_index("policy")
    assert df.loc[["pear_token", "sft", "talr"], "online_rank"].notna().all()
    corr = pd.read_csv(md.parent / "correlations.csv")
    assert (corr.loc[corr["column"] == "offline_pass@1", "n"] == 3).all()
