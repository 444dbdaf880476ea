"""The report on hand-made eval artifacts: table values, ranks, rank changes, correlations, PNGs;
and the statistics it rests on (rank correlations vs scipy, bootstrap intervals, pass@k per item).
"""
from __future__ import annotations

import json
import random
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stages import report
from stages.metrics import (average_ranks, bootstrap_ci, kendall_tau, pass_at_k, pass_at_k_items,
                            spearman_rho)

N = 4  # samples per item; 4 eval items everywhere

# correct samples per item (offline = after SFT, online = after RL). By pass@1:
# offline B (0.5) > A (0.25) > C (0.1875); online C (0.75) > A (0.5) > B (0.25)
COUNTS = {
    ("sft", "A"): [4, 0, 0, 0], ("rl", "A"): [4, 4, 0, 0],
    ("sft", "B"): [2, 2, 2, 2], ("rl", "B"): [1, 1, 1, 1],
    ("sft", "C"): [1, 1, 1, 0], ("rl", "C"): [4, 4, 4, 0],
    ("rl", "direct"): [0, 0, 0, 4],
    ("ref", "base"): [1, 0, 0, 0], ("ref", "behavior"): [4, 4, 4, 4],
}
HELDOUT_NLL = {"A": 1.0, "B": 0.5, "C": 2.0}
KL = {"A": 0.2, "B": 0.1, "C": 0.3}
ROTATION = {"A": 40.0, "B": 60.0, "C": 20.0}  # degrees: the less rotation, the better online


def write_eval(path: Path, counts: list[int]) -> Path:
    """samples.parquet with correct samples first: a correct sample extracts "ok", a wrong one
    "bad", so maj@n is 1 where c > n/2 and, on a 2-2 tie, 1 (the first answer seen wins)."""
    rows = [{"prompt_id": f"q{i}", "sample_idx": j, "correct": j < c,
             "extracted": "ok" if j < c else "bad"} for i, c in enumerate(counts) for j in range(N)]
    path.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(path / "samples.parquet")
    return path


def write_json(path: Path, name: str, obj: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(json.dumps(obj))
    return path


def synthetic_inputs(root: Path, seeds=(0,), shift: dict | None = None) -> dict[str, str]:
    """Report inputs as the DAG names them. ``shift[(seed, kind, name)]`` replaces counts."""
    shift = shift or {}
    inputs = {f"eval/{n}": write_eval(root / f"eval-{n}", COUNTS[("ref", n)])
              for n in ("base", "behavior")}
    for s in seeds:
        for name in ("A", "B", "C"):
            for kind in ("sft", "rl"):
                c = shift.get((s, kind, name), COUNTS[(kind, name)])
                inputs[f"eval/{kind}/{name}/{s}"] = write_eval(root / f"eval-{kind}-{name}-{s}", c)
            inputs[f"sft/{name}/{s}"] = write_json(root / f"sft-{name}-{s}", "manifest.json",
                                                   {"metrics": {"heldout_nll": HELDOUT_NLL[name] + s}})
            inputs[f"analysis/sft/{name}/{s}"] = write_json(
                root / f"an-sft-{name}-{s}", "analysis.json",
                {"forward_kl": KL[name], "sparsity": 0.5, "nss": 0.01 * (s + 1),
                 "gradient_rotation": ROTATION[name]})
            inputs[f"analysis/rl/{name}/{s}"] = write_json(
                root / f"an-rl-{name}-{s}", "analysis.json",
                {"forward_kl": 0.01, "sparsity": 0.9, "nss": KL[name] / 10})
        inputs[f"eval/rl/direct/{s}"] = write_eval(root / f"eval-rl-direct-{s}",
                                                   COUNTS[("rl", "direct")])
    return {k: str(v) for k, v in inputs.items()}


CFG = {"experiment": "synthetic",
       "report": {"ks": [1, 2], "large_k": None, "rank_by": "pass@1", "bootstrap": 200, "ci": 0.9}}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    out = root / "out"
    out.mkdir()
    metrics = report.run(CFG, synthetic_inputs(root / "in"), out, root / "work")
    return out, metrics, pd.read_csv(out / "results.csv").set_index("policy")


def test_table_values_ranks_and_rank_changes(single):
    out, metrics, df = single
    assert list(df.index) == ["base", "behavior", "A", "B", "C", "direct"]
    assert df.loc[["base", "behavior"], "kind"].eq("reference").all()
    assert df.loc["direct", "kind"] == "direct-RL"
    assert df.loc[["A", "B", "C"], "offline_pass@1"].tolist() == pytest.approx([0.25, 0.5, 0.1875])
    assert df.loc[["A", "B", "C"], "online_pass@1"].tolist() == pytest.approx([0.5, 0.25, 0.75])
    # pass@2 per item = 1 - C(n-c, 2) / C(n, 2); pass@large-k defaults to pass@n
    p2 = lambda cs: np.mean([1 - comb(N - c, 2) / comb(N, 2) for c in cs])  # noqa: E731
    assert df.loc["C", "offline_pass@2"] == pytest.approx(p2([1, 1, 1, 0]))
    assert df.loc[["A", "B", "C"], "offline_pass@4"].tolist() == pytest.approx([0.25, 1.0, 0.75])
    assert df.loc[["A", "B", "C"], "offline_maj@4"].tolist() == pytest.approx([0.25, 1.0, 0.0])
    assert df.loc["behavior", "offline_pass@1"] == 1.0 and pd.isna(df.loc["behavior", "online_pass@1"])
    assert df.loc["direct", "online_pass@1"] == 0.25 and pd.isna(df.loc["direct", "offline_pass@1"])
    assert df.loc[["A", "B", "C"], "heldout_nll"].tolist() == [1.0, 0.5, 2.0]
    assert df.loc[["A", "B", "C"], "kl_to_base"].tolist() == pytest.approx([0.2, 0.1, 0.3])
    assert df.loc[["A", "B", "C"], "offline_rank"].tolist() == [2, 1, 3]
    assert df.loc[["A", "B", "C"], "online_rank"].tolist() == [2, 3, 1]
    assert df.loc[["A", "B", "C"], "rank_change"].tolist() == [0, -2, 2]
    assert df.loc[["base", "direct"], "offline_rank"].isna().all()
    assert metrics["best_offline"] == "B" and metrics["best_online"] == "C"
    assert metrics["objectives"] == 3 and metrics["seeds"] == 1


def test_bootstrap_intervals_bracket_the_mean(single):
    _, _, df = single
    for col in ("offline_pass@1", "online_pass@1"):
        obj = df.loc[["A", "B", "C"]]
        assert (obj[f"{col}_lo"] <= obj[col] + 1e-12).all()
        assert (obj[col] <= obj[f"{col}_hi"] + 1e-12).all()
    # every item of B offline has pass@1 = 0.5: no spread to resample
    assert df.loc["B", "offline_pass@1_lo"] == df.loc["B", "offline_pass@1_hi"] == 0.5
    assert df.loc["A", "offline_pass@1_lo"] < df.loc["A", "offline_pass@1_hi"]
    assert pd.isna(df.loc["A", "offline_pass@1_std"])  # one seed: no std across seeds


def test_correlations_with_online_pass_at_1(single):
    out, metrics, _ = single
    corr = pd.read_csv(out / "correlations.csv").set_index("column")
    # offline pass@1 ranks the three objectives in exactly the reverse order of online pass@1
    assert corr.loc["offline_pass@1", ["kendall_tau", "spearman_rho"]].tolist() == [-1.0, -1.0]
    # lower held-out NLL ranks them exactly as online pass@1 does (lower NLL, worse online)
    assert corr.loc["heldout_nll", ["kendall_tau", "spearman_rho"]].tolist() == [1.0, 1.0]
    assert corr.loc["kl_to_base", "kendall_tau"] == pytest.approx(
        stats.kendalltau([0.2, 0.1, 0.3], [0.5, 0.25, 0.75]).statistic)
    # gradient rotation (App. A.4) joins the proxies: here it orders them against online pass@1
    assert corr.loc["grad_rotation", ["kendall_tau", "spearman_rho"]].tolist() == [-1.0, -1.0]
    assert (corr["n"] == 3).all()
    assert metrics["correlations"]["offline_pass@1"]["n"] == 3


def test_markdown_and_pngs(single):
    out, _, _ = single
    md = (out / "report.md").read_text()
    assert "| C | 18.8 [" in md
    # C passes B (both intervals exclude 0) but not A (A−C offline includes 0): partly significant
    assert "| 3 | 1 | +2 (1 of 2 flips significant) |" in md
    assert "| 1 | 3 | -2 (1 of 2 flips significant) |" in md and "| 2 | 2 | 0 |" in md
    # three objectives: a rank correlation is not printed as ±1.00
    assert "| offline pass@1 | too few to judge | too few to judge | 3 |" in md
    # the proxy table: KL, sparsity, NSS base↔SFT, gradient rotation, then the RL columns
    assert "| A | 0.2 | 0.5 | 0.01 | 40 | 0.01 | 0.9 | 0.02 |" in md
    assert "| gradient rotation offline↔online (°) | too few to judge |" in md
    assert md.index("## Answer") < md.index("## Offline vs online") and "Too few to judge" in md
    for png in ("offline_online.png", "proxies.png", "pass_at_k.png"):
        assert (out / png).stat().st_size > 5000, png
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = pd.read_csv(out / "pass_at_k.csv")
    assert set(curves["k"]) == {1, 2, 4}
    for _, g in curves.groupby(["policy", "phase"]):
        assert g.sort_values("k")["pass@k"].is_monotonic_increasing


def test_seeds_give_mean_and_std(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # A's offline pass@1 is 0.25 with seed 0 and 0.75 with seed 1
    inputs = synthetic_inputs(tmp_path / "in", seeds=(0, 1), shift={(1, "sft", "A"): [4, 4, 4, 0]})
    report.run(CFG, inputs, out, tmp_path / "work")
    df = pd.read_csv(out / "results.csv").set_index("policy")
    assert df.loc["A", "seeds"] == 2
    assert df.loc["A", "offline_pass@1"] == pytest.approx(0.5)
    assert df.loc["A", "offline_pass@1_std"] == pytest.approx(np.std([0.25, 0.75], ddof=1))
    assert df.loc["B", "offline_pass@1_std"] == 0.0
    assert df.loc["A", "heldout_nll"] == pytest.approx(1.5)  # 1.0 and 2.0
    assert "± 35.4" in (out / "report.md").read_text()


def test_report_with_only_offline_results(tmp_path):
    """``pipeline report`` may find evals before any RL finished: no online column, no crash."""
    inputs = {k: v for k, v in synthetic_inputs(tmp_path / "in").items() if "/rl/" not in k}
    out = tmp_path / "out"
    out.mkdir()
    m = report.run(CFG, inputs, out, tmp_path / "work")
    df = pd.read_csv(out / "results.csv").set_index("policy")
    assert df.loc["B", "offline_rank"] == 1 and df["online_rank"].isna().all()
    assert m["best_online"] is None and (out / "offline_online.png").stat().st_size > 5000


# --- the statistics -------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_rank_correlations_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(2, 25))
        levels = int(rng.integers(1, 6)) if trial % 3 else n * 10  # few levels: many ties
        x = rng.integers(0, levels, n).astype(float)
        y = (x * rng.choice([-1, 1]) + rng.integers(0, levels, n)) if trial % 2 else rng.permutation(x)
        tau, rho = stats.kendalltau(x, y).statistic, stats.spearmanr(x, y).statistic
        assert kendall_tau(x, y) == pytest.approx(tau, abs=1e-12, nan_ok=True), (x, y)
        assert spearman_rho(x, y) == pytest.approx(rho, abs=1e-12, nan_ok=True), (x, y)


def test_rank_correlation_edges():
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0 and spearman_rho([1, 2, 3], [1, 2, 3]) == 1.0
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3])) and np.isnan(spearman_rho([1, 2], [5, 5]))
    assert np.isnan(kendall_tau([1], [2])) and np.isnan(spearman_rho([1], [2]))
    assert average_ranks([10, 20, 20, 5]).tolist() == [2, 3.5, 3.5, 1]
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1, 2, 3])


def test_bootstrap_ci_and_pass_at_k_items():
    v = np.random.default_rng(1).random(200)
    lo, hi = bootstrap_ci(v, 2000, 0.95, seed=0)
    se = v.std(ddof=1) / np.sqrt(len(v))
    assert lo < v.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_ci(v, 500, seed=3) == bootstrap_ci(v, 500, seed=3)
    assert all(np.isnan(bootstrap_ci([], 100))) and all(np.isnan(bootstrap_ci(v, 0)))
    rng = random.Random(0)
    ns = [rng.randint(1, 64) for _ in range(50)]
    cs = [rng.choice([0, n, rng.randint(0, n)]) for n in ns]
    for k in (1, 2, 8):
        keep = [i for i, n in enumerate(ns) if k <= n]
        got = pass_at_k_items([ns[i] for i in keep], [cs[i] for i in keep], k)
        want = [1 - comb(ns[i] - cs[i], k) / comb(ns[i], k) for i in keep]
        assert got == pytest.approx(want, abs=1e-12)
    assert pass_at_k(5, 5, 5) == 1.0 and pass_at_k(5, 0, 5) == 0.0


def test_eval_and_report_agree_on_maj_at_n(tiny_models, tmp_path):
    """The eval stage's maj@n (metrics.json) and the report's (from samples.parquet) are one
    number: both vote among extracted answers only, grouped by the toy suite's equality."""
    from stages import eval as eval_stage
    from conftest import TINY_TASK
    from verifiers import build_suite

    ev = {"split": "eval", "n": 8, "ks": [1], "temperature": 1.0, "top_p": 1.0,
          "max_new_tokens": 12}
    cfg = {"task": TINY_TASK, "eval": ev, "seed": 0,
           "engine": {"engine": "hf", "device": "cpu", "dtype": "float32", "batch_size": 32}}
    out, work = tmp_path / "eval", tmp_path / "work"
    out.mkdir()
    work.mkdir()
    metrics = eval_stage.run(cfg, {"model": tiny_models["base"]}, out, work)
    samples = pd.read_parquet(out / "samples.parquet")
    # the weak base model often gives no answer, and sometimes one
    assert samples["extracted"].isna().any() and samples["extracted"].notna().any()
    assert ((samples["answer_group"] == -1) == samples["extracted"].isna()).all()
    by_item = report.item_table(out, [1])
    assert by_item["maj@8"].mean() == pytest.approx(metrics["maj@8"])
    same = build_suite(TINY_TASK).same_answer
    for pid, g in samples.groupby("prompt_id"):
        votes = {}
        for e, ok in zip(g["extracted"], g["correct"]):
            if isinstance(e, str):
                key = next((k for k in votes if same(k, e)), e)
                votes.setdefault(key, [0, ok])[0] += 1
        want = bool(votes) and max(votes.values(), key=lambda v: v[0])[1]
        assert by_item.loc[pid, "maj@8"] == float(want), pid
