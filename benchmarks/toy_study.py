"""Run the default toy study cold and print where the time goes and what RL did.

    python benchmarks/toy_study.py                         # the default study, fresh results dir
    python benchmarks/toy_study.py --results-dir R -- +experiment=smoke   # any overrides after --
    python benchmarks/toy_study.py --no-run --results-dir R               # only read a finished run

Prints, from the stage manifests of the run (``timings.seconds``): the wall time of the whole
command, and per stage kind the number of nodes, total and mean seconds; then the RL effect per
branch: online pass@1 after RL minus pass@1 of its start (the SFT checkpoint, or the base model
for ``direct``), on the same eval items, with a paired percentile bootstrap interval over eval
items (seeds pooled: every seed's item differences form one resampled unit per item).

Times depend on the machine and its load: compare runs made on the same quiet machine.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def compose_dag(results_dir: Path, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from pipeline.cli import build_dag

    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=[f"results_dir={results_dir}", *overrides])
    explicit = any(o.split("=", 1)[0].lstrip("+~") == "objective" for o in overrides)
    return build_dag(cfg, explicit)


def stage_times(dag) -> pd.DataFrame:
    rows = []
    for nid in dag.order:
        m = dag.dir(nid).final / "manifest.json"
        if m.is_file():
            rows.append({"stage": dag.nodes[nid].stage,
                         "seconds": json.loads(m.read_text())["timings"]["seconds"]})
    df = pd.DataFrame(rows)
    return df.groupby("stage", sort=False)["seconds"].agg(nodes="count", total="sum", mean="mean")


def item_pass1(eval_dir: Path) -> pd.Series:
    df = pd.read_parquet(eval_dir / "samples.parquet", columns=["prompt_id", "correct"])
    return df.groupby("prompt_id", sort=True)["correct"].mean()


def paired_interval(diffs: np.ndarray, resamples: int = 2000, level: float = 0.95,
                    seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap of the mean of ``diffs`` ``[items, seeds]``, resampling items."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diffs.shape[0], size=(resamples, diffs.shape[0]))
    means = diffs[idx].mean(axis=(1, 2))
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def rl_effects(dag) -> pd.DataFrame:
    """One row per branch: start pass@1, after-RL pass@1, their difference and its interval."""
    pairs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for nid in dag.order:
        if dag.nodes[nid].stage != "rl":
            continue
        branch = nid[len("rl["):-1]
        name = branch.split("@")[0]
        start_eval = f"eval[sft:{branch}]" if name != "direct" else "eval[base]"
        pairs[name].append((start_eval, f"eval[rl:{branch}]"))
    rows = []
    for name, evals in pairs.items():
        before = [item_pass1(dag.dir(a).final) for a, _ in evals if dag.dir(a).complete()]
        after = [item_pass1(dag.dir(b).final) for a, b in evals if dag.dir(b).complete()]
        if not before or len(before) != len(after):
            continue
        b, a = np.stack([x.values for x in before], 1), np.stack([x.values for x in after], 1)
        lo, hi = paired_interval(a - b)
        rows.append({"branch": name, "seeds": b.shape[1], "start_pass@1": b.mean(),
                     "rl_pass@1": a.mean(), "effect": (a - b).mean(), "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--results-dir", type=Path, default=None,
                    help="where the study writes (default: a fresh temporary directory)")
    ap.add_argument("--no-run", action="store_true", help="only read an existing run")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, after --")
    a = ap.parse_args()
    results = a.results_dir or Path(tempfile.mkdtemp(prefix="toy-study-"))
    wall = None
    if not a.no_run:
        t0 = time.time()
        cmd = [sys.executable, "-m", "pipeline", "run", f"results_dir={results}", *a.overrides]
        print("$", " ".join(cmd), flush=True)
        code = subprocess.call(cmd, cwd=ROOT)
        wall = time.time() - t0
        if code:
            print(f"the study failed (exit {code})")
            return code
    dag = compose_dag(results, a.overrides)
    times = stage_times(dag)
    if wall is not None:
        print(f"\nwall time of the whole command: {wall:.0f} s")
    print("\nper stage (seconds inside each stage; stages overlap on Ray):")
    print(times.to_string(float_format=lambda x: f"{x:.1f}"))
    eff = rl_effects(dag)
    print("\nRL effect on online pass@1 (paired bootstrap over eval items, seeds pooled, 95%):")
    for _, r in eff.iterrows():
        print(f"  {r['branch']:<12} {r['seeds']} seed(s)  start {r['start_pass@1']:.3f} -> "
              f"after RL {r['rl_pass@1']:.3f}   {100 * r['effect']:+.1f} pp "
              f"[{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
