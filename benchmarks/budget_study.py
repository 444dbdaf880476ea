"""A budget study, then the full study of the same config: what the budget run saved, and whether
it found the online winner.

    python benchmarks/budget_study.py                     # default study: top 2 + 1 control, then full
    python benchmarks/budget_study.py --results-dir R -- +experiment=smoke \\
        objectives=[sft,pear_token,sft_kl] study.top_m=1 study.controls=1

Three commands on one results directory (fresh unless ``--results-dir`` is given):

1. ``pipeline run ... study.mode=budget``: SFT side, the decision, RL for the selection;
2. ``pipeline run ... study.mode=full``: computes only what the budget run skipped (the skipped
   branches) and the full report, reusing the rest: the baseline, measured in the same run;
3. ``pipeline run ... study.mode=budget`` again: must compute nothing, and its summary now
   compares the selection with every objective's online result.

Prints the wall time of each command, the number of stages each computed, the stage time
(sum of the stage manifests' ``timings.seconds``) of the budget study vs the full study and
their ratio, and the budget summary of step 3. Wall times of steps 1 + 2 overstate a cold full
run (two Ray start-ups, less overlap): the stage-time ratio is the comparable number.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(results: Path, overrides: list[str], mode: str) -> tuple[float, int, str]:
    """(wall seconds, stages computed, stdout) of one ``pipeline run``."""
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", f"results_dir={results}",
                           *overrides, f"study.mode={mode}"], cwd=ROOT, text=True,
                          capture_output=True)
    if proc.returncode:
        sys.exit(f"pipeline run ({mode}) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.time() - t, len(re.findall(r"^\[.+?\] done in", proc.stdout, re.M)), proc.stdout


def stage_times(results: Path, overrides: list[str]) -> tuple[float, float]:
    """(stage seconds of the budget study, of the full study): the full study's complete nodes,
    without the nodes the budget decision skipped for the first (its report counted as the
    full one's)."""
    from hydra import compose, initialize_config_dir

    from pipeline import budget
    from pipeline.cli import build_dag

    def dag(mode: str):
        with initialize_config_dir(str(ROOT / "conf"), version_base=None):
            cfg = compose("config", overrides=[f"results_dir={results}", *overrides,
                                               f"study.mode={mode}"])
        return build_dag(cfg, explicit=False)

    full, b = dag("full"), dag("budget")
    skipped = set(budget.decide(b, b.study)["skipped_nodes"])
    seconds = {n: json.loads((full.dir(n).final / "manifest.json").read_text())["timings"]["seconds"]
               for n in full.order if full.dir(n).complete()}
    return sum(v for n, v in seconds.items() if n not in skipped), sum(seconds.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--results-dir", type=Path, default=None)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides (after --)")
    args = ap.parse_args()
    results = args.results_dir or Path(tempfile.mkdtemp(prefix="budget-study-"))
    print(f"results: {results}; overrides: {' '.join(args.overrides) or '(default study)'}")
    steps = [("budget", "budget"), ("full (the rest)", "full"), ("budget again", "budget")]
    outs = {}
    for label, mode in steps:
        wall, computed, outs[label] = run(results, args.overrides, mode)
        print(f"{label:<16} {wall:8.1f} s wall, {computed:3d} stages computed")
    b, f = stage_times(results, args.overrides)
    print(f"stage time: budget study {b:.0f} s, full study {f:.0f} s, budget / full = {b / f:.2f}")
    summary = re.search(r"^budget summary: (.+)$", outs["budget again"], re.M).group(1)
    print(Path(summary).read_text())


if __name__ == "__main__":
    main()
