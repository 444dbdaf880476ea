"""Ray failures: a worker that dies mid-stage is retried; one that keeps dying is reported."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
TASK = {"suite": "toy", "seed": 0, "sizes": {"train": 4, "rl": 4, "eval": 4}, "pretrain_size": 10}

SCRIPT = textwrap.dedent("""
    import json, sys
    from pipeline.dag import Dag, Node
    from pipeline import runner
    args = json.loads(sys.argv[1])
    nodes = [Node("verify", "verify", args["cfg"], {"responses": args["src"]}),
             Node("verify[again]", "verify", {**args["cfg"], "verify": {**args["cfg"]["verify"], "min_correct": 2}},
                  {"responses": args["src"]})]
    for n in nodes:
        n.resources = {"num_cpus": 1, "max_retries": args["retries"]}
    dag = Dag(nodes, args["root"])
    out = runner.run(dag, {"kind": "local", "num_cpus": 2}, echo=print)
    print("STATES", json.dumps(out.states))
""")


def run(tmp_path: Path, retries: int, marker_name: str, fault_node: str = "verify") -> tuple[dict, str]:
    from verifiers import build_suite

    src = tmp_path / "responses"
    src.mkdir(parents=True)
    rows = [{"prompt_id": it.id, "sample_idx": 0, "response": f"A{it.answer}"}
            for it in build_suite(TASK).items("train")]
    pd.DataFrame(rows).to_parquet(src / "responses.parquet")
    args = {"cfg": {"task": TASK, "verify": {"min_correct": 1, "max_bad_fraction": 0.0}},
            "src": str(src), "root": str(tmp_path / "exp"), "retries": retries}
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "PIPELINE_FAULT": f"{fault_node}:{tmp_path / marker_name}"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(args)], env=env, cwd=ROOT,
                          text=True, capture_output=True, timeout=300)
    assert "STATES" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout.split("STATES", 1)[1]), proc.stdout


def test_worker_death_is_retried_and_a_stage_that_keeps_dying_is_reported(tmp_path):
    states, _ = run(tmp_path / "a", retries=1, marker_name="fired")
    assert states == {"verify": "done", "verify[again]": "done"}
    assert (tmp_path / "a" / "fired").is_file()  # the fault did fire: the first worker died

    states, out = run(tmp_path / "b", retries=0, marker_name="fired")
    assert states == {"verify": "failed", "verify[again]": "done"}  # the other branch finished
    assert "[verify] FAILED" in out and "log: " in out
