"""W&B tracking (pipeline/tracking.py): mode, secret scrubbing, and an offline run read back."""
from __future__ import annotations

import json

import pandas as pd

from pipeline import tracking
from pipeline.execute import Spec


def test_scrub_redacts_secret_keys_and_secret_env_values(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_sentinel_value_123")
    cfg = {"model": {"path": "org/model", "api_key": "abc12345", "hf_token": None},
           "urls": ["https://user:hf_sentinel_value_123@host/x"], "lr": 1e-3}
    out = tracking.scrub(cfg)
    assert out["model"] == {"path": "org/model", "api_key": tracking.REDACTED, "hf_token": None}
    assert out["urls"] == [tracking.REDACTED] and out["lr"] == 1e-3
    for key in ("WANDB_API_KEY", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "db-password", "apiKey"):
        assert tracking.is_secret_key(key), key
    for key in ("max_new_tokens", "tokenizer", "TOKENIZERS_PARALLELISM", "num_tokens", "keys"):
        assert not tracking.is_secret_key(key), key


def test_mode_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert tracking.resolve_mode("auto") == "offline"
    assert tracking.resolve_mode("disabled") == "disabled"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai login user password not-read\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert tracking.resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert tracking.resolve_mode("auto") == "offline"
    assert tracking.settings({"backend": "none"}, "x", tmp_path) == {"backend": "none"}
    s = tracking.settings({"backend": "wandb", "mode": "auto"}, "toy", tmp_path,
                          sweep={"id": "multirun-1", "job": 0})
    assert s["group"] == "toy" and s["mode"] == "offline" and "sweep:multirun-1" in s["tags"]


def test_a_stage_run_offline_holds_config_curves_summary_and_the_report_table(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SECRET_THING", "sentinel-secret-42")
    t = tracking.settings({"backend": "wandb", "mode": "offline", "project": "p"}, "exp", tmp_path)
    spec = Spec(id="report", stage="report", key="k123", cfg={"report": {"ks": [1, 8]}},
                inputs={}, input_keys={"eval/base": "abc"}, experiment_root=str(tmp_path),
                tracking=t)
    from stages.common import tracker, tracking_callback

    track = tracking.begin(spec)
    assert tracker() is track
    cb = tracking_callback("sft")
    state = type("S", (), {"global_step": 3})()
    cb.on_log(None, state, None, logs={"loss": 0.5, "learning_rate": 1e-3, "flag": True})
    df = pd.DataFrame({"policy": ["a", "b"], "offline_pass@1": [0.1, 0.3],
                       "online_pass@1": [0.5, float("nan")]})
    tracker().log_report(
        {"offline_online": df},
        [{"key": "slope/pass@1", "kind": "line_series", "xs": [0, 1],
          "ys": [[0.1, 0.5], [0.3, float("nan")]], "keys": ["a", "b"], "title": "slope",
          "xname": "phase"},
         {"key": "proxy/offline_pass@1", "kind": "scatter", "table": "offline_online",
          "x": "offline_pass@1", "y": "online_pass@1", "title": "scatter"}], {})
    tracking.end(track, {"objectives": 2, "nested": {"x": 1.5}, "rows": [{"a": 1}],
                         "note": "uses sentinel-secret-42"})
    assert type(tracker()).__name__ == "NullTracker"

    runs = tracking.offline_runs(tmp_path)
    assert len(runs) == 1
    r = tracking.read_offline_run(runs[0])
    assert (r["run"]["group"], r["run"]["job_type"], r["run"]["name"]) == ("exp", "report", "report")
    assert r["config"]["report"] == {"ks": [1, 8]} and r["config"]["_node"]["key"] == "k123"
    assert any(h.get("sft/loss") == 0.5 and h.get("_step") == 3 for h in r["history"])
    assert r["summary"]["objectives"] == 2 and r["summary"]["nested/x"] == 1.5
    assert r["summary"]["note"] == tracking.REDACTED
    table = r["summary"]["offline_online"]
    assert table["_type"] == "table-file" and table["nrows"] == 2
    rows = json.loads((r["files"] / table["path"]).read_text())
    assert rows["columns"] == ["policy", "offline_pass@1", "online_pass@1"]
    assert rows["data"][0] == ["a", 0.1, 0.5] and rows["data"][1][2] is None
    assert "slope/pass@1_table" in r["summary"] and "proxy/offline_pass@1_table" in r["summary"]
    blob = b"".join(p.read_bytes() for p in runs[0].rglob("*") if p.is_file())
    assert b"sentinel-secret-42" not in blob
    assert "wandb sync" in tracking.sync_hint(tmp_path)


def test_tracking_off_or_failing_never_breaks_a_stage(tmp_path):
    spec = Spec(id="x", stage="eval", key="k", cfg={}, inputs={}, input_keys={},
                experiment_root=str(tmp_path), tracking={"backend": "none"})
    assert tracking.begin(spec) is None
    tracking.end(None, {"a": 1})
    bad = Spec(id="x", stage="eval", key="k", cfg={}, inputs={}, input_keys={},
               experiment_root=str(tmp_path),
               tracking={"backend": "wandb", "mode": "no-such-mode", "project": "p", "group": "g",
                         "dir": str(tmp_path)})
    assert tracking.begin(bad) is None  # wandb.init raised: logged, stage goes on untracked
    tracking.end(None, None)
