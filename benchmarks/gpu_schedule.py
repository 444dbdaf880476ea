"""Simulated 8-GPU schedule of the 1.7B SynLogic study: makespan against the lower bound.

    python benchmarks/gpu_schedule.py                      # scales 2 and 8 s per GPU-hour
    python benchmarks/gpu_schedule.py --scales 4 16        # as reported: ~30 min on a busy 2-core box
    python benchmarks/gpu_schedule.py --scales 1 4 --plot gpu_schedule.png --json runs.json

The study's real DAG (``+experiment=synlogic_qwen3_1p7b``: 13 objectives, direct RL, every eval
and analysis node, 87 nodes) runs through the real runner on a local Ray with 8 logical GPUs
(``pipeline/gpu_sim.py``); each stage body sleeps its GPU-hours from the README's estimates
(``gpu_sim.GPU_HOURS_1P7B``) times the scale, on the GPUs Ray gave it, and records them.

Reported per scale: the lower bound (recorded GPU-time / 8), the makespan (first GPU use to last
GPU release), their ratio and the violations found (none expected). Each stage start costs
seconds of process start-up that do not grow with the scale (on a real node they are seconds
against hours), so the makespan is fitted as ``overhead + slope · scale`` over the scales run,
and ``slope / (bound / scale)`` is the ratio once stages last hours: the scheduling alone. The
plot shows GPUs in use over (simulated) hours by stage, for the largest scale.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import gpu_sim  # noqa: E402

N_GPUS = 8


def study_dag(results: Path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from pipeline.cli import CONF_DIR, build_dag

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=synlogic_qwen3_1p7b",
                                           f"results_dir={results}", "tracking=none"])
    return build_dag(cfg, explicit=False), OmegaConf.to_container(cfg, resolve=True)


def replay(scale: float, work: Path) -> dict:
    dag, cfg = study_dag(work / "results")
    plan = gpu_sim.Plan(gpu_hours=gpu_sim.GPU_HOURS_1P7B, shards=gpu_sim.shards_for(cfg),
                        seconds_per_gpu_hour=scale, records=str(work / "records"))
    res = gpu_sim.run(dag, plan, num_gpus=N_GPUS)
    t0 = min(r["start"] for r in res.records)
    makespan = max(r["end"] for r in res.records) - t0
    bound = gpu_sim.gpu_seconds(res.records) / N_GPUS
    return {"scale": scale, "nodes": len(dag.nodes),
            "finished": sum(s == "done" for s in res.states.values()),
            "violations": gpu_sim.violations(res.records, N_GPUS), "bound_s": bound,
            "makespan_s": makespan, "ratio": makespan / bound,
            "records": [{**r, "start": r["start"] - t0, "end": r["end"] - t0} for r in res.records]}


def fit(runs: list[dict]) -> tuple[float, float] | None:
    """Least squares ``makespan = overhead + slope · scale``; None with fewer than two scales."""
    if len({r["scale"] for r in runs}) < 2:
        return None
    xs, ys = [r["scale"] for r in runs], [r["makespan_s"] for r in runs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def plot(run: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    recs, scale = run["records"], run["scale"]
    end = max(r["end"] for r in recs)
    t = np.linspace(0, end, 3000)
    stages = sorted({r["stage"] for r in recs})
    use = [sum(np.where((t >= r["start"]) & (t < r["end"]), len(r["gpu_ids"]), 0)
               for r in recs if r["stage"] == s) for s in stages]
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.stackplot(t / scale, use, labels=stages, step="post")
    ax.axhline(N_GPUS, color="black", lw=0.8)
    ax.axvline(run["bound_s"] / scale, color="gray", ls="--", lw=1,
               label=f"lower bound {run['bound_s'] / scale:.1f} h")
    ax.set_xlabel("simulated hours (README GPU-hour estimates)")
    ax.set_ylabel("GPUs in use")
    ax.set_title(f"synlogic_qwen3_1p7b on {N_GPUS} GPUs (simulated): makespan "
                 f"{run['makespan_s'] / scale:.1f} h = {run['ratio']:.2f} x bound "
                 f"(start-up overheads included)")
    ax.set_ylim(0, N_GPUS + 0.5)
    ax.legend(loc="upper right", ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", type=float, nargs="+", default=[2.0, 8.0],
                    help="seconds per GPU-hour, one replay each")
    ap.add_argument("--plot", type=Path, default=ROOT / "results" / "benchmarks" / "gpu_schedule.png")
    ap.add_argument("--json", type=Path, default=None, help="also write every run's records here")
    args = ap.parse_args()
    runs = []
    for scale in args.scales:
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(replay(scale, Path(tmp)))
        r = runs[-1]
        print(f"scale {scale:g} s/GPU-h: {r['finished']}/{r['nodes']} nodes, bound {r['bound_s']:.1f} s, "
              f"makespan {r['makespan_s']:.1f} s, ratio {r['ratio']:.2f}, "
              f"violations {len(r['violations'])}", flush=True)
        for v in r["violations"][:10]:
            print("   ", v)
    f = fit(runs)
    if f is not None:
        overhead, slope = f
        per_scale_bound = sum(r["bound_s"] / r["scale"] for r in runs) / len(runs)
        print(f"fit: makespan = {overhead:.1f} s + {slope:.2f} s per (s/GPU-h); without start-up "
              f"overheads: {slope / per_scale_bound:.2f} x the bound "
              f"({slope:.1f} h vs {per_scale_bound:.1f} h)")
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot(max(runs, key=lambda r: r["scale"]), args.plot)
    print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(runs))


if __name__ == "__main__":
    main()
