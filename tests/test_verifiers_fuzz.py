"""Adversarial completions against every suite: no exception, every call < 1 s, same verdict twice.

The driver is benchmarks/verifiers_fuzz.py. The default run scores a few hundred completions per
suite; ``pytest -m slow`` runs the full 10,000 per suite.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("verifiers_fuzz", ROOT / "benchmarks" / "verifiers_fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

SUITES = ["toy", "logic", "synlogic", "math"]


def _check(report: dict) -> None:
    assert report["errors"] == 0, report["examples"]
    assert report["slow"] == 0, report["examples"]
    assert report["unstable"] == 0, report
    assert report["real_ok"] == report["real_n"], report  # real answers: correct 1, near misses 0
    assert not os.path.exists(fuzz.PAYLOAD_FILE)


@pytest.mark.parametrize("suite", SUITES)
def test_fuzz_subset(suite):
    _check(fuzz.run_suite(suite, n=300, seed=1))


@pytest.mark.slow
@pytest.mark.parametrize("suite", SUITES)
def test_fuzz_full(suite):
    _check(fuzz.run_suite(suite, n=10_000, seed=0))
