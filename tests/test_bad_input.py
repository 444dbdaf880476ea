"""Bad input gives a clear error and loses nothing: one test per row of README's error table."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from pipeline.cache import StageDir, stage_key
from pipeline.cli import CONF_DIR, build_dag, check_gpus, check_writable
from pipeline.dag import Dag, Node
from pipeline.execute import Spec, execute
from pipeline import runner

ROOT = Path(__file__).resolve().parent.parent
TASK = {"suite": "toy", "seed": 0, "sizes": {"train": 6, "rl": 4, "eval": 4}, "pretrain_size": 10}


def cli(*args: str, command: str = "plan", cwd: Path = ROOT):
    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_RESULTS", "HYDRA_FULL_ERROR")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "pipeline", command, *args], cwd=cwd, env=env,
                          text=True, capture_output=True, timeout=120)


def one_line_error(proc) -> str:
    """The single ``config error:`` line of a refused command (no traceback)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("config error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def responses(tmp_path: Path, rows: list[dict]) -> str:
    d = tmp_path / "responses"
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(d / "responses.parquet")
    return str(d)


def verify_spec(tmp_path: Path, rows: list[dict], **verify) -> Spec:
    cfg = {"task": TASK, "verify": {"min_correct": 1, "max_bad_fraction": 0.2, **verify}}
    src = responses(tmp_path, rows)
    return Spec(id="verify", stage="verify", key=stage_key("verify", 1, cfg, {"r": src}), cfg=cfg,
                inputs={"responses": src}, input_keys={"r": src}, experiment_root=str(tmp_path / "exp"))


def items():
    from verifiers import build_suite

    return build_suite(TASK).items("train")


@pytest.mark.parametrize("override,listed", [("objective=nope", "pear_token"),
                                             ("task=nope", "toy"), ("sampler=nope", "hf"),
                                             ("rl=nope", "trl")])
def test_unknown_group_choice_lists_the_valid_names(override, listed, tmp_path):
    proc = cli(override, f"results_dir={tmp_path}")
    assert proc.returncode != 0
    assert "Could not find" in proc.stderr and listed in proc.stderr


def test_unknown_engine_name_lists_the_valid_engines():
    from stages.engines import make_engine
    from stages.rl_engines import load

    with pytest.raises(ValueError, match="valid engines: .*hf"):
        make_engine("x", {"engine": "gpt"})
    with pytest.raises(ValueError, match="valid engines: .*trl"):
        load("nope")


def test_unknown_cluster_kind(tmp_path):
    node = Node("verify", "verify", {}, {})
    dag = Dag([node], tmp_path)
    with pytest.raises(ValueError, match="valid: local, ray, inline"):
        runner.run(dag, {"kind": "slurm"}, echo=lambda s: None)


def test_missing_model_path_is_named(tmp_path):
    from stages.engines import make_engine

    missing = tmp_path / "no-such-model"
    with pytest.raises(OSError, match=str(missing.name)):
        make_engine(str(missing), {"engine": "hf", "device": "cpu"})


def test_tokenizers_that_differ_are_refused(tiny_models, tmp_path):
    import json

    from stages.common import load_tokenizer
    from stages.sft import check_same_vocabulary

    tok = load_tokenizer(tiny_models["base"])
    (tmp_path / "vocab.json").write_text(json.dumps({**tok.get_vocab(), "<extra>": 999}))
    with pytest.raises(ValueError, match="differs from the behavior"):
        check_same_vocabulary(tok, str(tmp_path))
    (tmp_path / "vocab.json").write_text(json.dumps(tok.get_vocab()))
    check_same_vocabulary(tok, str(tmp_path))


def test_no_correct_response_after_verification_fails_with_reasons(tmp_path):
    rows = [{"prompt_id": it.id, "sample_idx": 0, "response": "1+1=2;A2" if it.answer != "2" else "A3"}
            for it in items()]
    with pytest.raises(ValueError, match="only 0 of 6 responses verified correct.*wrong answer"):
        execute(verify_spec(tmp_path, rows))


def test_malformed_rows_are_skipped_counted_and_fail_above_the_threshold(tmp_path):
    good = [{"prompt_id": it.id, "sample_idx": 0, "response": f"A{it.answer}"} for it in items()]
    bad = [{"prompt_id": "not-an-item", "sample_idx": 0, "response": "A1"}]
    result = execute(verify_spec(tmp_path / "a", good + bad, max_bad_fraction=0.2))
    assert result["metrics"]["malformed_rows"] == 1 and result["metrics"]["responses"] == 6
    with pytest.raises(ValueError, match="3 of 9 response rows are malformed"):
        execute(verify_spec(tmp_path / "b", good + bad * 3, max_bad_fraction=0.2))


def test_non_finite_behavior_logprobs_fail_naming_the_rows(tiny_models, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from stages import score
    from stages.common import load_tokenizer

    broken = tmp_path / "broken"
    model = AutoModelForCausalLM.from_pretrained(tiny_models["behavior"])
    with torch.no_grad():
        model.lm_head.weight[:] = float("nan")
    model.save_pretrained(broken)
    load_tokenizer(tiny_models["behavior"]).save_pretrained(broken)
    data = tmp_path / "verified"
    data.mkdir()
    pd.DataFrame([{"prompt_id": "toy-1", "sample_idx": 3, "prompt_ids": [5, 6], "response_ids": [7, 8],
                   "sample_logprobs": [-1.0, -1.0], "correct": True}]).to_parquet(data / "verified.parquet")
    cfg = {"score": {"nan_policy": "fail", "shard_size": 8, "topk": 0},
           "engine": {"engine": "hf", "device": "cpu", "dtype": "float32", "batch_size": 4}}
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    work.mkdir()
    with pytest.raises(ValueError, match=r"non-finite behavior log-probs, e.g. \['toy-1#3'\]"):
        score.run(cfg, {"data": str(data), "model": str(broken)}, out, work)


def test_eval_split_overlapping_training_prompts_is_refused():
    from stages.eval import check_disjoint
    from verifiers.base import Item

    class Leaky:
        def items(self, split):
            return [Item(id=f"{split}-1", prompt="2+2=", answer="4")]

    with pytest.raises(ValueError, match="shares 1 prompts with the 'train' split"):
        check_disjoint(Leaky(), "eval")


def test_results_directory_that_is_not_writable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(SystemExit, match="is not writable"):
        check_writable(blocker / "results")


def test_disk_full_while_writing_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    import stages.verify as verify

    def full_disk(df, out, name):
        (Path(out) / name).write_bytes(b"PAR1 half a parquet file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(verify, "write_table", full_disk)
    rows = [{"prompt_id": it.id, "sample_idx": 0, "response": f"A{it.answer}"} for it in items()]
    spec = verify_spec(tmp_path, rows)
    with pytest.raises(OSError, match="No space left"):
        execute(spec)
    sd = StageDir(Path(spec.experiment_root), "verify", spec.key)
    assert not sd.final.exists() and not list(sd.root.glob(".tmp-*"))
    monkeypatch.undo()
    assert execute(spec)["status"] == "done"  # the re-run after freeing space completes


def test_gpu_experiment_on_a_machine_without_gpus_stops_before_work(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"results_dir={tmp_path}", "resources.default.num_gpus=1"])
    dag = build_dag(cfg, explicit=False)
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit, match="asks for 1 GPU"):
        check_gpus(dag, {"kind": "local"})
    assert not any((tmp_path / "toy").glob("*/*/manifest.json"))


def test_unknown_objective_parameter_fails_its_stage_naming_it(tiny_models, tmp_path):
    from stages.objectives import get_objective

    fn = get_objective("pear_token").fn
    with pytest.raises(TypeError, match="bogus"):
        fn(None, bogus=1)


def test_verl_rl_counts_the_gpus_of_verls_own_workers(tmp_path):
    from pipeline.cli import gpus_needed

    node = Node("rl[sft]", "rl", {"rl": {"engine": "verl", "n_gpus_per_node": 8}}, {},
                {"num_gpus": 0})
    assert gpus_needed(node) == 8
    dag = Dag([node], tmp_path)
    import torch

    if torch.cuda.device_count() < 8:
        with pytest.raises(SystemExit, match="asks for 8 GPU"):
            check_gpus(dag, {"kind": "local"})


def test_an_unknown_key_is_refused_with_or_without_plus_naming_the_closest_key(tmp_path):
    for line in ("sft.learning_rate=1e-4", "+sft.learning_rate=1e-4"):
        proc = cli(line, f"results_dir={tmp_path}", command="run")
        assert one_line_error(proc) == \
            "config error: unknown key sft.learning_rate; did you mean sft.lr?"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("override,message", [
    ("sample.n=0", "sample.n = 0: must be >= 1"),
    ("sft.lr=-1e-4", "sft.lr = -0.0001: must be > 0"),
    ("objectives=[sft,pear_tokn]", "unknown objective 'pear_tokn'; did you mean pear_token?"),
    ("cluster.kind=slurm", "cluster.kind = 'slurm': must be one of inline, local, ray"),
])
def test_a_config_error_stops_the_run_before_any_work_in_one_line(override, message, tmp_path):
    proc = cli(override, f"results_dir={tmp_path}", command="run")
    assert message in one_line_error(proc)
    assert "cached" not in proc.stdout and "to run" not in proc.stdout  # no plan, no Ray
    assert not list(tmp_path.iterdir())  # no stage directory, no .work- left behind


def test_debug_keeps_the_traceback_of_a_config_error(tmp_path):
    proc = cli("sample.n=0", "--debug", f"results_dir={tmp_path}", command="run")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "sample.n = 0: must be >= 1" in proc.stderr


def test_results_go_to_the_same_place_from_any_directory(tmp_path):
    proc = cli("+experiment=smoke", command="plan", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"plan for {ROOT / 'results' / 'smoke'}:" in proc.stdout
    assert not list(tmp_path.iterdir())  # no results/ (or Hydra output) where it was run


def test_plan_status_and_a_refused_run_write_nothing(tmp_path):
    from pipeline.gpus import local_gpu_count

    results = tmp_path / "results"
    for command in ("plan", "status"):
        proc = cli("+experiment=synlogic_qwen3_1p7b", f"results_dir={results}", command=command)
        assert proc.returncode == 0, proc.stderr
    if local_gpu_count() < 8:  # the experiment asks for 8 GPUs: refused before any work
        proc = cli("+experiment=synlogic_qwen3_1p7b", f"results_dir={results}", command="run")
        assert proc.returncode != 0 and "asks for 8 GPU(s)" in proc.stderr
    assert not results.exists()
