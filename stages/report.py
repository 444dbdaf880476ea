"""The study's answer: offline vs online pass@k per objective (paper Figure 1, Tables 6-7).

Reads every eval of the run (and each SFT's manifest for its held-out NLL) and writes

* ``results.csv``  one row per objective plus the direct-RL baseline and the base/behavior models,
* ``report.md``    the same table with offline rank, online rank and the change,
* ``offline_online.png``  slope chart: offline → online pass@k per objective.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from stages.common import write_json


def _metrics(path: str) -> dict:
    return json.loads((Path(path) / "metrics.json").read_text())


def _manifest_metrics(path: str) -> dict:
    p = Path(path) / "manifest.json"
    return json.loads(p.read_text())["metrics"] if p.is_file() else {}


def build_table(inputs: dict[str, str], ks: list[int]) -> pd.DataFrame:
    rows = []
    for ref in ("base", "behavior"):
        m = _metrics(inputs[f"eval/{ref}"])
        rows.append({"policy": ref, "kind": "reference",
                     **{f"offline_pass@{k}": m.get(f"pass@{k}") for k in ks}})
    names = sorted({k.split("/", 2)[2] for k in inputs if k.startswith("eval/rl/")})
    for name in names:
        row = {"policy": name, "kind": "direct-RL" if name == "direct" else "objective"}
        on = _metrics(inputs[f"eval/rl/{name}"])
        if name != "direct":
            off = _metrics(inputs[f"eval/sft/{name}"])
            row.update({f"offline_pass@{k}": off.get(f"pass@{k}") for k in ks})
            row["offline_heldout_nll"] = _manifest_metrics(inputs[f"sft/{name}"]).get("heldout_nll")
        row.update({f"online_pass@{k}": on.get(f"pass@{k}") for k in ks})
        rows.append(row)
    df = pd.DataFrame(rows)
    obj = df["kind"] == "objective"
    k1 = ks[0]
    df.loc[obj, "offline_rank"] = df.loc[obj, f"offline_pass@{k1}"].rank(ascending=False, method="min")
    df.loc[obj, "online_rank"] = df.loc[obj, f"online_pass@{k1}"].rank(ascending=False, method="min")
    df["rank_change"] = df["offline_rank"] - df["online_rank"]  # > 0: better online than offline
    return df


def plot(df: pd.DataFrame, ks: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [k for k in ks if f"online_pass@{k}" in df][:2]
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 4), squeeze=False)
    for ax, k in zip(axes[0], shown):
        for _, r in df[df["kind"] == "objective"].iterrows():
            ax.plot([0, 1], [r[f"offline_pass@{k}"], r[f"online_pass@{k}"]], marker="o")
            ax.annotate(r["policy"], (1, r[f"online_pass@{k}"]), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=8)
        for _, r in df[df["kind"] != "objective"].iterrows():
            y = r.get(f"online_pass@{k}") if r["kind"] == "direct-RL" else r[f"offline_pass@{k}"]
            if pd.notna(y):
                ax.axhline(y, ls="--", lw=0.8, color="gray")
                ax.annotate(r["policy"], (0.5, y), fontsize=7, color="gray", va="bottom")
        ax.set_xticks([0, 1], ["after SFT (offline)", "after RL (online)"])
        ax.set_xlim(-0.2, 1.4)
        ax.set_ylabel(f"pass@{k}")
        ax.set_title(f"pass@{k}: offline → online")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(df: pd.DataFrame, experiment: str) -> str:
    def fmt(x):
        return "" if pd.isna(x) else (f"{x:.3f}" if isinstance(x, float) else str(x))

    cols = [c for c in df.columns if c != "kind"]
    lines = [f"# Offline vs online: {experiment}", "",
             "Offline = after SFT, online = after identical GRPO from that checkpoint. Ranks use "
             "pass@1 over the objectives (1 = best); rank_change > 0 means the objective ranks "
             "better online than offline. `direct` is GRPO from the base model.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for _, r in df.iterrows()]
    lines += ["", "![offline vs online](offline_online.png)", ""]
    return "\n".join(lines)


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    ks = [int(k) for k in cfg["report"]["ks"]]
    df = build_table(inputs, ks)
    df.to_csv(Path(out) / "results.csv", index=False)
    (Path(out) / "report.md").write_text(markdown(df, cfg["experiment"]))
    plot(df, ks, Path(out) / "offline_online.png")
    table = df.where(pd.notna(df), None).to_dict(orient="records")
    write_json(table, Path(out) / "results.json")
    return {"rows": table}
