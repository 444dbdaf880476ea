"""constraints/cpu.txt (written by scripts/lock.sh) against pyproject.toml, without network.

Every requirement of the base install and of the test and dev extras must be pinned there at a
version its specifier admits, and torch must be the CPU build; otherwise `pip install -c
constraints/cpu.txt -e ".[dev]"` fails (or installs something unpinned) and CI's
`scripts/lock.sh --check` reports a stale file. This test says which requirement is the reason.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "sft-rl-pipeline"


def pins(path: Path = ROOT / "constraints" / "cpu.txt") -> dict[str, Version]:
    """``name==version`` lines (comments and blank lines skipped) by canonical name."""
    out: dict[str, Version] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or req.marker or req.extras:
            raise ValueError(f"{path.name}:{n}: {line!r} is not a plain name==version pin")
        name = canonicalize_name(req.name)
        if name in out:
            raise ValueError(f"{path.name}:{n}: {req.name} is pinned twice")
        out[name] = Version(specs[0].version)
    return out


def requirements(extras: tuple[str, ...] = ("test", "dev")) -> list[Requirement]:
    """The base dependencies and those of ``extras``, this project's self-references left out."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    reqs = [Requirement(r) for r in lines]
    return [r for r in reqs if canonicalize_name(r.name) != PROJECT
            and (r.marker is None or r.marker.evaluate({"extra": ""}))]


def unmet(reqs: list[Requirement], pinned: dict[str, Version]) -> list[str]:
    """Each requirement that the pins do not satisfy, in words."""
    out = []
    for r in reqs:
        v = pinned.get(canonicalize_name(r.name))
        if v is None:
            out.append(f"{r}: not pinned")
        elif not r.specifier.contains(v, prereleases=True):
            out.append(f"{r}: pinned {v}")
    return out


def test_every_requirement_of_base_test_and_dev_is_pinned_at_an_admitted_version():
    problems = unmet(requirements(), pins())
    assert not problems, "constraints/cpu.txt is stale (bash scripts/lock.sh): " + "; ".join(problems)


def test_torch_is_pinned_as_the_cpu_build_and_verl_transformers_agree():
    p = pins()
    assert p["torch"].local == "cpu", p["torch"]  # a CUDA torch can never come from this file
    assert p["verl"] == Version("0.9.1") and p["transformers"] < Version("5.11")


def test_a_stale_file_is_reported_by_requirement(tmp_path):
    """The check can fail: a dropped pin, a pin outside a range, a malformed line."""
    good = pins()
    missing = {k: v for k, v in good.items() if k != "trl"}
    assert unmet(requirements(), missing) == ["trl==1.16.0: not pinned"]
    moved = {**good, "hydra-core": Version("1.3.2")}
    assert unmet(requirements(), moved) == ["hydra-core==1.3.8: pinned 1.3.2"]
    bad = tmp_path / "cpu.txt"
    for text in ("torch>=2.4\n", "torch==2.13.0\nTorch==2.13.0\n", "ray[default]==2.60.0\n"):
        bad.write_text(text)
        with pytest.raises(ValueError, match="cpu.txt:"):
            pins(bad)
