"""Budget-aware study (``study.mode=budget``): RL only for the objectives an offline proxy ranks
best, plus a few random others as a control.

The full study runs GRPO from every SFT checkpoint, most of its cost (about 21 GPU-hours per
objective for the 1.7B SynLogic study). Quagmires (Kang et al. 2025) and PEAR's Appendix A ask
which offline number predicts the online one; the report measures that after the fact. A budget
run uses it before: it runs everything up to the proxy's inputs (every SFT, its eval, its
analysis when the proxy needs one), computes the proxy per objective exactly as the report does
(``stages.report.build_table``: the mean over seeds, from the same eval samples), ranks the
objectives and adds RL, online eval and analysis for the ``study.top_m`` best and for
``study.controls`` others drawn with a seeded RNG. The controls are what lets the proxy's
reliability be measured without bias: an objective the proxy ranked low can still win online.

This module holds the decision: the settings (checked before any work), the pure selection
(``select``), the proxy values read from finished outputs, the decision file
``results/<experiment>/budget/<key>.json`` (``key`` hashes the settings and the keys of the
proxy's input nodes) and its description. ``pipeline/budget_run.py`` runs the two phases,
writes the summary of what was saved and gives ``plan`` and ``status`` their view.

Proxies: any column of the report's proxy table that exists before RL: ``offline_pass@K`` (K = 1,
a ``report.ks`` value or ``large_k``: the report's pass@large-k, ``report.large_k`` or the eval's
n), ``offline_maj@N`` (N = ``eval.n``), ``heldout_nll`` (lower is better) and the Appendix A
proxies ``kl_to_base``, ``sparsity_vs_base``, ``nss_base_sft``, ``grad_rotation``, whose good
direction the paper does not settle, so they need ``study.direction``. Ties are broken by the order of
``objectives`` and reported; NaN proxies rank last and are reported.
"""
from __future__ import annotations

import math
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from pipeline.cache import digest, write_json_atomic
from pipeline.dag import Dag, Node

MODES = ("full", "budget")
LARGE_K = "offline_pass@large_k"
# proxies measured only after RL (e.g. NSS SFT<->RL) cannot choose what RL to run
POST_RL = ("nss_sft_rl", "kl_rl", "sparsity_rl")
ANALYSIS_PROXIES = ("kl_to_base", "sparsity_vs_base", "nss_base_sft", "grad_rotation")
BRANCH_STAGES = ("rl", "eval", "analysis")


@dataclass(frozen=True)
class Settings:
    proxy: str                   # as configured, e.g. offline_pass@large_k
    higher_is_better: bool
    top_m: int
    controls: int
    control_seed: int
    gpu_hours: dict[str, float]  # estimated GPU-hours per node of a stage (empty: none known)

    @property
    def needs_analysis(self) -> bool:
        return self.proxy in ANALYSIS_PROXIES


def _int(study: Mapping, name: str, low: int) -> int:
    v = study.get(name)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"study.{name} must be an integer >= {low}, got {v!r}")
    return v


def _check_proxy(proxy: str, cfg: Mapping) -> bool | None:
    """Is higher better (None: unknown)? Raises naming the valid proxies."""
    n = int(cfg["eval"]["n"])
    report = cfg.get("report") or {}
    ks = sorted({1, *(int(k) for k in report.get("ks") or []), int(report.get("large_k") or n)})
    valid = ([LARGE_K] + [f"offline_pass@{k}" for k in ks if k <= n] + [f"offline_maj@{n}",
             "heldout_nll"] + list(ANALYSIS_PROXIES))
    if proxy in POST_RL:
        raise ValueError(f"study.proxy={proxy} is measured after RL and cannot choose which RL "
                         f"to run; valid: {', '.join(valid)}")
    if proxy not in valid:
        raise ValueError(f"unknown study.proxy {proxy!r}; valid (columns of the report's proxy "
                         f"table known before RL): {', '.join(valid)}")
    if proxy in ANALYSIS_PROXIES and not (cfg.get("analysis") or {}).get("enabled", False):
        raise ValueError(f"study.proxy={proxy} comes from the analysis stage, which is off "
                         "(analysis.enabled=false)")
    rotation = ((cfg.get("analysis") or {}).get("rotation") or {}).get("enabled", False)
    if proxy == "grad_rotation" and not rotation:
        raise ValueError("study.proxy=grad_rotation needs analysis.rotation.enabled=true")
    if re.match(r"offline_(pass|maj)@", proxy):
        return True
    return False if proxy == "heldout_nll" else None


def settings(cfg: Mapping, objectives: list[str]) -> Settings | None:
    """The budget settings of a resolved config (None for ``study.mode=full``); stops with a
    message naming the setting to change before any work is done."""
    study = cfg.get("study") or {}
    mode = study.get("mode", "full")
    if mode not in MODES:
        raise ValueError(f"unknown study.mode {mode!r}; valid: {', '.join(MODES)}")
    if mode == "full":
        return None
    if len(objectives) < 2:
        raise ValueError(
            f"study.mode=budget chooses among the objectives of one run, but this run holds "
            f"{len(objectives)} ({', '.join(objectives)}); give it several (objectives=[a,b,...], "
            "no objective=NAME; a multirun over other settings, -m sft.lr=a,b, selects per job)")
    top_m, controls = _int(study, "top_m", 1), _int(study, "controls", 0)
    seed = study.get("control_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"study.control_seed must be an integer, got {seed!r}")
    proxy = str(study.get("proxy") or LARGE_K)
    known = _check_proxy(proxy, cfg)
    direction = study.get("direction", "auto")
    if direction not in ("auto", "max", "min"):
        raise ValueError(f"study.direction must be auto, max or min, got {direction!r}")
    if direction == "auto" and known is None:
        raise ValueError(f"which direction of study.proxy={proxy} predicts better RL is not "
                         "known in advance (PEAR Appendix A reports it per study); set "
                         "study.direction=max or study.direction=min")
    hours = study.get("gpu_hours") or {}
    if not isinstance(hours, Mapping) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for v in hours.values()):
        raise ValueError(f"study.gpu_hours must map stage names to GPU-hours >= 0, got {hours!r}")
    return Settings(proxy, known if direction == "auto" else direction == "max", top_m, controls,
                    int(seed), {str(k): float(v) for k, v in hours.items()})


# --- the selection: a pure function ------------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    ranking: list[str]        # best first by the proxy; NaN ones last, in the given order
    top: list[str]            # the top_m first of the ranking
    controls: list[str]       # drawn from the rest with the seeded RNG, in ranking order
    skipped: list[str]        # neither, in ranking order
    nan: list[str]            # objectives whose proxy is NaN (ranked last)
    tied_at_cut: list[str]    # objectives sharing the value at the top_m cut across it


def _missing(v: float | None) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def select(values: Mapping[str, float | None], top_m: int, controls: int, seed: int,
           higher_is_better: bool = True) -> Selection:
    """Rank ``values`` (objective -> proxy, in the study's order), keep the ``top_m`` best and
    ``controls`` others drawn uniformly from the rest with ``random.Random(seed)``.

    Ties keep the given order (the order of ``objectives``) and are reported when they straddle
    the cut; NaN values rank last. ``top_m`` at or above the number of objectives keeps them all
    (no control left to draw)."""
    if not values:
        raise ValueError("no objective to select from")
    if top_m < 1 or controls < 0:
        raise ValueError(f"top_m must be >= 1 and controls >= 0, got {top_m}, {controls}")
    names = list(values)
    nan = [o for o in names if _missing(values[o])]
    finite = [o for o in names if o not in nan]
    sign = -1.0 if higher_is_better else 1.0
    ranking = sorted(finite, key=lambda o: sign * float(values[o])) + nan  # sorted() is stable
    top = ranking[:top_m]
    tied: list[str] = []
    if top_m < len(ranking) and ranking[top_m - 1] in finite and ranking[top_m] in finite:
        cut = float(values[ranking[top_m - 1]])
        if float(values[ranking[top_m]]) == cut:
            tied = [o for o in ranking if o in finite and float(values[o]) == cut]
    pool = [o for o in names if o not in top]  # the study's order: draws do not depend on values
    drawn = set(random.Random(seed).sample(pool, min(controls, len(pool))))
    return Selection(ranking, top, [o for o in ranking if o in drawn],
                     [o for o in ranking if o not in top and o not in drawn], nan, tied)


# --- the study's branches and the proxy's inputs --------------------------------------------------

def objectives_of(dag: Dag) -> list[str]:
    """The objectives of the study in ``objectives`` order (from the report's sft inputs)."""
    seen: dict[str, None] = {}
    for name in dag.nodes["report"].inputs:
        if name.startswith("sft/"):
            seen.setdefault(name.split("/")[1])
    return list(seen)


def branches(dag: Dag) -> dict[tuple[str, int], list[str]]:
    """``{(objective, seed): [rl, eval[rl], analysis[rl] node ids]}``: what RL adds per branch
    (direct RL from the base is not an objective and always runs)."""
    out: dict[tuple[str, int], list[str]] = {}
    for name, ref in dag.nodes["report"].inputs.items():
        parts = name.split("/")
        if len(parts) == 4 and parts[:2] in (["eval", "rl"], ["analysis", "rl"]) \
                and parts[2] != "direct":
            ids = out.setdefault((parts[2], int(parts[3])), [])
            start = dag.nodes[ref.node].inputs["model"].node  # the rl node both read
            ids.extend(n for n in (start, ref.node) if n not in ids)
    return {k: sorted(v, key=dag.order.index) for k, v in out.items()}


def proxy_inputs(dag: Dag, s: Settings) -> dict[str, str]:
    """Report input name -> node id of what the proxy is computed from (SFT side only)."""
    kinds = ("eval/sft/", "sft/") + (("analysis/sft/",) if s.needs_analysis else ())
    return {name: ref.node for name, ref in dag.nodes["report"].inputs.items()
            if name.startswith(kinds)}


def decision_key(dag: Dag, s: Settings) -> str:
    report = dag.nodes["report"].cfg["report"]
    sel = {k: v for k, v in asdict(s).items() if k != "gpu_hours"}
    return digest({"settings": sel, "report": {k: report.get(k) for k in ("ks", "large_k")},
                   "inputs": {n: dag.nodes[i].key for n, i in proxy_inputs(dag, s).items()}})


def decision_path(dag: Dag, s: Settings) -> Path:
    return dag.root / "budget" / f"{decision_key(dag, s)}.json"


def proxy_values(dag: Dag, s: Settings) -> tuple[str, dict[str, float | None], list[str]]:
    """(the proxy's column, its value per objective averaged over seeds, objectives without any
    finished SFT eval). Values come from the report's own table of the finished SFT outputs."""
    from stages.report import build_table, proxy_columns

    names = objectives_of(dag)
    inputs = {n: str(dag.dir(i).final) for n, i in proxy_inputs(dag, s).items()
              if dag.dir(i).complete()}
    if not any(n.startswith("eval/") for n in inputs):
        return s.proxy, {}, names
    report = dag.nodes["report"].cfg["report"]
    df, meta = build_table(inputs, {"report": {**report, "bootstrap": 0}})
    column = f"offline_pass@{meta['large_k']}" if s.proxy == LARGE_K else s.proxy
    if column not in proxy_columns(df, meta):
        raise ValueError(f"study.proxy {s.proxy} ({column}) is not a column of the proxy table "
                         f"here; columns: {', '.join(proxy_columns(df, meta))}")
    rows = df.set_index("policy")
    present = [o for o in names if o in rows.index]
    values = {o: (None if _missing(float(rows.loc[o, column])) else float(rows.loc[o, column]))
              for o in present}
    return column, values, [o for o in names if o not in present]


def decide(dag: Dag, s: Settings) -> dict[str, Any]:
    """The decision as a JSON-able record (no file written)."""
    column, values, unavailable = proxy_values(dag, s)
    sel = select(values, s.top_m, s.controls, s.control_seed, s.higher_is_better) if values \
        else Selection([], [], [], [], [], [])
    skipped_nodes = [n for (o, _), ids in branches(dag).items() if o in sel.skipped for n in ids]
    return {"key": decision_key(dag, s), "proxy": s.proxy, "column": column,
            "higher_is_better": s.higher_is_better, "top_m": s.top_m,
            "controls_requested": s.controls, "control_seed": s.control_seed, "values": values,
            **asdict(sel), "unavailable": unavailable,
            "skipped_nodes": sorted(skipped_nodes, key=dag.order.index),
            "decided_at": time.time()}


def write_decision(dag: Dag, s: Settings, decision: dict) -> Path:
    path = decision_path(dag, s)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, decision)
    return path


def known_decision(dag: Dag, s: Settings) -> dict | None:
    """The decision as it stands: computed now when every proxy input is finished, else the
    one a run recorded (made with some SFT unfinished), else None (pending)."""
    if all(dag.dir(i).complete() for i in proxy_inputs(dag, s).values()):
        return decide(dag, s)
    path = decision_path(dag, s)
    if path.is_file():
        import json

        return json.loads(path.read_text())
    return None


def describe(decision: dict, s: Settings, complete: set[str] = frozenset()) -> list[str]:
    """Lines for ``plan``, ``status`` and the run: the ranking, the roles, the skipped nodes
    (``complete``: those an earlier run computed; the report holds them)."""
    way = "higher" if decision["higher_is_better"] else "lower"
    out = [f"budget: RL for the top {s.top_m} by {decision['column']} ({way} is better) plus "
           f"{len(decision['controls'])} control(s) of {s.controls} requested "
           f"(seed {s.control_seed})"]
    for i, o in enumerate(decision["ranking"], 1):
        role = ("selected" if o in decision["top"] else "control" if o in decision["controls"]
                else "skipped")
        v = decision["values"].get(o)
        note = (" (NaN proxy, ranked last)" if o in decision["nan"] else
                " (tied at the cut; the order of `objectives` decides)"
                if o in decision["tied_at_cut"] else "")
        out.append(f"  {i}. {o:<16} {'NaN' if v is None else f'{v:.4g}':>8}  {role}{note}")
    for o in decision["unavailable"]:
        out.append(f"  -  {o:<16} {'':>8}  unavailable: no finished SFT eval")
    skipped = decision["skipped_nodes"]
    out.append(f"  RL-side nodes skipped ({len(skipped)}): {', '.join(skipped) or 'none'}")
    if set(skipped) & set(complete):
        out.append(f"  of these, {len(set(skipped) & set(complete))} are complete from an earlier "
                   "run and the report holds them")
    return out


def branch_nodes(dag: Dag) -> set[str]:
    return {n for ids in branches(dag).values() for n in ids}


def subdag(dag: Dag, keep: set[str], report: Node | None) -> Dag:
    """``dag`` restricted to ``keep`` (in order), with ``report`` as its report node."""
    nodes = [dag.nodes[n] for n in dag.order if n in keep and n != "report"]
    if report is not None:
        nodes.append(report)
    out = Dag(nodes, dag.root)
    out.tracking, out.study = dag.tracking, dag.study
    return out
