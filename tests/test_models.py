"""Models by local path or hub id, and the pre-flight checks before any stage (no network)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pipeline import preflight
from pipeline.cli import CONF_DIR, build_dag, do_run
from pipeline.preflight import PreflightError, check_same_vocabulary, resolve_model

MISSING = "nobody-pipeline-test/no-such-model-1b"


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def other_vocab_model(tiny_models, tmp_path_factory) -> str:
    """The tiny behavior model with another tokenizer (trained on other text, other size)."""
    from stages.bootstrap import train_tokenizer

    out = tmp_path_factory.mktemp("other") / "model"
    shutil.copytree(tiny_models["behavior"], out)
    for f in out.glob("tokenizer*"):
        f.unlink()
    texts = [f"{a}*{b}={a * b};" for a in range(30) for b in range(30)]
    train_tokenizer(texts, vocab_size=40).save_pretrained(out)
    return str(out)


def _fake_cache(root: Path, repo: str, files: list[str]) -> Path:
    """The Hugging Face hub cache layout for ``repo`` at one commit, holding ``files``."""
    d = root / f"models--{repo.replace('/', '--')}"
    snap = d / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (d / "refs").mkdir()
    (d / "refs" / "main").write_text("0123abcd")
    for f in files:
        (snap / f).write_text("{}")
    return snap


def test_a_local_model_directory_is_used_as_is(tiny_models, offline):
    assert resolve_model(tiny_models["base"]) == tiny_models["base"]


def test_a_missing_or_non_model_path_is_named(tmp_path):
    with pytest.raises(PreflightError, match=r"does not exist"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(PreflightError, match=r"no config\.json"):
        resolve_model(str(tmp_path))


def test_a_cached_hub_model_resolves_offline(tmp_path, offline):
    snap = _fake_cache(tmp_path, "org/tiny", ["config.json", "model.safetensors"])
    assert resolve_model("org/tiny", cache_dir=tmp_path) == str(snap)


def test_a_hub_model_missing_offline_stops_with_how_to_provide_it(tmp_path, offline):
    _fake_cache(tmp_path, "org/partial", ["config.json", "tokenizer.json"])  # no weights yet
    for ref in (MISSING, "org/partial"):
        with pytest.raises(PreflightError) as e:
            resolve_model(ref, cache_dir=tmp_path)
        msg = str(e.value)
        assert ref in msg and f"hf download {ref}" in msg and "HF_HUB_OFFLINE" in msg
        assert "local copy" in msg


def test_online_a_hub_id_is_left_to_transformers(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(preflight, "hub_offline", lambda: False)
    assert resolve_model(MISSING, cache_dir=tmp_path) == MISSING


def test_tokenizers_that_differ_are_refused(tiny_models, other_vocab_model):
    check_same_vocabulary(tiny_models["base"], tiny_models["behavior"])
    with pytest.raises(PreflightError, match="different tokenizers") as e:
        check_same_vocabulary(tiny_models["base"], other_vocab_model)
    assert other_vocab_model in str(e.value) and "share a vocabulary" in str(e.value)


def _cfg(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"results_dir={tmp_path}", "+experiment=smoke",
                                            "cluster=inline", "model.bootstrap=null",
                                            *overrides])


def test_run_stops_before_any_stage_on_a_vocabulary_mismatch(tiny_models, other_vocab_model,
                                                            tmp_path, capsys):
    cfg = _cfg(tmp_path, f"model.base={tiny_models['base']}",
               f"model.behavior={other_vocab_model}")
    with pytest.raises(SystemExit, match="pre-flight check failed: .*different tokenizers"):
        do_run(cfg)
    assert not any((tmp_path / "smoke" / stage).exists() for stage in ("sample", "eval", "sft"))


def test_run_stops_before_any_stage_on_a_missing_hub_model(tiny_models, tmp_path, offline):
    cfg = _cfg(tmp_path, f"model.base={tiny_models['base']}", f"model.behavior={MISSING}")
    with pytest.raises(SystemExit, match=f"{MISSING}.*hf download {MISSING}"):
        do_run(cfg)
    assert not (tmp_path / "smoke" / "sample").exists()


def test_shared_vocabulary_passes_and_cached_studies_need_no_model(tiny_models, tmp_path):
    cfg = _cfg(tmp_path, f"model.base={tiny_models['base']}",
               f"model.behavior={tiny_models['behavior']}")
    dag = build_dag(cfg, explicit=False)
    preflight.check(cfg, dag)
    assert set(preflight.external_models(dag)) == {tiny_models["base"], tiny_models["behavior"]}
    gone = _cfg(tmp_path, f"model.base={MISSING}", f"model.behavior={MISSING}")
    dag = build_dag(gone, explicit=False)
    for nid in dag.order:  # pretend every stage is done: nothing to check
        dag.dir(nid).final.mkdir(parents=True, exist_ok=True)
        (dag.dir(nid).final / "manifest.json").write_text("{}")
    assert dag.dir("sample").complete()
    assert preflight.external_models(dag) == {}
    preflight.check(gone, dag)
