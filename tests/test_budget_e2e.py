"""study.mode=budget end to end through the CLI and Ray on the smoke world (3 objectives, top 1
plus 1 control), then the full study on the same results, then the budget run again. Slow
(several minutes on 2 cores): ``pytest -m slow tests/test_budget_e2e.py``."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STUDY = ("objectives=[sft,pear_token,sft_kl]", "study.top_m=1", "study.controls=1")

pytestmark = pytest.mark.slow


def cli(command: str, results: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "pipeline", command, "+experiment=smoke",
                           f"results_dir={results}", "tracking=none", *STUDY, *args], cwd=ROOT,
                          env=env, text=True, capture_output=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def computed(proc) -> set[str]:
    return set(re.findall(r"^\[(.+?)\] done in", proc.stdout, flags=re.M))


def test_budget_then_full_then_budget(tmp_path):
    first = cli("run", tmp_path, "study.mode=budget")
    decision = json.loads(Path(re.search(r"^decision: (.+)$", first.stdout, re.M)[1]).read_text())
    assert len(decision["top"]) == 1 and len(decision["controls"]) == 1
    [skipped] = decision["skipped"]
    branch = {f"rl[{skipped}]", f"eval[rl:{skipped}]", f"analysis[rl:{skipped}]"}
    assert set(decision["skipped_nodes"]) == branch and not computed(first) & branch
    assert {f"rl[{o}]" for o in decision["top"] + decision["controls"]} <= computed(first)
    assert "report" in computed(first)
    status = cli("status", tmp_path, "study.mode=budget").stdout
    assert f"RL-side nodes skipped (3): {', '.join(decision['skipped_nodes'])}" in status
    counts = re.search(r"^\d+ nodes: .+$", status, re.M)[0]
    assert f"{skipped:<16}" in status and "0 failed, 0 missing" in counts

    full = cli("run", tmp_path)  # the full study: only the skipped branch and its report
    assert computed(full) == branch | {"report"}
    again = cli("run", tmp_path, "study.mode=budget")  # computes nothing
    assert computed(again) == set()
    m = json.loads(Path(re.search(r"^decision: (.+)$", again.stdout, re.M)[1]).read_text())
    m = m["summary"]
    assert m["full_study_complete"] and m["saved_measured_nodes"] == 3 and m["seconds_saved"] > 0
    assert m["online_best_role"] in ("selected", "control", "skipped")
    print(Path(re.search(r"^budget summary: (.+)$", again.stdout, re.M)[1]).read_text())
