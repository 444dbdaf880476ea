"""What code fingerprints cost ``plan``: building the default study's DAG with and without them.

    python benchmarks/fingerprint.py                 # default toy study (106 nodes)
    python benchmarks/fingerprint.py --repeats 5

Three timings of ``pipeline.cli.build_dag`` on the composed default config, in one process:

* ``baseline``: code fingerprints replaced by a constant (the cost of keys before fingerprints);
* ``cold``: the first build with fingerprints, caches empty (every source file of ``stages/`` and
  ``verifiers/`` parsed, every stage's closure walked, library versions read);
* ``warm``: a later build in the same process (sources only stat-ed), what a multirun job pays
  after its first.

Times are the best of ``--repeats`` runs (cold: caches emptied before each); the ratios to the
baseline measured in the same run are the numbers to quote. Hydra's composition is not timed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from pipeline import external, fingerprint  # noqa: E402
from pipeline.cli import CONF_DIR, build_dag  # noqa: E402


def best(fn, repeats: int, before=lambda: None) -> float:
    times = []
    for _ in range(repeats):
        before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def clear() -> None:
    fingerprint._INDEX.clear()
    fingerprint._PARSED.clear()
    external._LIB_CACHE.clear()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as results, \
            initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"results_dir={results}"])
        build = lambda: build_dag(cfg, explicit=False)  # noqa: E731
        nodes = len(build().nodes)
        real = fingerprint.stage_code
        fingerprint.stage_code = lambda stage, root=None: {"digest": "0", "modules": {},
                                                           "libraries": {}}
        try:
            base = best(build, args.repeats)
        finally:
            fingerprint.stage_code = real
        cold = best(build, args.repeats, before=clear)
        warm = best(build, args.repeats)
        index = fingerprint.index()
        sizes = {s: len(index.stage(s)["modules"]) for s in ("bootstrap", "sample", "verify",
                                                              "sft", "rl", "report")}
    print(f"default study: {nodes} nodes, {len(index.modules)} modules parsed")
    print(f"modules reached per stage: {sizes}")
    print(f"build_dag baseline (no fingerprints) {base * 1e3:8.1f} ms")
    print(f"build_dag cold                       {cold * 1e3:8.1f} ms  ({cold / base:.1f}x baseline)")
    print(f"build_dag warm                       {warm * 1e3:8.1f} ms  ({warm / base:.1f}x baseline)")


if __name__ == "__main__":
    main()
