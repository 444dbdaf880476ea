"""RL matters in the default toy world: GRPO from an SFT checkpoint raises online pass@1 well
outside the paired bootstrap interval, and more than RL from the weak base does.

Runs the default study's toy world for one objective (``sft``) and one seed, inline (no Ray), with
the default budgets: bootstrap, sampling, SFT, GRPO from the SFT checkpoint and from the base, and
the evals. Slow (several minutes on 2 cores): ``pytest -m slow tests/test_toy_rl_effect.py``. The
smoke study in the default run goes through the same stages with tiny budgets.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.metrics import bootstrap_ci

ROOT = Path(__file__).resolve().parent.parent
OVERRIDES = ["objectives=[sft]", "seeds=[0]", "cluster=inline", "tracking=none",
             "analysis.enabled=false"]


def item_pass1(eval_dir: Path) -> pd.Series:
    df = pd.read_parquet(eval_dir / "samples.parquet", columns=["prompt_id", "correct"])
    return df.groupby("prompt_id", sort=True)["correct"].mean()


def rl_gain(dag, start_eval: str, rl_eval: str) -> tuple[float, float, float]:
    """Mean per-item pass@1 difference (after RL − start) and its 95% paired bootstrap interval."""
    before = item_pass1(dag.dir(start_eval).final)
    after = item_pass1(dag.dir(rl_eval).final)
    assert list(before.index) == list(after.index)
    diff = (after - before).to_numpy()
    lo, hi = bootstrap_ci(diff, resamples=2000, level=0.95, seed=0)
    return float(np.mean(diff)), lo, hi


@pytest.mark.slow
def test_grpo_from_sft_beats_its_start_and_direct_rl(tmp_path):
    from hydra import compose, initialize_config_dir

    from pipeline.cli import build_dag

    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", f"results_dir={tmp_path}",
                           *OVERRIDES], cwd=ROOT, env=env, text=True, capture_output=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=[f"results_dir={tmp_path}", *OVERRIDES])
    dag = build_dag(cfg, explicit=False)

    gain, lo, hi = rl_gain(dag, "eval[sft:sft]", "eval[rl:sft]")
    direct, _, _ = rl_gain(dag, "eval[base]", "eval[rl:direct]")
    print(f"RL from SFT: {100 * gain:+.1f} pp [{100 * lo:+.1f}, {100 * hi:+.1f}]; "
          f"direct RL from the base: {100 * direct:+.1f} pp")
    assert lo > 0.05, "GRPO from the SFT checkpoint must raise pass@1 clearly (> 5 pp at the low end)"
    final_sft_rl = item_pass1(dag.dir("eval[rl:sft]").final).mean()
    final_direct = item_pass1(dag.dir("eval[rl:direct]").final).mean()
    assert final_sft_rl > final_direct, "RL from a good SFT start must end above direct RL"
