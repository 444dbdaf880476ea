"""The report's significance logic on constructed inputs (stages/report_stats.py,
stages/report_answer.py): a rank flip inside the noise is not significant, a clear one is;
fewer than four objectives are "too few to judge"; τ/ρ intervals come from a paired bootstrap
over items and seeds (checked against a plain loop over the same draws)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from stages import report, report_stats
from stages.metrics import kendall_tau, spearman_rho

N, ITEMS, SEEDS = 4, 200, (0, 1, 2)
# p(correct) per objective: sft and pear_token are the same policy in all but name (any order
# between them is noise); talr and kd differ by 0.2 and swap places after RL (a real flip)
P = {"offline": {"sft": 0.3, "pear_token": 0.3, "talr": 0.6, "kd": 0.8},
     "online": {"sft": 0.3, "pear_token": 0.3, "talr": 0.8, "kd": 0.6}}


def counts(rng: np.random.Generator, p: float) -> np.ndarray:
    """(seeds, items) correct counts of N samples, item difficulty shared across policies."""
    return rng.binomial(N, p, size=(len(SEEDS), ITEMS))


def noisy_pair(rng: np.random.Generator, first_wins: bool) -> tuple[np.ndarray, np.ndarray]:
    """Two draws of one policy, ordered so that the first has the higher (or lower) mean: the
    order between them is decided by sampling noise only."""
    a, b = counts(rng, 0.3), counts(rng, 0.3)
    hi, lo = (a, b) if a.mean() >= b.mean() else (b, a)
    return (hi, lo) if first_wins else (lo, hi)


def constructed(objectives=("sft", "pear_token", "talr", "kd"), seed: int = 0) -> dict:
    """``{(phase, objective): (seeds, items) counts}``: sft ahead of pear_token offline and
    behind it online (noise), kd ahead of talr offline and behind it online (clear)."""
    rng = np.random.default_rng(seed)
    out = {}
    for phase in ("offline", "online"):
        out[(phase, "sft")], out[(phase, "pear_token")] = noisy_pair(rng, phase == "offline")
        for name in ("talr", "kd"):
            out[(phase, name)] = counts(rng, P[phase][name])
    return {k: v for k, v in out.items() if k[1] in objectives}


def write_eval(path, c: np.ndarray) -> str:
    rows = [{"prompt_id": f"q{i:03d}", "sample_idx": j, "correct": j < ci,
             "extracted": str(j < ci), "answer_group": 0 if j < ci else int(ci)}
            for i, ci in enumerate(c) for j in range(N)]
    path.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(path / "samples.parquet")
    return str(path)


def run_report(tmp_path, data: dict, resamples: int = 400) -> tuple[dict, pd.DataFrame, str]:
    inputs = {"eval/base": write_eval(tmp_path / "base", np.zeros(ITEMS, int))}
    for (phase, name), c in data.items():
        kind = "sft" if phase == "offline" else "rl"
        for s in SEEDS:
            inputs[f"eval/{kind}/{name}/{s}"] = write_eval(tmp_path / f"{kind}-{name}-{s}", c[s])
    cfg = {"experiment": "constructed", "report": {"ks": [1], "large_k": None, "rank_by": "pass@1",
                                                   "bootstrap": resamples, "ci": 0.95}}
    out = tmp_path / "out"
    out.mkdir()
    metrics = report.run(cfg, inputs, out, tmp_path / "work")
    return metrics, pd.read_csv(out / "results.csv").set_index("policy"), \
        (out / "report.md").read_text()


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    return run_report(tmp_path_factory.mktemp("four"), constructed())


def test_a_flip_inside_the_noise_is_not_significant_and_a_clear_one_is(four):
    metrics, df, md = four
    assert df.loc["sft", "offline_rank"] < df.loc["pear_token", "offline_rank"]
    assert df.loc["sft", "online_rank"] > df.loc["pear_token", "online_rank"]
    verdict = df["rank_change_significance"]
    assert verdict["sft"] == verdict["pear_token"] == "not significant"
    assert verdict["talr"] == verdict["kd"] == "significant"
    assert df.loc[["talr", "kd"], "rank_change"].tolist() == [1, -1]
    assert "| +1 (significant) |" in md and "| +1 (not significant) |" in md
    answer = metrics["answer"]
    assert answer["rank_changes"]["significant"] == ["kd", "talr"]
    assert answer["best_online"]["policy"] == "talr" and answer["best_online"]["significant"]
    # PEAR vs SFT: a difference within the noise, reported with an interval that includes 0
    online = answer["pear_vs_sft"]["pear_token"]["online"]
    assert online["lo"] < 0 < online["hi"] and online["lo"] < online["diff"] < online["hi"]
    assert not online["significant"]
    assert "**PEAR vs SFT after RL:** pear_token − sft = +" in md and "not significant" in md


def test_four_objectives_get_a_correlation_with_an_interval(four):
    metrics, _, md = four
    c = metrics["correlations"]["offline_pass@1"]
    assert c["n"] == 4 and c["judgeable"]
    # offline order kd > talr > sft > pear_token; online talr > kd > pear_token > sft
    assert c["kendall_tau"] == pytest.approx(kendall_tau([0.8, 0.6, 0.31, 0.3],
                                                         [0.6, 0.8, 0.3, 0.31]))
    assert c["tau_lo"] <= c["kendall_tau"] <= c["tau_hi"] and c["tau_lo"] < c["tau_hi"]
    assert f"Kendall τ = {c['kendall_tau']:+.2f} [{c['tau_lo']:+.2f}, {c['tau_hi']:+.2f}]" in md
    assert "paired bootstrap, 400 resamples of 200 eval items and 3 seeds" in md
    assert md.index("## Answer") < md.index("## Offline vs online")


def test_fewer_than_four_objectives_are_too_few_to_judge(tmp_path):
    metrics, _, md = run_report(tmp_path, constructed(("sft", "talr", "kd")), resamples=50)
    c = metrics["correlations"]["offline_pass@1"]
    assert c["n"] == 3 and not c["judgeable"]
    assert "| offline pass@1 | too few to judge | too few to judge | 3 |" in md
    assert "Too few to judge: 3 objectives" in md and "±1.00" not in md and "-1.00" not in md
    assert "not in this study" in md  # no pear_* objective


def test_best_online_within_the_noise_is_not_significant():
    rng = np.random.default_rng(3)
    a, b = noisy_pair(rng, True)
    tables = {("online", n, s): pd.DataFrame({"pass@1": c[s] / N}, index=range(ITEMS))
              for n, c in (("x", a), ("y", b)) for s in SEEDS}
    tables |= {("offline", n, s): t for (_, n, s), t in tables.items()}
    study = report_stats.build_study(tables, ["x", "y"], "pass@1", [], {})
    point = pd.DataFrame({"online_pass@1": [a.mean() / N, b.mean() / N],
                          "offline_pass@1": [a.mean() / N, b.mean() / N]}, index=["x", "y"])
    unc = report_stats.analyse(study, point, "pass@1", 300, 0.95)
    d, lo, hi = report_stats.difference(unc, "online", "x", "y")
    assert d > 0 and lo < 0 < hi and not report_stats.excludes_zero(lo, hi)
    assert (unc.rank_changes["verdict"] == "no flip").all()


def test_tau_rho_intervals_are_a_paired_bootstrap_over_items_and_seeds():
    """The vectorised intervals equal a plain loop: per draw, repeat the drawn seeds and items,
    take each objective's mean, then τ and ρ of offline vs online means."""
    rng = np.random.default_rng(7)
    names, seeds, items, b = ["a", "b", "c", "d", "e"], [0, 1, 2], 30, 200
    x = {ph: rng.random((len(names), 1, 1)) * 0.3 + rng.random((len(names), len(seeds), items))
         for ph in ("offline", "online")}
    x["offline"][2, 1] = np.nan  # objective c lacks seed 1 offline: it only drops out
    tables = {(ph, n, s): pd.DataFrame({"pass@1": x[ph][o, k]}, index=range(items))
              for ph in x for o, n in enumerate(names) for k, s in enumerate(seeds)}
    study = report_stats.build_study(tables, names, "pass@1", [], {})
    point = pd.DataFrame({f"{ph}_pass@1": np.nanmean(x[ph], axis=(1, 2)) for ph in x}, index=names)
    unc = report_stats.analyse(study, point, "pass@1", b, 0.9, seed=5)

    v, w = report_stats.draws(len(seeds), items, b, seed=5)
    assert (v.sum(1) == len(seeds)).all() and (w.sum(1) == items).all() and v.std() > 0
    taus, rhos, diffs = [], [], []
    for vb, wb in zip(v.astype(int), w.astype(int)):
        s_idx, i_idx = np.repeat(np.arange(len(seeds)), vb), np.repeat(np.arange(items), wb)
        with warnings.catch_warnings():  # nanmean of c's drawn NaN-only seeds warns
            warnings.simplefilter("ignore", RuntimeWarning)
            m = {ph: np.array([np.nanmean(x[ph][o][np.ix_(s_idx, i_idx)])
                               for o in range(len(names))]) for ph in x}
        whole = np.isfinite(m["offline"]).all()  # a draw without c's only offline seeds: NaN
        taus.append(kendall_tau(m["offline"], m["online"]) if whole else np.nan)
        rhos.append(spearman_rho(m["offline"], m["online"]) if whole else np.nan)
        diffs.append(m["online"][0] - m["online"][1])
    c = unc.correlations.set_index("column").loc["offline_pass@1"]
    assert [c["tau_lo"], c["tau_hi"]] == pytest.approx(np.nanquantile(taus, [0.05, 0.95]))
    assert [c["rho_lo"], c["rho_hi"]] == pytest.approx(np.nanquantile(rhos, [0.05, 0.95]))
    assert report_stats.difference(unc, "online", "a", "b")[1:] == pytest.approx(
        tuple(np.quantile(diffs, [0.05, 0.95])))


def test_batch_rank_correlations_match_the_scalar_ones_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (300, 6)).astype(float)
    y = rng.integers(0, 3, (300, 6)).astype(float)
    x[0] = 1.0  # a constant row: NaN, as the scalar versions
    tau, rho = report_stats.batch_tau_rho(x, y)
    want_tau = [kendall_tau(a, b) for a, b in zip(x, y)]
    want_rho = [spearman_rho(a, b) for a, b in zip(x, y)]
    assert tau == pytest.approx(want_tau, nan_ok=True) and rho == pytest.approx(want_rho, nan_ok=True)
    assert np.isnan(tau[0]) and np.isnan(rho[0])


def test_seed_level_proxies_and_missing_values():
    values = {"heldout_nll": {("a", 0): 1.0, ("a", 1): 3.0, ("b", 0): 2.0, ("b", 1): None}}
    tables = {("offline", n, s): pd.DataFrame({"pass@1": [0.5, 0.5]}) for n in "ab" for s in (0, 1)}
    study = report_stats.build_study(tables, ["a", "b"], "pass@1", [], values)
    nll = study.proxies["heldout_nll"]
    assert nll.shape == (2, 2) and np.isnan(nll[1, 1])
    m = report_stats.weighted_means(nll, np.array([[1.0, 1.0], [0.0, 2.0], [2.0, 0.0]]), None)
    assert m[:, 0].tolist() == [2.0, 3.0, 1.0]
    assert m[0, 1] == 2.0 and np.isnan(m[1, 1]) and m[2, 1] == 2.0


def test_no_bootstrap_gives_no_interval_and_no_verdict(tmp_path):
    _, df, md = run_report(tmp_path, constructed(), resamples=0)
    assert "no interval (report.bootstrap = 0)" in md and "significance unknown" in md
    assert "none is significant" not in md
    assert "[+" not in md.split("## Offline vs online")[0].split("Best online")[1].split("\n")[0]
    # without intervals no flip is called significant or not
    assert set(df.loc[["sft", "talr"], "rank_change_significance"]) == {"unknown (no interval)"}
