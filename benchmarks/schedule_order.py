"""How much the local driver's start order (by upward rank) shortens a study, on its measured times.

    python benchmarks/schedule_order.py --results-dir R          # R: a finished default toy study
    python benchmarks/schedule_order.py --results-dir R -- +experiment=smoke   # its overrides

Replays the study's DAG through the real driver loop of ``pipeline/runner.py`` in simulated time
(``pipeline/schedule_replay.py``): ``--cpus`` slots, tasks started first come, first served as
CPUs free up, each lasting the seconds its stage manifest recorded. Two policies:

* ``fifo``: every ready node submitted at once (no CPU limit), in the order the DAG lists them:
  what the driver did before it ordered its queue, and what ``cluster=ray`` still does;
* ``rank``: the ``cluster=local`` driver: ready nodes by upward rank, only while CPUs are free.

Nodes of the given overrides that the results lack (say the report of a subset of the
objectives) take the mean time of that stage's nodes there. Prints both makespans, their ratio
and the lower bound (CPU-seconds / CPUs, or the longest chain if that is longer). Stage times are taken as measured under the order the study actually ran
with, so this isolates the ordering: it does not model two stages slowing each other down.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def longest_chain(dag, seconds: dict[str, float]) -> float:
    finish: dict[str, float] = {}
    for nid in dag.order:
        finish[nid] = seconds[nid] + max((finish[d] for d in dag.nodes[nid].deps), default=0.0)
    return max(finish.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results-dir", required=True, type=Path)
    ap.add_argument("--cpus", type=float, default=2.0)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from toy_study import compose_dag

    from pipeline.schedule_replay import replay

    dag = compose_dag(args.results_dir.resolve(), [o for o in args.overrides if o != "--"])
    seconds, missing = {}, []
    for nid in dag.order:
        m = dag.dir(nid).final / "manifest.json"
        if m.is_file():
            seconds[nid] = float(json.loads(m.read_text())["timings"]["seconds"])
        else:
            missing.append(nid)
    for nid in missing:  # e.g. the report of a subset of the study: its stage's mean
        stage_dir = dag.dir(nid).final.parent  # every node of that stage under the results
        same = [float(json.loads(m.read_text())["timings"]["seconds"])
                for m in stage_dir.glob("*/manifest.json")]
        if not same:
            raise SystemExit(f"{nid} has no manifest under {args.results_dir}: run the study first")
        seconds[nid] = sum(same) / len(same)
    if missing:
        print(f"{len(missing)} node(s) without a manifest take their stage's mean time: {', '.join(missing)}")
    cpu_seconds = sum(seconds[n] * min(args.cpus, float(dag.nodes[n].resources.get("num_cpus", 1)))
                      for n in dag.order)
    bound = max(cpu_seconds / args.cpus, longest_chain(dag, seconds))
    fifo = replay(dag, seconds, args.cpus, "fifo").makespan
    rank = replay(dag, seconds, args.cpus, "rank").makespan
    print(f"{len(dag.order)} stages, {cpu_seconds:.0f} CPU-s of measured stage time on {args.cpus:g} CPUs")
    print(f"lower bound       {bound:7.0f} s")
    print(f"fifo (all ready)  {fifo:7.0f} s   {fifo / bound:.3f} x bound")
    print(f"rank (local)      {rank:7.0f} s   {rank / bound:.3f} x bound")
    print(f"rank / fifo       {rank / fifo:.3f}")


if __name__ == "__main__":
    main()
