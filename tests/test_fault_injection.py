"""Short fault injection (CI): SIGKILL the smoke study twice at random moments, then finish it.

The full version is `python benchmarks/fault_injection.py --rounds 5` (10 kills; see its docstring).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("fault_injection", ROOT / "benchmarks" / "fault_injection.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_killed_runs_resume_to_the_same_report(tmp_path):
    fi = load_script()
    summary = fi.main(["--rounds", "1", "--seed", "3", "--workdir", str(tmp_path),
                       "rl.steps=3", "eval.n=4", "eval.ks=[1,4]", "report.ks=[1,4]"])
    assert summary["reruns_completed"] == 1, summary["rounds"]
    assert summary["corrupt_artifacts"] == 0
    assert summary["max_metric_difference"] == 0.0
    assert len(summary["kills"]) == 2
