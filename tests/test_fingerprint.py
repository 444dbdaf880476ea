"""Cache keys follow the code and the external inputs that produce a stage's output.

The DAG tests fingerprint a copy of the project's ``stages/`` and ``verifiers/`` in a temporary
directory and edit the copy: the keys are those ``python -m pipeline plan`` would print.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from pipeline import external, fingerprint
from pipeline.cache import WORK_STAMP, StageDir, stage_key
from pipeline.cli import CONF_DIR, build_dag
from pipeline.execute import CodeChanged, Spec, execute

ROOT = Path(__file__).resolve().parent.parent
TWO = ("objectives=[sft,pear_token]", "seeds=null")


def compose_cfg(*overrides: str, results: Path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"results_dir={results}", *overrides])


def keys(*overrides: str, results: Path) -> dict[str, str]:
    dag = build_dag(compose_cfg(*TWO, *overrides, results=results), explicit=False)
    return {nid: n.key for nid, n in dag.nodes.items()}


def changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    assert a.keys() == b.keys()
    return {n for n in a if a[n] != b[n]}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {path.name}"
    path.write_text(text.replace(old, new))


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A copy of the project packages; fingerprints read it instead of the real sources."""
    root = tmp_path / "src"
    for pkg in fingerprint.PACKAGES:
        shutil.copytree(ROOT / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprint, "project_root", lambda: root)
    return root


def test_editing_a_verifiers_scoring_reruns_verify_and_what_follows_not_sampling(project, tmp_path):
    before = keys(results=tmp_path)
    edit(project / "verifiers" / "toy.py", "if int(got) == int(item.answer):",
         "if int(got) == int(item.answer.strip()):")
    after = keys(results=tmp_path)
    # verify and everything after it; eval and rl score with the verifier too
    assert changed(before, after) == set(before) - {"bootstrap", "sample"}
    # the toy world's generation is used by bootstrap and sample: both rerun
    edit(project / "verifiers" / "toy.py", "res = str(new)", "res = f\"{new}\"")
    assert {"bootstrap", "sample"} <= changed(after, keys(results=tmp_path))


def test_comments_docstrings_and_formatting_change_no_key(project, tmp_path):
    before = keys(results=tmp_path)
    report = project / "stages" / "report.py"
    report.write_text("# a comment on top\n" + report.read_text())
    edit(report, "def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:\n",
         "def run(cfg: dict, inputs: dict,\n        out: Path, work: Path) -> dict:  # wrapped\n"
         "    \"\"\"A docstring that was not there.\"\"\"\n")
    edit(project / "verifiers" / "toy.py", "got = found[-1]", "got = found[ -1 ]  # the last one")
    assert keys(results=tmp_path) == before


def test_code_of_the_report_reruns_the_report_only(project, tmp_path):
    before = keys(results=tmp_path)
    edit(project / "stages" / "report.py", 'PHASES = ("offline", "online")',
         'PHASES = ("offline", "online", )[:2]')
    assert changed(before, keys(results=tmp_path)) == {"report"}


def test_an_objective_edit_reruns_sft_and_what_follows(project, tmp_path):
    before = keys(results=tmp_path)
    pear = project / "stages" / "objectives" / "pear.py"
    edit(pear, "import math\n", "import math\nUNUSED = 1\n")
    assert keys(results=tmp_path) == before  # a name no stage reaches changes nothing
    edit(pear, "def pear_weights(", "def pear_weights(*_unused, ")
    dag = build_dag(compose_cfg(*TWO, results=tmp_path), explicit=False)
    after = {nid: n.key for nid, n in dag.nodes.items()}
    sfts = {n for n in after if n.startswith("sft[")}
    assert changed(before, after) == sfts | {d for s in sfts for d in dag.descendants(s)}


def test_a_library_upgrade_reruns_the_stages_that_import_it(project, tmp_path, monkeypatch):
    before = keys(results=tmp_path)
    real = external.importlib.metadata.version
    monkeypatch.setattr(external, "_LIB_CACHE", {})
    monkeypatch.setattr(fingerprint, "_INDEX", {})
    monkeypatch.setattr(external.importlib.metadata, "version",
                        lambda d: "99.0" if external._norm(d) == "trl" else real(d))
    after = keys(results=tmp_path)
    rl = {n for n in after if n.startswith("rl[")}
    assert rl and rl <= changed(before, after)
    assert not {"bootstrap", "sample", "verify", "score", "sft[sft]"} & changed(before, after)
    code = fingerprint.stage_code("rl")
    assert code["libraries"]["trl"] == "99.0" and "transformers" in code["libraries"]


def test_code_changed_after_planning_stops_the_stage_naming_the_modules(project, tmp_path):
    verify = build_dag(compose_cfg(*TWO, results=tmp_path), explicit=False).nodes["verify"]
    spec = Spec(id="verify", stage="verify", key=verify.key, cfg=verify.cfg, inputs={},
                input_keys={}, experiment_root=str(tmp_path / "exp"),
                provenance=verify.provenance)
    edit(project / "verifiers" / "toy.py", "_TAIL = 512", "_TAIL = 256")
    with pytest.raises(CodeChanged, match=r"verify: .*changed: verifiers\.toy"):
        execute(spec)
    assert not list((tmp_path / "exp" / "verify").glob(".tmp-*"))


def test_manifest_records_the_code_and_work_of_other_code_is_not_resumed(tmp_path):
    from verifiers import build_suite

    task = {"suite": "toy", "seed": 0, "sizes": {"train": 4, "rl": 4, "eval": 4},
            "pretrain_size": 10}
    rows = [{"prompt_id": it.id, "sample_idx": 0, "response": f"x;A{it.answer}"}
            for it in build_suite(task).items("train")]
    (tmp_path / "r").mkdir()
    pd.DataFrame(rows).to_parquet(tmp_path / "r" / "responses.parquet")
    cfg = {"task": task, "verify": {"min_correct": 1, "max_bad_fraction": 0.0}}
    code = fingerprint.stage_code("verify")
    spec = Spec(id="verify", stage="verify", key=stage_key("verify", 1, cfg, {}, code["digest"]),
                cfg=cfg, inputs={"responses": str(tmp_path / "r")}, input_keys={},
                experiment_root=str(tmp_path / "exp"), provenance={"code": code, "external": {}})
    sd = StageDir(tmp_path / "exp", "verify", spec.key)
    sd.work.mkdir(parents=True)
    (sd.work / "shard-00000.parquet").write_text("left by other code")
    (sd.work / WORK_STAMP).write_text("0123456789abcdef")
    assert execute(spec)["status"] == "done"
    manifest = json.loads((sd.final / "manifest.json").read_text())
    assert manifest["provenance"]["code"]["digest"] == code["digest"]
    assert "verifiers.toy" in manifest["provenance"]["code"]["modules"]
    assert "discarded resumable state" in sd.log.read_text()


def test_work_dirs_resume_only_under_the_same_code(tmp_path):
    sd = StageDir(tmp_path, "sample", "k")
    assert sd.open_work("aaa") == ""
    (sd.work / "shard-00000.parquet").write_text("x")
    assert sd.open_work("aaa") == "" and (sd.work / "shard-00000.parquet").is_file()
    assert "written by code aaa" in sd.open_work("bbb")
    assert not (sd.work / "shard-00000.parquet").exists()
    assert (sd.work / WORK_STAMP).read_text() == "bbb"
    (sd.work / WORK_STAMP).unlink()  # state from a pipeline that did not stamp it
    (sd.work / "shard-00000.parquet").write_text("x")
    assert "(no fingerprint)" in sd.open_work("bbb")


def test_local_paths_are_keyed_by_content(tmp_path, monkeypatch):
    monkeypatch.setattr(external, "SMALL_FILE", 16)
    model = tmp_path / "model"
    (model / ".cache").mkdir(parents=True)
    (model / "config.json").write_text('{"a": 1}')
    (model / "model.safetensors").write_bytes(b"w" * 64)
    fp = external.path_fingerprint(model)["digest"]
    (model / ".cache" / "download.lock").write_text("ignored")
    (model / "config.json").write_text('{"a": 1}')  # same content, new mtime: small files by hash
    assert external.path_fingerprint(model)["digest"] == fp
    (model / "config.json").write_text('{"a": 2}')  # same size, other content
    fp2 = external.path_fingerprint(model)["digest"]
    assert fp2 != fp
    st = (model / "model.safetensors").stat()
    os.utime(model / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert external.path_fingerprint(model)["digest"] != fp2  # large files by size and mtime
    data = tmp_path / "train.jsonl"
    data.write_text('{"q": 1}\n')
    cfg = {"task": {"path": str(data), "eval_path": [str(data)], "sources": [{"path": "nope"}]}}
    assert set(external.config_paths(cfg)) == {"task.path", "task.eval_path[0]",
                                               "task.sources[0].path"}
    fps = external.config_fingerprints(cfg)
    assert set(fps) == {"task.path", "task.eval_path[0]"}  # a missing one is left to the stage
    data.write_text('{"q": 2}\n')
    assert external.config_fingerprints(cfg)["task.path"]["digest"] != fps["task.path"]["digest"]


def test_model_paths_and_hub_revisions_reach_the_keys(tmp_path, monkeypatch):
    base, behavior = tmp_path / "base", tmp_path / "behavior"
    for d in (base, behavior):
        d.mkdir()
        (d / "config.json").write_text("{}")
    models = ("model.bootstrap=null", f"model.base={base}", f"model.behavior={behavior}")
    before = keys(*models, results=tmp_path)
    (base / "config.json").write_text('{"edited": true}')
    after = keys(*models, results=tmp_path)
    assert "sample" not in changed(before, after)  # sampling reads the behavior model only
    assert {"sft[sft]", "rl[direct]", "eval[base]"} <= changed(before, after)

    monkeypatch.setattr(external, "_HUB", {})
    hub = ("model.bootstrap=null", "model.base=org/base", "model.behavior=org/behavior")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = build_dag(compose_cfg(*TWO, *hub, results=tmp_path), explicit=False)
    rec = offline.nodes["sample"].provenance["external"]["model"]
    assert rec["source"] == "unresolved" and rec["revision"] is None and rec["note"] == "offline"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr("pipeline.preflight.hub_offline", lambda: False)
    shas = {"org/base": "b" * 40, "org/behavior": "c" * 40}
    monkeypatch.setattr(external, "_hub_sha", lambda ref: shas[ref])
    online = build_dag(compose_cfg(*TWO, *hub, results=tmp_path), explicit=False)
    rec = online.nodes["sample"].provenance["external"]["model"]
    assert rec == {"kind": "hub", "id": "org/behavior", "revision": "c" * 40, "source": "hub",
                   "digest": rec["digest"]}
    assert online.nodes["sample"].key != offline.nodes["sample"].key
    monkeypatch.setattr(external, "_HUB", {})
    shas["org/base"] = "d" * 40  # a new revision of the base model on the hub
    newer = build_dag(compose_cfg(*TWO, *hub, results=tmp_path), explicit=False)
    assert newer.nodes["sample"].key == online.nodes["sample"].key
    assert newer.nodes["sft[sft]"].key != online.nodes["sft[sft]"].key


def test_a_hub_id_offline_is_keyed_by_its_cached_snapshot(tmp_path, monkeypatch):
    monkeypatch.setattr(external, "_HUB", {})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = tmp_path / "models--org--m" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (tmp_path / "models--org--m" / "refs").mkdir()
    (tmp_path / "models--org--m" / "refs" / "main").write_text("a" * 40)
    rec = external.hub_fingerprint("org/m", cache_dir=tmp_path)
    assert rec["source"] == "cache" and rec["revision"] == "a" * 40
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("pipeline.preflight.hub_offline", lambda: False)
    monkeypatch.setattr(external, "_hub_sha", lambda ref: "a" * 40)
    assert external.hub_fingerprint("org/m", cache_dir=tmp_path)["digest"] == rec["digest"]


def test_normalisation_and_the_closure_of_a_stage():
    a = fingerprint.parse_module("m", "def f(x):\n    '''doc'''\n    return x + 1  # c\n", False)
    b = fingerprint.parse_module("m", "def f(x):   return (x+1)\n", False)
    c = fingerprint.parse_module("m", "def f(x):\n    return x + 2\n", False)
    assert a.units["f"][0].digest == b.units["f"][0].digest != c.units["f"][0].digest
    sample = fingerprint.stage_code("sample")
    assert {"stages.sample", "stages.engines.hf", "verifiers.toy"} <= set(sample["modules"])
    assert "stages.report" not in sample["modules"] and "pipeline" not in str(sample["modules"])
    assert "torch" in sample["libraries"] and "trl" not in sample["libraries"]
    assert {"stages.rl_engines.trl", "stages.rl_engines.verl"} <= set(
        fingerprint.stage_code("rl")["modules"])  # engines named by string in the registry
