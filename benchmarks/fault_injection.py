"""Kill a study with SIGKILL at random moments, re-run, and check nothing is lost or wrong.

    python benchmarks/fault_injection.py --rounds 5              # the full version: 10 kills
    python benchmarks/fault_injection.py --rounds 1 --seed 3     # the short version CI runs

1. A reference run of ``+experiment=smoke`` completes uninterrupted in its own results dir.
2. ``--rounds`` times, in a fresh second results dir: ``--kills-per-round`` times, a stage that
   is not complete yet is picked at random (a stage kind first, so sampling, scoring, SFT and
   RL are hit as often as the many eval nodes), the study is started, and a random time into that
   stage (uniform over its duration in the reference run) the whole process group gets SIGKILL:
   kills land mid-bootstrap, mid-sampling, mid-SFT, mid-RL, while an artifact is published.
   After every kill the script checks that every stage directory that looks complete (has
   ``manifest.json``) is whole: its tables, JSON and model weights load.
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
    ap.add_argument("--rounds", type=int, default=5, help="fresh studies, each killed and resumed")
    ap.add_argument("--kills-per-round", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=ROOT / "results" / "_fault_injection")
    ap.add_argument("--cluster", default="inline")
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

    nodes = reference_nodes(ref_dir)
    kills, rounds = [], []
    for r in range(args.rounds):
        # a fresh study per round; each kill targets a stage that is not complete yet and lands
        # at a random moment within that stage's reference duration
        subprocess.run(["rm", "-rf", str(dut_dir)], check=True)
        for j in range(args.kills_per_round):
            todo = [n for n in nodes if not (dut_dir / n["path"] / "manifest.json").is_file()]
            if not todo:
                break
            kind = rng.choice(sorted({n["node"].split("[")[0] for n in todo}))  # every stage kind
            target = rng.choice([n for n in todo if n["node"].split("[")[0] == kind])
            delay = rng.uniform(0.0, target["seconds"])
            kills.append({"round": r, "kill": j, "target": target["node"],
                          **kill_once(dut_dir, args, target["node"], delay)})
        final = start(dut_dir, args.cluster, args.extra)
        out, _ = final.communicate()
        done = {"round": r, "final_rc": final.returncode, "corrupt": check_whole(dut_dir)}
        if final.returncode == 0:
            done["max_metric_difference"] = diff_rows(report_rows(ref_dir), report_rows(dut_dir))
        else:
            done["final_output_tail"] = out[-3000:]
        rounds.append(done)

    summary = {
        "reference_seconds": round(ref_seconds, 1), "kills": kills, "rounds": rounds,
        "kills_mid_stage": sum(k["landed"] not in ("after completion", "between stages")
                               for k in kills),
        "reruns_completed": sum(x["final_rc"] == 0 for x in rounds),
        "corrupt_artifacts": sum(len(k.get("corrupt", [])) for k in kills)
        + sum(len(x["corrupt"]) for x in rounds),
        "max_metric_difference": max((x.get("max_metric_difference", float("inf")) for x in rounds),
                                     default=0.0),
    }
    print(json.dumps(summary, indent=2))
    return summary


def reference_nodes(ref_dir: Path) -> list[dict]:
    """Every stage of the reference run: node id, its dir relative to the results dir, seconds."""
    out = []
    for m in sorted(ref_dir.glob("*/*/*/manifest.json")):
        man = json.loads(m.read_text())
        out.append({"node": man["node"], "path": str(m.parent.relative_to(ref_dir)),
                    "seconds": float(man["timings"]["seconds"])})
    return out


def kill_once(dut_dir: Path, args, target: str, delay: float) -> dict:
    """Start the study; ``delay`` s after ``target`` starts, SIGKILL the whole process group."""
    proc = start(dut_dir, args.cluster, args.extra)
    seen: list[str] = []
    deadline = time.time() + 900
    for line in proc.stdout:  # the run prints "[node] started" as each stage starts
        seen.append(line)
        if line.startswith(f"[{target}] started") or time.time() > deadline:
            break
    else:
        proc.wait()
        return {"delay_s": round(delay, 2), "landed": "after completion"}
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)
    out = "".join(seen) + proc.communicate()[0]
    started = re.findall(r"^\[(.+?)\] started", out, flags=re.M)
    finished = set(re.findall(r"^\[(.+?)\] (?:done|reused|cached)", out, flags=re.M))
    running = [n for n in started if n not in finished]
    return {"delay_s": round(delay, 2),
            "landed": ", ".join(running) if running else "between stages",
            "corrupt": check_whole(dut_dir)}


if __name__ == "__main__":
    s = main()
    ok = (s["reruns_completed"] == len(s["rounds"]) and s["corrupt_artifacts"] == 0
          and s["max_metric_difference"] == 0.0)
    sys.exit(0 if ok else 1)
