"""The ``[gpu]`` extra (``verl[vllm]==0.9.1``) resolves together with the base install.

The resolution is a ``pip install --dry-run`` against PyPI (no big wheel is downloaded): about
30-65 s, so it is marked ``slow``. Run it as ``pytest -m slow tests/test_gpu_extra.py`` or on its
own, printing what pip picks::

    python tests/test_gpu_extra.py
"""
from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEY = ("vllm", "torch", "transformers", "verl", "trl", "ray", "flashinfer-python", "sft-rl-pipeline")


def resolve_gpu_extra(workdir: Path) -> dict[str, str]:
    """Every distribution pip would install for ``sft-rl-pipeline[gpu]``, by name -> version.

    Only pyproject.toml and README.md are copied (a fresh project, so nothing of the working tree
    is built); ``--ignore-installed`` makes pip resolve everything, not just what is missing."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, workdir / name)
    report = workdir / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                    "--quiet", "--report", str(report), f"{workdir}[gpu]"],
                   check=True, capture_output=True, text=True, timeout=600)
    rows = json.loads(report.read_text())["install"]
    return {r["metadata"]["name"].lower().replace("_", "-"): r["metadata"]["version"] for r in rows}


def _extra(name: str) -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][name]


def test_gpu_extra_pins_verl_with_vllm_and_base_allows_its_transformers():
    """No network: the installed verl's own metadata says what its [vllm] extra pins."""
    from packaging.requirements import Requirement

    gpu = {Requirement(r).name: Requirement(r) for r in _extra("gpu")}
    assert str(gpu["verl"]) == "verl[vllm]==0.9.1"
    pins = {Requirement(r).name: Requirement(r).specifier
            for r in importlib.metadata.requires("verl") or [] if 'extra == "vllm"' in r}
    assert {"vllm", "torch", "transformers"} <= set(pins)
    base = {Requirement(r).name: Requirement(r).specifier
            for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    for name in ("transformers", "torch"):
        pinned = next(iter(pins[name])).version           # e.g. ==5.9.0
        assert base[name].contains(pinned), (name, str(base[name]), pinned)
    # the extra's own transformers cap (verl's range) admits what verl's [vllm] extra pins
    assert gpu["transformers"].specifier.contains(next(iter(pins["transformers"])).version)


@pytest.mark.slow
def test_gpu_extra_resolves_with_pip(tmp_path):
    v = resolve_gpu_extra(tmp_path)
    assert v["verl"] == "0.9.1" and v["sft-rl-pipeline"] == "0.1.0"
    assert v["vllm"] == "0.24.0" and v["torch"] == "2.11.0" and v["transformers"] == "5.9.0"
    assert v["trl"] == "1.16.0"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        versions = resolve_gpu_extra(Path(d))
    for k in KEY:
        print(f"{k:18} {versions.get(k, '-')}")
