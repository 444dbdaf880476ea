"""The repository's text refers only to files it holds.

Every path into the repository that the README, docs/, the configs, the scripts and the
docstrings and comments of the code mention (``stages/sft.py``, ``conf/objective/<name>.yaml``,
``tests/test_verifiers*.py``) must exist, with ``<placeholder>`` and ``*`` matching any name and
``{a,b}`` either; every ``NAME.md`` in capitals must be a file of the repository; and nothing may
point outside it (a ``shared/`` notes folder, machine paths under ``/work/``).
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP = ("conf", "pipeline", "stages", "verifiers", "tests", "benchmarks", "scripts", "docs",
       "constraints", ".ci")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".txt", ".cfg"}
# a path into one of the repository's top folders, as written in prose or code
PATH = re.compile(r"(?<![\w./$-])((?:%s)/[\w./<>{}*,-]*[\w>*}/])" % "|".join(re.escape(t) for t in TOP))
CAPS_MD = re.compile(r"(?<![\w/.-])([A-Z][A-Z_]+\.md)\b")
OUTSIDE = re.compile(r"(?<![\w.-])(shared/|/work/)")


def text_files() -> list[Path]:
    """Tracked files (and new ones git does not ignore) that hold text we write."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    files = [ROOT / f for f in out.stdout.splitlines()]
    return [f for f in files if f.is_file() and (f.suffix in SUFFIXES or f.name == "run")
            and "data" not in f.relative_to(ROOT).parts[:2]]


def expand(pattern: str) -> list[str]:
    """``a/{b,c}/d`` -> ``a/b/d``, ``a/c/d`` (nested braces are not used)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    if "," not in m.group(1):  # an f-string field, {name}: any name
        return expand(pattern[:m.start()] + "*" + pattern[m.end():])
    return [x for alt in m.group(1).split(",")
            for x in expand(pattern[:m.start()] + alt + pattern[m.end():])]


def exists(ref: str) -> bool:
    for pat in expand(ref.rstrip("/")):
        glob = re.sub(r"<[^<>]*>", "*", pat)
        if "*" in glob:
            if not any(ROOT.glob(glob)):
                return False
        elif not (ROOT / glob).exists():
            return False
    return True


def broken_references(files: list[Path]) -> list[str]:
    names = {f.name for f in text_files()}
    out = []
    for f in files:
        rel = f.relative_to(ROOT) if f.is_relative_to(ROOT) else f.name
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            for ref in PATH.findall(line):
                ref = ref.rstrip(".,")
                if not exists(ref):
                    out.append(f"{rel}:{n}: {ref}")
            for md in CAPS_MD.findall(line):
                if md not in names:
                    out.append(f"{rel}:{n}: {md}")
            for m in OUTSIDE.findall(line):
                out.append(f"{rel}:{n}: {m} (outside the repository)")
    return out


def test_every_file_the_repository_mentions_is_in_it():
    me = Path(__file__).resolve()
    problems = broken_references([f for f in text_files() if f.resolve() != me])
    assert not problems, "references to files the repository does not hold:\n" + "\n".join(problems)


def test_the_check_finds_missing_files_placeholders_and_outside_paths(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("see DESIGN.md and docs/design.md, stages/nope.py, conf/objective/<name>.yaml,\n"
                   "conf/{task,model}/, conf/{task,nothing}/x.yaml and the notes in shared/x,\n"
                   "tests/test_verifiers*.py, stages/<stage>.py.\n")
    problems = [p.split(": ", 1)[1] for p in broken_references([doc])]
    assert problems == ["stages/nope.py", "DESIGN.md", "conf/{task,nothing}/x.yaml",
                        "shared/ (outside the repository)"]
