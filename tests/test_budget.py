"""study.mode=budget: the selection (a pure function), its settings, and the two phases on the
real DAG with a stand-in runner that publishes made-up stage outputs (no stage runs here)."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from pipeline import budget, budget_run, cli, results
from pipeline.cache import MANIFEST
from pipeline.cli import CONF_DIR, build_dag
from pipeline.runner import Outcome

NAN = float("nan")


# --- select -----------------------------------------------------------------------------------

def test_top_m_and_seeded_controls_from_the_rest():
    values = {"a": 0.5, "b": 0.7, "c": 0.6, "d": 0.1, "e": 0.3}
    s = budget.select(values, top_m=2, controls=1, seed=0)
    assert s.ranking == ["b", "c", "a", "e", "d"] and s.top == ["b", "c"]
    assert len(s.controls) == 1 and s.controls[0] in {"a", "d", "e"}
    assert sorted(s.controls + s.skipped) == ["a", "d", "e"] and not s.nan and not s.tied_at_cut
    assert budget.select(values, 2, 1, seed=0) == s  # the same seed, the same draw
    drawn = {budget.select(values, 2, 1, seed=k).controls[0] for k in range(30)}
    assert drawn == {"a", "d", "e"}  # every other objective can be a control, the worst included
    two = budget.select(values, 2, 2, seed=3)
    assert len(set(two.controls)) == 2 and two.controls == [o for o in two.ranking if o in two.controls]


def test_ties_keep_the_study_order_and_are_reported_at_the_cut():
    s = budget.select({"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.2}, top_m=2, controls=0, seed=0)
    assert s.top == ["a", "b"] and s.tied_at_cut == ["a", "b", "c"] and s.skipped == ["c", "d"]
    s = budget.select({"c": 0.5, "b": 0.5, "a": 0.5, "d": 0.2}, top_m=2, controls=0, seed=0)
    assert s.top == ["c", "b"]
    inside = budget.select({"a": 0.9, "b": 0.5, "c": 0.5}, top_m=1, controls=0, seed=0)
    assert inside.top == ["a"] and inside.tied_at_cut == []  # a tie below the cut changes nothing


def test_top_m_at_or_above_the_number_of_objectives_keeps_all_and_draws_no_control():
    for m in (3, 7):
        s = budget.select({"a": 0.1, "b": 0.3, "c": 0.2}, top_m=m, controls=2, seed=0)
        assert s.top == ["b", "c", "a"] and s.controls == [] and s.skipped == []


def test_nan_proxies_rank_last_in_study_order_and_are_reported():
    values = {"a": NAN, "b": 0.3, "c": None, "d": 0.4}
    s = budget.select(values, top_m=2, controls=0, seed=0)
    assert s.ranking == ["d", "b", "a", "c"] and s.nan == ["a", "c"] and s.top == ["d", "b"]
    assert budget.select(values, top_m=3, controls=0, seed=0).top == ["d", "b", "a"]
    lower = budget.select({"a": 2.0, "b": NAN, "c": 1.5}, 1, 0, 0, higher_is_better=False)
    assert lower.ranking == ["c", "a", "b"]  # held-out NLL: lower is better, NaN still last
    all_nan = budget.select({"a": NAN, "b": NAN}, 1, 1, 0)
    assert all_nan.top == ["a"] and all_nan.controls == ["b"]


def test_select_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="no objective"):
        budget.select({}, 1, 0, 0)
    with pytest.raises(ValueError, match="top_m must be >= 1"):
        budget.select({"a": 1.0}, 0, 0, 0)


# --- settings -----------------------------------------------------------------------------------

def cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"results_dir={tmp_path}", "+experiment=smoke",
                                            "objectives=[sft,pear_token,sft_kl]", *overrides])


BUDGET = ("study.mode=budget", "study.top_m=1", "study.controls=1")


@pytest.mark.parametrize("overrides, message", [
    (("study.mode=cheap",), "unknown study.mode 'cheap'; valid: full, budget"),
    ((*BUDGET, "study.top_m=0"), "study.top_m must be an integer >= 1"),
    ((*BUDGET, "study.controls=-1"), "study.controls must be an integer >= 0"),
    ((*BUDGET, "study.proxy=nss_sft_rl"), "measured after RL"),
    ((*BUDGET, "study.proxy=offline_pass@3"), "unknown study.proxy 'offline_pass@3'"),
    ((*BUDGET, "study.proxy=kl_to_base"), "set study.direction=max or study.direction=min"),
    ((*BUDGET, "study.proxy=kl_to_base", "study.direction=min", "analysis.enabled=false"),
     "analysis.enabled=false"),
    ((*BUDGET, "study.direction=up"), "study.direction must be auto, max or min"),
    ((*BUDGET, "study.gpu_hours={rl: -1}"), "study.gpu_hours must map stage names"),
])
def test_bad_budget_settings_stop_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build_dag(cfg(tmp_path, *overrides), explicit=False)


def test_budget_needs_several_objectives_in_one_run(tmp_path):
    with pytest.raises(ValueError, match="chooses among the objectives of one run"):
        build_dag(cfg(tmp_path, *BUDGET, "objective=pear_token"), explicit=True)
    s = build_dag(cfg(tmp_path, *BUDGET, "study.proxy=heldout_nll"), explicit=False).study
    assert s.proxy == "heldout_nll" and s.higher_is_better is False and s.top_m == 1
    assert build_dag(cfg(tmp_path), explicit=False).study is None


# --- the two phases, with a stand-in runner ----------------------------------------------------

# correct samples (of 8) per eval item (6 items): offline pass@8 ranks pear_token > sft_kl > sft,
# offline pass@1 ranks sft first; online pass@1: sft 0.75 > pear_token 0.5 > sft_kl 0.25
OFFLINE = {"sft": [8, 8, 8, 0, 0, 0], "pear_token": [1, 1, 1, 1, 1, 0], "sft_kl": [2, 2, 2, 2, 0, 0]}
ONLINE = {"sft": [6] * 6, "pear_token": [4] * 6, "sft_kl": [2] * 6, "direct": [1] * 6}
SECONDS = {"rl": 100.0, "eval": 10.0, "analysis": 5.0}


def policy(nid: str) -> tuple[str, str, int]:
    """("offline"|"online"|"ref", name, seed) of an eval node id such as eval[rl:sft@1]."""
    inner = nid[nid.index("[") + 1:-1]
    phase, _, rest = inner.partition(":")
    name, _, seed = rest.partition("@")
    return {"sft": "offline", "rl": "online"}.get(phase, "ref"), name or phase, int(seed or 0)


class FakeRunner:
    """Publishes a made-up output for every node that is not complete, records what it ran."""

    def __init__(self, counts=None, fail=(), nll=None, kl=None):
        self.ran: list[str] = []
        self.counts, self.fail, self.nll, self.kl = counts, set(fail), nll or {}, kl or {}

    def samples(self, nid: str) -> pd.DataFrame:
        phase, name, seed = policy(nid)
        table = (self.counts or {}).get(seed, OFFLINE) if phase == "offline" else ONLINE
        counts = table.get(name, [3] * 6)
        return pd.DataFrame([{"prompt_id": f"p{i}", "correct": j < c, "extracted": str(int(j < c))}
                             for i, c in enumerate(counts) for j in range(8)])

    def __call__(self, dag, echo=print) -> Outcome:
        out = Outcome()
        for nid in dag.order:
            sd, node = dag.dir(nid), dag.nodes[nid]
            if sd.complete():
                out.states[nid] = "cached"
                echo(f"[{nid}] cached  {sd.final}")
                continue
            if nid in self.fail or any(out.states.get(d) in ("failed", "skipped") for d in node.deps):
                out.states[nid] = "failed" if nid in self.fail else "skipped"
                continue
            sd.final.mkdir(parents=True)
            metrics = {}
            if node.stage == "eval":
                self.samples(nid).to_parquet(sd.final / "samples.parquet")
            if node.stage == "sft":
                metrics["heldout_nll"] = self.nll.get(nid, 1.0)
            if node.stage == "analysis":
                (sd.final / "analysis.json").write_text(json.dumps(
                    {"forward_kl": self.kl.get(nid, 0.5), "sparsity": 0.1, "nss": 0.2}))
            (sd.final / MANIFEST).write_text(json.dumps({
                "key": node.key, "metrics": metrics,
                "timings": {"started": 0.0, "seconds": SECONDS.get(node.stage, 1.0)}}))
            self.ran.append(nid)
            out.states[nid] = "done"
            echo(f"[{nid}] done in 1.0 s")
        return out


def branch(o: str) -> list[str]:
    return [f"rl[{o}]", f"eval[rl:{o}]", f"analysis[rl:{o}]"]


def test_budget_run_then_full_run_then_budget_run(tmp_path):
    dag = build_dag(cfg(tmp_path, *BUDGET), explicit=False)
    full = build_dag(cfg(tmp_path), explicit=False)
    assert set(budget_run.phase1_dag(dag).nodes) == {
        "bootstrap", "sample", "verify", "score", *(f"sft[{o}]" for o in OFFLINE),
        *(f"eval[sft:{o}]" for o in OFFLINE)}
    lines: list[str] = []
    states = cli.print_plan(dag, echo=lines.append)
    assert {n for n, s in states.items() if s == "pending"} == {
        "report", *(n for o in OFFLINE for n in branch(o))}
    assert "decided once the proxy's 6 SFT-side inputs are finished (0 are)" in lines[-1]
    shown, over, _ = budget_run.view(dag)
    status = results.print_status(shown, echo=lines.append, overrides=over)
    assert status["rl[sft]"] == "pending" and status["sft[sft]"] == "missing"
    assert lines[-1].endswith("10 pending")

    runner = FakeRunner()
    outcome, second = budget_run.run(dag, runner, echo=lines.append)
    decision = json.loads(budget.decision_path(dag, dag.study).read_text())
    assert decision["column"] == "offline_pass@8" and decision["top"] == ["pear_token"]
    assert decision["values"]["pear_token"] == pytest.approx(5 / 6)
    assert decision["values"]["sft"] == pytest.approx(0.5)
    [control], [skipped] = decision["controls"], decision["skipped"]
    assert {control, skipped} == {"sft", "sft_kl"} and decision["skipped_nodes"] == branch(skipped)
    assert not any(dag.dir(n).complete() for n in branch(skipped)) and not outcome.failed
    # every node keeps the full run's key; the report differs only by the branches it holds
    assert all(second.nodes[n].key == full.nodes[n].key for n in second.order if n != "report")
    assert set(second.nodes["report"].inputs) == {
        k for k in full.nodes["report"].inputs if f"/{skipped}/" not in k or k.startswith(
            ("sft/", "eval/sft/", "analysis/sft/"))}
    m = decision["summary"]
    assert (m["rl_nodes_run"], m["rl_nodes_skipped"]) == (2, 1)
    assert m["seconds_saved"] == sum(SECONDS.values()) and m["saved_estimated_nodes"] == 3
    assert not m["full_study_complete"] and m["correlation_rl"]["n"] == 2
    assert m["online_best"] == ("sft" if control == "sft" else "pear_token")
    assert (dag.root / "budget" / "latest.md").resolve() == budget.decision_path(
        dag, dag.study).with_suffix(".md")
    assert "RL-side nodes skipped (3)" in "\n".join(lines)
    assert not any(f"[{n}] cached" in ln for ln in lines for n in budget_run.phase1_dag(dag).nodes)

    lines.clear()
    cli.print_plan(dag, echo=lines.append)  # after the run: the decision, nothing left to run
    assert "0 to run" in "\n".join(lines) and f"{skipped:<16}" in "\n".join(lines)

    runner.ran.clear()
    runner(full)  # the full study afterwards computes the skipped branch and its own report only
    assert sorted(runner.ran) == sorted(branch(skipped) + ["report"])

    runner.ran.clear()
    outcome, again = budget_run.run(dag, runner, echo=lines.append)
    assert runner.ran == [] and again.nodes["report"].key == full.nodes["report"].key
    m = json.loads(budget.decision_path(dag, dag.study).read_text())["summary"]
    assert m["full_study_complete"] and m["online_best"] == "sft"
    assert m["online_best_role"] == ("control" if control == "sft" else "skipped")
    assert m["saved_measured_nodes"] == 3 and m["correlation_all"]["n"] == 3


def test_selection_uses_the_mean_over_seeds(tmp_path):
    # offline pass@1 per seed; seed 0 alone would pick sft_kl, the mean picks pear_token
    counts = {0: {"sft": [4] * 6, "pear_token": [2] * 6, "sft_kl": [6] * 6},
              1: {"sft": [4] * 6, "pear_token": [8] * 6, "sft_kl": [0] * 6}}
    dag = build_dag(cfg(tmp_path, *BUDGET, "seeds=[0,1]", "study.proxy=offline_pass@1",
                        "study.controls=0"), explicit=False)
    budget_run.run(dag, FakeRunner(counts=counts), echo=lambda s: None)
    d = json.loads(budget.decision_path(dag, dag.study).read_text())
    assert d["values"] == pytest.approx({"sft": 0.5, "pear_token": 0.625, "sft_kl": 0.375})
    assert d["top"] == ["pear_token"] and d["skipped"] == ["sft", "sft_kl"]
    assert sorted(d["skipped_nodes"]) == sorted(
        n for o in ("sft", "sft_kl") for s in (0, 1)
        for n in (f"rl[{o}@{s}]", f"eval[rl:{o}@{s}]", f"analysis[rl:{o}@{s}]"))
    assert d["summary"]["rl_nodes_run"] == 2 and d["summary"]["rl_nodes_skipped"] == 4


def test_nan_analysis_proxy_ranks_last_and_a_failed_sft_stops_its_branch(tmp_path):
    dag = build_dag(cfg(tmp_path, *BUDGET, "study.proxy=kl_to_base", "study.direction=min",
                        "study.top_m=2", "study.controls=0"), explicit=False)
    assert "analysis[sft:sft]" in budget_run.phase1_dag(dag).nodes
    runner = FakeRunner(kl={"analysis[sft:sft]": None, "analysis[sft:pear_token]": 0.9,
                            "analysis[sft:sft_kl]": 0.2})
    outcome, _ = budget_run.run(dag, runner, echo=lambda s: None)
    d = json.loads(budget.decision_path(dag, dag.study).read_text())
    assert d["ranking"] == ["sft_kl", "pear_token", "sft"] and d["nan"] == ["sft"]
    assert d["top"] == ["sft_kl", "pear_token"] and d["values"]["sft"] is None
    assert "NaN proxy, ranked last" in "\n".join(budget.describe(d, dag.study))

    failing = build_dag(cfg(tmp_path / "f", *BUDGET, "study.top_m=2"), explicit=False)
    outcome, second = budget_run.run(failing, FakeRunner(fail={"sft[sft]"}), echo=lambda s: None)
    d = json.loads(budget.decision_path(failing, failing.study).read_text())
    assert outcome.failed == ["sft[sft]"] and d["unavailable"] == ["sft"]
    assert d["top"] == ["pear_token", "sft_kl"] and "report" not in second.nodes
    assert outcome.states["report"] == "skipped" and outcome.states["rl[sft]"] == "skipped"
    assert all(failing.dir(n).complete() for o in ("pear_token", "sft_kl") for n in branch(o))
    assert not math.isnan(d["summary"]["seconds_saved"])
