"""The console of a real ``python -m pipeline run +experiment=smoke`` whose stage bodies are fakes
(``tests/fake_stages/sitecustomize.py``): Ctrl-C, resuming, progress when output is piped, clean
stage logs, and what a fully cached run prints.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAKES = ROOT / "tests" / "fake_stages"


def start(results: Path, *args: str, **env: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKES), str(ROOT)]),
           "FAKE_STAGES": "1", "PIPELINE_PROGRESS": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "pipeline", "run", "+experiment=smoke",
                             f"results_dir={results}", "tracking=none", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(path_glob: str, root: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not list(root.glob(path_glob)):
        assert proc.poll() is None, finish(proc)
        assert time.time() < deadline, f"no {path_glob} after {timeout} s"
        time.sleep(0.05)


def interrupt_then_resume(tmp_path: Path, cluster: str) -> None:
    results = tmp_path / "results"
    args = (f"cluster={cluster}", *([] if cluster == "inline" else ["cluster.num_cpus=2"]),
            "progress.heartbeat_s=0.2")
    proc = start(results, *args)
    wait_for("smoke/sft/.work-*/checkpoint-10", results, proc)
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130, out + err
    assert "Traceback" not in out + err, out + err
    assert re.search(r"^\[sft\[\w+\]\] cancelled$", out, flags=re.M), out
    assert re.search(r"^interrupted after \d+ s: \d+ of 22 stages finished", out, flags=re.M), out
    assert "re-run the same command to resume" in out
    assert not list(results.glob("smoke/sft/.tmp-*"))  # the cancelled stage cleaned up

    code, out, err = finish(start(results, *args, FAKE_STEP_S="0.1"))
    assert code == 0, out + err
    resumed = re.findall(r"^\[sft\[\w+\]\] resumed from checkpoint-(\d+)$", out, flags=re.M)
    assert resumed and int(resumed[0]) >= 10, out
    # output is a pipe: heartbeat lines with percent, rate and estimate, and the run's line
    assert re.search(r"^\[sft\[\w+\]\] \d+% \(\d+/30 step\), [\d.]+ step/s, ~\d+s left$", out,
                     flags=re.M), out
    assert re.search(r"^\[run\] \d+/22 stages finished \(\d+ cached\), \d running, ", out, flags=re.M), out
    logs = list((results / "smoke" / "logs").glob("*.log"))
    assert len(logs) == 22
    for log in logs:  # every stage's library logger wrote to its own log, never to a closed one
        text = log.read_text()
        assert "Logging error" not in text and "closed file" not in text, (log, text)
        assert text.count("fake library: ") == text.count("=== "), (log, text)

    code, out, err = finish(start(results, *args))  # nothing left to do
    assert code == 0, out + err
    report = results.resolve() / "smoke" / "report" / "latest" / "report.md"
    assert out.splitlines() == [
        f"nothing to run: all 22 stages are cached in {results.resolve() / 'smoke'}",
        f"report: {report}"], out


def test_ctrl_c_inline_cancels_says_how_to_resume_and_the_rerun_resumes(tmp_path):
    interrupt_then_resume(tmp_path, "inline")


@pytest.mark.slow
def test_ctrl_c_on_ray_cancels_says_how_to_resume_and_the_rerun_resumes(tmp_path):
    interrupt_then_resume(tmp_path, "local")


def test_a_second_ctrl_c_exits_at_once(tmp_path):
    results = tmp_path / "results"
    proc = start(results, "cluster=inline", FAKE_STUBBORN="1")
    wait_for("smoke/sft/.work-*/checkpoint-5", results, proc)
    proc.send_signal(signal.SIGINT)  # the stage ignores it
    time.sleep(0.5)
    assert proc.poll() is None
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc, timeout=30)
    assert code == 130 and time.time() - sent < 5, out + err
    assert "second Ctrl-C: exiting now" in err
