"""Kill a study with SIGKILL at random moments, re-run, and check nothing is lost or wrong.

    python benchmarks/fault_injection.py --kills 10              # the full version (~10 min)
    python benchmarks/fault_injection.py --kills 3 --seed 1      # the short version CI runs

1. A reference run of ``+experiment=smoke`` completes uninterrupted in its own results dir.
2. In a second results dir, the same study is started ``--kills`` times and each time killed with
   SIGKILL (the whole process group) after a random delay, then started again. After every kill
   the script checks that every stage directory that looks complete (has ``manifest.json``) is
   whole: its tables load and its model weights load.
3. A last run completes the study; its report must equal the reference's metric for metric.

Runs use ``cluster=inline`` by default so that one SIGKILL kills every process of the run; with
``--cluster local`` the kill hits the driver and Ray reaps its workers (a worker may finish and
publish the stage it was running, which is still safe: publication is atomic). Prints a JSON
summary: where each kill landed, re-runs completed, corrupt artifacts found, metric differences.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start(results: Path, cluster: str, extra: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "+experiment=smoke", f"results_dir={results}",
         f"cluster={cluster}", *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)


def check_whole(results: Path) -> list[str]:
    """Every complete-looking stage dir must be whole: tables and weights load."""
    import pandas as pd
    from safetensors.torch import load_file

    bad = []
    for manifest in results.glob("*/*/*/manifest.json"):
        d = manifest.parent
        if d.name.startswith("."):
            bad.append(f"{d}: a temp/work dir holds a manifest")
            continue
        try:
            json.loads(manifest.read_text())
            for t in d.rglob("*.parquet"):
                pd.read_parquet(t)
            for w in d.rglob("*.safetensors"):
                load_file(w)
            for j in d.rglob("*.json"):
                json.loads(j.read_text())
        except Exception as e:  # noqa: BLE001 - any failure to load is corruption
            bad.append(f"{d}: {type(e).__name__}: {e}")
    return bad


def report_rows(results: Path) -> list[dict]:
    latest = results / "smoke" / "report" / "latest" / "results.json"
    return json.loads(latest.read_text())


def diff_rows(a: list[dict], b: list[dict]) -> float:
    worst = 0.0
    for ra, rb in zip(a, b):
        for k, v in ra.items():
            if isinstance(v, float) and isinstance(rb.get(k), float):
                worst = max(worst, abs(v - rb[k]))
            elif v != rb.get(k):
                worst = float("inf")
    return worst if len(a) == len(b) else float("inf")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=ROOT / "results" / "_fault_injection")
    ap.add_argument("--cluster", default="inline")
    ap.add_argument("--max-delay", type=float, default=None,
                    help="upper bound of the random kill delay (default: the reference run time)")
    ap.add_argument("extra", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    ref_dir, dut_dir = args.workdir / "reference", args.workdir / "killed"
    for d in (ref_dir, dut_dir):
        subprocess.run(["rm", "-rf", str(d)], check=True)

    t0 = time.time()
    ref = start(ref_dir, args.cluster, args.extra)
    out, _ = ref.communicate()
    if ref.returncode != 0:
        raise SystemExit(f"reference run failed:\n{out[-3000:]}")
    ref_seconds = time.time() - t0
    max_delay = args.max_delay or ref_seconds

    kills = []
    for i in range(args.kills):
        delay = rng.uniform(0.5, max_delay)
        proc = start(dut_dir, args.cluster, args.extra)
        try:
            out, _ = proc.communicate(timeout=delay)
            kills.append({"kill": i, "delay_s": round(delay, 1), "landed": "after completion"})
            continue
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        started = re.findall(r"^\[(.+?)\] started", out, flags=re.M)
        finished = set(re.findall(r"^\[(.+?)\] (?:done|reused|cached)", out, flags=re.M))
        running = [n for n in started if n not in finished]
        kills.append({"kill": i, "delay_s": round(delay, 1),
                      "landed": running[-1] if running else "before any stage started",
                      "corrupt": check_whole(dut_dir)})

    final = start(dut_dir, args.cluster, args.extra)
    out, _ = final.communicate()
    summary = {
        "reference_seconds": round(ref_seconds, 1), "kills": kills,
        "final_rc": final.returncode,
        "reruns_completed": int(final.returncode == 0),
        "corrupt_artifacts": sum(len(k.get("corrupt", [])) for k in kills) + len(check_whole(dut_dir)),
    }
    if final.returncode == 0:
        summary["max_metric_difference"] = diff_rows(report_rows(ref_dir), report_rows(dut_dir))
    else:
        summary["final_output_tail"] = out[-3000:]
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    s = main()
    ok = s["final_rc"] == 0 and s["corrupt_artifacts"] == 0 and s.get("max_metric_difference") == 0.0
    sys.exit(0 if ok else 1)
