"""The two phases of a budget study (``pipeline/budget.py``) and what they saved.

Phase 1 runs the nodes the proxy reads (every SFT checkpoint and its eval, the SFT-side
analysis when the proxy comes from it) and what they need. The decision is made from those
outputs and recorded (``results/<experiment>/budget/<key>.json``). Phase 2 is the study's own
DAG restricted to: every node outside the objectives' RL branches (direct RL, base and behavior
evals, SFT analysis), the branches of the selected objectives and the controls, any other branch
already complete from an earlier run, and a report over those branches. Every node keeps the key
a full run gives it, and the report differs from a full run's only by the branches it holds:
a later full run reuses everything, and a budget run after a full run computes nothing (its
report holds every branch, so it is the full run's report).

A node that fails in phase 1 stops its branch and the report, as in a full run.

The summary (``<key>.md`` and ``summary`` in the JSON, linked as ``budget/latest.md``): RL-side
nodes run vs skipped, the stage time they took and the time saved (the skipped nodes' own times
where an earlier run computed them, else the mean of the same stage's nodes that ran), GPU-hours
from ``study.gpu_hours``, whether the online best objective was among those selected (over every
objective when all branches are complete, e.g. after a full run) and the rank correlation of the
proxy with online ``report.rank_by`` over the objectives that got RL.
"""
from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from pipeline import budget
from pipeline.cache import read_manifest, write_json_atomic
from pipeline.dag import Dag, Node
from pipeline.runner import Outcome


def phase1_dag(dag: Dag) -> Dag:
    """The proxy's input nodes and their ancestors."""
    keep: set[str] = set()
    frontier = list(budget.proxy_inputs(dag, dag.study).values())
    while frontier:
        nid = frontier.pop()
        if nid not in keep:
            keep.add(nid)
            frontier.extend(dag.nodes[nid].deps)
    return budget.subdag(dag, keep, None)


def phase2_dag(dag: Dag, decision: dict, dropped: set[str]) -> Dag:
    """The study as the decision shapes it; ``dropped``: nodes left out (phase-1 failures and
    their descendants; the report is then left out too)."""
    keep_objectives = set(decision["top"]) | set(decision["controls"])
    out: set[str] = set()
    for (objective, _), ids in budget.branches(dag).items():
        if objective not in keep_objectives and not all(dag.dir(n).complete() for n in ids):
            out.update(ids)
    keep = set(dag.order) - out - dropped
    if "report" in dropped:
        return budget.subdag(dag, keep, None)
    full = dag.nodes["report"]
    inputs = {name: ref for name, ref in full.inputs.items() if ref.node in keep}
    return budget.subdag(dag, keep, Node("report", "report", full.cfg, inputs, full.resources))


def view(dag: Dag) -> tuple[Dag, dict[str, str], list[str]]:
    """What ``plan`` and ``status`` show for a budget study: (the DAG the run will hold, states
    for nodes that will not run, lines describing the decision)."""
    s: budget.Settings = dag.study
    decision = budget.known_decision(dag, s)
    if decision is None:
        inputs = budget.proxy_inputs(dag, s)
        done = sum(dag.dir(i).complete() for i in inputs.values())
        pending = {n: "pending" for ids in budget.branches(dag).values() for n in ids
                   if not dag.dir(n).complete()}
        pending["report"] = "pending"
        return dag, pending, [
            f"budget: RL for the top {s.top_m} by {s.proxy} plus {s.controls} control(s), "
            f"decided once the proxy's {len(inputs)} SFT-side inputs are finished ({done} are); "
            "the RL branches of objectives and the report wait for that"]
    done = {n for n in decision["skipped_nodes"] if dag.dir(n).complete()}
    return phase2_dag(dag, decision, set()), {}, budget.describe(decision, s, done)


def run(dag: Dag, run_dag: Callable[[Dag, Callable[[str], None]], Outcome],
        echo: Callable[[str], None] = print, started: float | None = None) -> tuple[Outcome, Dag]:
    """Phase 1, the decision, phase 2, the summary. ``run_dag(dag, echo)`` runs one DAG (the
    runner). Returns the merged outcome and the DAG phase 2 held."""
    from pipeline import results

    s, started = dag.study, started or time.time()
    first = phase1_dag(dag)
    echo(f"budget phase 1: {len(first.nodes)} nodes up to the proxy's inputs ({s.proxy})")
    out1 = run_dag(first, echo)
    if out1.interrupted:  # Ctrl-C: no decision from half a phase 1
        return out1, first
    lost = {n for n, st in out1.states.items() if st in ("failed", "skipped")}
    dropped = set(lost).union(*(dag.descendants(n) for n in lost))
    decision = budget.decide(dag, s)
    path = budget.write_decision(dag, s, decision)
    done = {n for n in decision["skipped_nodes"] if dag.dir(n).complete()}
    for line in budget.describe(decision, s, done):
        echo(line)
    echo(f"decision: {path}")
    second = phase2_dag(dag, decision, dropped)
    results.record_run(second, started)
    seen = {f"[{n}] cached" for n in first.nodes}
    out2 = run_dag_quiet(run_dag, second, echo, seen)
    merged = Outcome()
    for o in (out2, out1):  # phase 1's own states win (done in phase 1, not "cached" in 2)
        merged.states.update(o.states)
        merged.seconds.update(o.seconds)
        merged.metrics.update(o.metrics)
        merged.errors.update(o.errors)
    merged.interrupted = out2.interrupted
    for n in sorted(dropped - set(merged.states), key=dag.order.index):
        merged.states[n] = "skipped"
    decision["summary"] = summarize(dag, second, decision)
    md = write_summary(path, decision, s)
    for line in summary_lines(decision):
        echo(line)
    echo(f"budget summary: {md}")
    return merged, second


def write_summary(path, decision: dict, s: budget.Settings):
    """The decision with its summary (JSON) and ``<key>.md``, linked as ``latest.md``."""
    write_json_atomic(path, decision)
    md = path.with_suffix(".md")
    tmp = md.with_name(f".{md.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(summary_markdown(decision, s)) + "\n")
    os.replace(tmp, md)
    link = md.parent / f".latest-{os.getpid()}"
    link.unlink(missing_ok=True)
    os.symlink(md.name, link)
    os.replace(link, md.parent / "latest.md")
    return md


def run_dag_quiet(run_dag, dag: Dag, echo, seen: set[str]) -> Outcome:
    """Phase 2 without repeating the "cached" line of every phase-1 node."""
    def filtered(line: str) -> None:
        if line.split("  ", 1)[0] not in seen:
            echo(line)

    return run_dag(dag, filtered)


# --- the summary ----------------------------------------------------------------------------------

def _seconds(dag: Dag, nid: str) -> float | None:
    sd = dag.dir(nid)
    if not sd.complete():
        return None
    return (read_manifest(sd.final).get("timings") or {}).get("seconds")


def _online(dag: Dag, objectives: list[str]) -> dict[str, float]:
    """Online ``report.rank_by`` per objective (mean over seeds) from the complete RL evals."""
    from stages.report import build_table

    report = dag.nodes["report"].cfg["report"]
    by = report.get("rank_by", "pass@1")
    inputs = {name: str(dag.dir(ref.node).final)
              for name, ref in dag.nodes["report"].inputs.items()
              if name.startswith("eval/rl/") and name.split("/")[2] in objectives
              and dag.dir(ref.node).complete()}
    if not inputs:
        return {}
    df, _ = build_table(inputs, {"report": {**report, "bootstrap": 0}})
    rows = df.set_index("policy")
    return {o: float(rows.loc[o, f"online_{by}"]) for o in objectives if o in rows.index
            and np.isfinite(rows.loc[o, f"online_{by}"])}


def _correlation(values: dict, online: dict, names: list[str]) -> dict:
    from stages.metrics import kendall_tau, spearman_rho
    from stages.report_stats import MIN_OBJECTIVES

    both = [o for o in names if values.get(o) is not None and o in online]
    x = np.array([values[o] for o in both], float)
    y = np.array([online[o] for o in both], float)
    tau, rho = (kendall_tau(x, y), spearman_rho(x, y)) if len(both) >= 2 else (np.nan, np.nan)
    return {"objectives": both, "n": len(both), "judgeable": len(both) >= MIN_OBJECTIVES,
            "kendall_tau": float(tau) if np.isfinite(tau) else None,
            "spearman_rho": float(rho) if np.isfinite(rho) else None}


def summarize(dag: Dag, second: Dag, decision: dict) -> dict:
    """Nodes run vs skipped, stage seconds spent and saved, GPU-hours, the online winner and
    the proxy's rank correlation (as data, for the JSON and the markdown). Skipped = the RL-side
    nodes of the objectives the decision left out, whether or not an earlier run computed them."""
    s = dag.study
    skipped = list(decision["skipped_nodes"])
    ran = [n for n in second.order if n in budget.branch_nodes(dag) and n not in skipped]
    times = {n: _seconds(dag, n) for n in ran}
    mean = {st: float(np.mean(v)) for st in budget.BRANCH_STAGES
            if (v := [t for n, t in times.items() if t is not None and dag.nodes[n].stage == st])}
    measured = {n: t for n in skipped if (t := _seconds(dag, n)) is not None}
    estimated = {n: mean[dag.nodes[n].stage] for n in skipped
                 if n not in measured and dag.nodes[n].stage in mean}
    spent = sum(t for n in second.order if n not in skipped and (t := _seconds(second, n)))
    hours = s.gpu_hours
    gpu = ({"spent": sum(hours.get(second.nodes[n].stage, 0.0) for n in second.order
                         if n not in skipped),
            "saved": sum(hours.get(dag.nodes[n].stage, 0.0) for n in skipped)} if hours else None)
    rl_objectives = decision["top"] + decision["controls"]
    everyone = budget.objectives_of(dag)
    complete = all(dag.dir(n).complete() for n in budget.branch_nodes(dag))
    online = _online(dag, everyone if complete else rl_objectives)
    best = max(online, key=online.get) if online else None
    role = ("selected" if best in decision["top"] else "control" if best in decision["controls"]
            else "skipped" if best else None)
    by = dag.nodes["report"].cfg["report"].get("rank_by", "pass@1")
    return {"rl_nodes_run": sum(dag.nodes[n].stage == "rl" for n in ran),
            "rl_nodes_skipped": sum(dag.nodes[n].stage == "rl" for n in skipped),
            "branch_nodes_run": len(ran), "branch_nodes_skipped": len(skipped),
            "branch_seconds_spent": sum(t for t in times.values() if t is not None),
            "study_seconds_spent": spent,
            "seconds_saved": sum(measured.values()) + sum(estimated.values()),
            "saved_measured_nodes": len(measured), "saved_estimated_nodes": len(estimated),
            "saved_unknown_nodes": len(skipped) - len(measured) - len(estimated),
            "gpu_hours": gpu, "full_study_complete": complete, "online": online,
            "online_metric": f"online_{by}", "online_best": best, "online_best_role": role,
            "correlation_rl": _correlation(decision["values"], online, rl_objectives),
            "correlation_all": _correlation(decision["values"], online, everyone)
            if complete else None}


def _corr_text(c: dict, higher: bool) -> str:
    if c["kendall_tau"] is None or c["spearman_rho"] is None:
        return f"undefined over {c['n']} objective(s) (fewer than 2, or a constant column)"
    text = (f"Kendall τ = {c['kendall_tau']:+.2f}, Spearman ρ = {c['spearman_rho']:+.2f} over "
            f"{c['n']} objectives ({', '.join(c['objectives'])})")
    if not c["judgeable"]:
        text += "; too few to judge (under 4 objectives a rank correlation says little)"
    return text + ("" if higher else "; lower is better, so a good proxy gives τ < 0")


def summary_lines(decision: dict) -> list[str]:
    m = decision["summary"]
    saved, spent = m["seconds_saved"], m["study_seconds_spent"]
    how = ", ".join(f"{k} {w}" for k, w in ((m["saved_measured_nodes"], "measured by an earlier "
                    "run"), (m["saved_estimated_nodes"], "estimated from the mean time of the "
                    "same stage's nodes that ran"), (m["saved_unknown_nodes"], "unknown")) if k)
    lines = [f"budget: {m['rl_nodes_run']} RL nodes run, {m['rl_nodes_skipped']} skipped "
             f"({m['branch_nodes_run']} vs {m['branch_nodes_skipped']} RL-side nodes with their "
             "evals and analyses)",
             f"  stage time: {spent:.0f} s spent by this study ({m['branch_seconds_spent']:.0f} s "
             f"of it on RL-side nodes), {saved:.0f} s saved ({how or 'nothing skipped'}): "
             f"{100 * saved / max(spent + saved, 1e-9):.0f}% of the full study's stage time"]
    if m["gpu_hours"]:
        g = m["gpu_hours"]
        share = 100 * g["saved"] / max(g["spent"] + g["saved"], 1e-9)
        lines.append(f"  GPU-hours (study.gpu_hours estimates): {g['spent']:.1f} spent, "
                     f"{g['saved']:.1f} saved ({share:.0f}% of the full study)")
    metric = m["online_metric"]
    if m["online_best"] is None:
        lines.append("  online best: no objective has an online result")
    elif m["full_study_complete"]:
        found = {"selected": "the proxy selected it", "control": "only as a control: the "
                 "proxy's top would have missed it", "skipped": "it was skipped: the budget run "
                 "missed the winner"}[m["online_best_role"]]
        lines.append(f"  online best over every objective (all branches complete): "
                     f"{m['online_best']} ({metric} {m['online'][m['online_best']]:.3f}); {found}")
    else:
        lines.append(f"  online best among the objectives that got RL: {m['online_best']} "
                     f"({m['online_best_role']}, {metric} {m['online'][m['online_best']]:.3f}); "
                     "a skipped objective may have beaten it (run the full study to compare)")
    hib = decision["higher_is_better"]
    lines.append(f"  proxy vs {metric} over the objectives that got RL: "
                 f"{_corr_text(m['correlation_rl'], hib)}")
    if m["correlation_all"]:
        lines.append(f"  over every objective: {_corr_text(m['correlation_all'], hib)}")
    return lines


def summary_markdown(decision: dict, s: budget.Settings) -> list[str]:
    m = decision["summary"]
    out = ["# Budget study: which objectives got RL, and what that saved", "",
           *(f"- {ln.strip()}" for ln in summary_lines(decision)), "",
           "## Decision", "", f"Proxy `{decision['column']}` "
           f"({'higher' if decision['higher_is_better'] else 'lower'} is better), top "
           f"{s.top_m} plus {len(decision['controls'])} control(s) drawn with seed "
           f"{s.control_seed}. Ties keep the order of `objectives`; NaN proxies rank last.", "",
           f"| rank | objective | proxy | role | {m['online_metric']} |", "|---|---|---|---|---|"]
    for i, o in enumerate(decision["ranking"], 1):
        v, on = decision["values"].get(o), m["online"].get(o)
        role = ("selected" if o in decision["top"] else "control" if o in decision["controls"]
                else "skipped")
        out.append(f"| {i} | {o} | {'NaN' if v is None else f'{v:.4g}'} | {role} | "
                   f"{'' if on is None else f'{on:.3f}'} |")
    notes = [(decision["tied_at_cut"], "Tied at the cut (the order of `objectives` decided)"),
             (decision["nan"], "NaN proxy (ranked last)"),
             (decision["unavailable"], "No finished SFT eval (left out)")]
    out += [""] + [f"- {label}: {', '.join(names)}." for names, label in notes if names]
    out += [f"- Skipped nodes: {', '.join(decision['skipped_nodes']) or 'none'}.", "",
            f"The numbers behind this page: `{decision['key']}.json` beside it."]
    return out
