"""Per-benchmark results (the PEAR paper's Table 2 layout) and verifier timeouts in the report
(stages/report_groups.py, stages/report_types.py), on hand-made eval artifacts."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stages import report, report_groups
from stages.report_types import group_metrics, pass_by_benchmark
from test_report import CFG, synthetic_inputs

# q0-q2 are MATH-500 items, q3 the one AIME item: a pooled mean is MATH-500's, the macro is not
BENCH = {"q0": "math500", "q1": "math500", "q2": "math500", "q3": "aime2024"}


def judged(counts: list[int], n: int = 4) -> pd.DataFrame:
    return pd.DataFrame([{"prompt_id": f"q{i}", "correct": j < c, "benchmark": BENCH[f"q{i}"]}
                         for i, c in enumerate(counts) for j in range(n)])


def test_avg_and_pass_at_k_per_benchmark_and_their_macro_average():
    table = group_metrics(judged([4, 2, 0, 1]), [1, 2, 8])
    assert list(table.columns) == ["avg@4", "pass@2", "items"]  # pass@1 is avg@n; 8 > n
    assert table.loc["math500", "avg@4"] == pytest.approx(0.5)
    assert table.loc["math500", "pass@2"] == pytest.approx((1 + (1 - 1 / 6) + 0) / 3)
    assert table.loc["aime2024", "pass@2"] == pytest.approx(0.5) and table.loc["aime2024", "items"] == 1
    m = pass_by_benchmark(judged([4, 2, 0, 1]), [1, 2])
    assert m["macro"]["avg@4"] == pytest.approx((0.5 + 0.25) / 2)  # the pooled mean would be 7/16
    assert m["benchmarks"]["aime2024"] == {"avg@4": 0.25, "pass@2": 0.5, "items": 1}
    assert list(group_metrics(judged([4, 2]).drop(columns="benchmark"), [2]).index) == ["all"]


@pytest.fixture(scope="module")
def with_benchmarks(tmp_path_factory):
    """The synthetic study of test_report with a benchmark per item, a verify manifest and an
    eval that timed out."""
    root = tmp_path_factory.mktemp("bench")
    inputs = synthetic_inputs(root / "in")
    for key, path in inputs.items():
        if key.startswith("eval/"):
            df = pd.read_parquet(Path(path) / "samples.parquet")
            df.assign(benchmark=df["prompt_id"].map(BENCH)).to_parquet(Path(path) / "samples.parquet")
    (Path(inputs["eval/rl/A/0"]) / "metrics.json").write_text(json.dumps(
        {"timeouts": {"math": {"first_try": 2, "recovered": 2, "after_retry": 0}}}))
    verify_dir = root / "in" / "verify"
    verify_dir.mkdir()
    (verify_dir / "manifest.json").write_text(json.dumps(
        {"metrics": {"timeouts": {"math": {"first_try": 5, "recovered": 4, "after_retry": 1}}}}))
    inputs["verify"] = str(verify_dir)
    out = root / "out"
    out.mkdir()
    metrics = report.run(CFG, inputs, out, root / "work")
    return out, metrics, pd.read_csv(out / "results.csv").set_index("policy")


def test_results_csv_has_a_column_per_benchmark_metric_and_the_macro(with_benchmarks):
    _, _, df = with_benchmarks
    # A after SFT: [4, 0, 0 | 0] correct of 4; after RL: [4, 4, 0 | 0]
    assert df.loc["A", "offline_math500/avg@4"] == pytest.approx(1 / 3)
    assert df.loc["A", "offline_macro/avg@4"] == pytest.approx(1 / 6)  # pooled: 0.25
    assert df.loc["A", "offline_pass@1"] == pytest.approx(0.25)
    assert df.loc["A", "online_macro/avg@4"] == pytest.approx(1 / 3)
    assert df.loc["behavior", "offline_aime2024/pass@2"] == 1.0
    assert pd.isna(df.loc["behavior", "online_macro/avg@4"])  # never trained with RL


def test_report_md_has_table_2s_layout_and_the_timeouts(with_benchmarks):
    out, _, _ = with_benchmarks
    md = (out / "report.md").read_text()
    assert md.index("## Offline vs online") < md.index("## Per benchmark") < md.index("## Which offline")
    head = next(line for line in md.splitlines() if line.startswith("| benchmark | metric |"))
    assert head.startswith("| benchmark | metric | A/online | B/online | C/online | direct/online | base/offline")
    rows = [line for line in md.splitlines() if "| avg@4 |" in line or "| pass@2 |" in line]
    assert rows[0].startswith("| aime2024 | avg@4 |") and rows[-1].startswith("|  | pass@2 |")
    assert "| **macro** | avg@4 | 33.3 |" in md
    assert "## Verifier timeouts" in md
    assert "| verify | math | 5 | 4 | 1 |" in md and "| eval A/online | math | 2 | 2 | 0 |" in md


def test_one_benchmark_adds_no_section_and_no_columns(tmp_path):
    parsed = report.parse_inputs(synthetic_inputs(tmp_path / "in"))  # no benchmark column: one, "all"
    long = report_groups.long_table(parsed, [1, 2])
    assert long.empty and report_groups.section(long, ["A"]) == []
    df = pd.DataFrame({"policy": ["A"], "offline_pass@1": [0.5]})
    assert report_groups.add_columns(df, long).equals(df)
    assert report_groups.timeouts_section(report_groups.timeouts_table(parsed)) == []
