"""Code fingerprints: which project code and library versions produce a stage's output.

A stage's fingerprint is part of its cache key (``pipeline/dag.py``), so an edit to the code that
computes an output reruns that stage, and, since every key holds its inputs' keys, everything
downstream of it. It is computed from the source files, never by importing them (``plan`` stays
fast and imports no torch), and cached per process until a source file's content changes.

What counts, per stage:

* **Code reachable from the stage module**, at the level of top-level definitions. The stage
  module ``stages/<stage>.py`` counts whole; from there the closure follows the names its code
  loads (``common.progress``, ``from verifiers.toy import solve``, imports inside functions,
  re-exports through ``__init__``), across the project packages ``stages`` and ``verifiers``.
  A class counts by its header (bases, decorators, class-level statements) plus the methods whose
  names reachable code uses as attributes anywhere (``suite.items(...)`` pulls in every reachable
  class's ``items``; dunder methods always count). So the sample stage, which calls a suite's
  ``items`` but never its ``score``, keeps its key when a verifier's scoring changes, and the
  verify stage, which calls ``score``, does not. Modules named in string constants (registries
  such as ``"stages.rl_engines.trl"``, ``python -m stages.sft_worker``, ``"verl_reward.py"``)
  count whole.
* **Normalised source**: each definition is hashed as ``ast.dump`` of its parse tree with
  docstrings removed, so comments, docstrings and formatting never change a key.
* **Library versions that change results** (``RESULT_LIBS`` in ``pipeline/external.py``) that
  the reachable code imports (or runs, ``-m verl.trainer.main_ppo``), plus those libraries' own
  requirements among them (trl brings transformers, accelerate, ...), and Python's major.minor.
  Runtime-only libraries (tqdm, W&B, Ray, Hydra, filelock) do not count.

Not seen: names computed at run time (``getattr(obj, some_string_variable)``, an import of a
module name built from pieces), and non-Python files under the packages. Code of ``pipeline/``
(the runner) does not count: it decides where and when a stage runs, not what it computes.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.external import RESULT_LIBS, library_versions

#: project packages whose code produces stage outputs
PACKAGES = ("stages", "verifiers")

def _hash(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@dataclass
class Unit:
    """One top-level definition (or class header, method, module-level statement)."""

    digest: str
    chains: set[tuple[str, ...]] = field(default_factory=set)  # dotted names it loads
    attrs: set[str] = field(default_factory=set)                # attribute names it uses
    strings: set[str] = field(default_factory=set)              # string constants
    imports: list[tuple[str, str | None]] = field(default_factory=list)  # (module, name) inside it


def _scan(node: ast.AST, module: str, is_pkg: bool) -> Unit:
    """Names, attributes, strings and local imports of one definition."""
    u = Unit(_hash(ast.dump(node)))
    consumed: set[int] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute):
            u.attrs.add(n.attr)
            if id(n) in consumed:
                continue
            parts, cur = [n.attr], n.value
            while isinstance(cur, ast.Attribute):
                consumed.add(id(cur))
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                consumed.add(id(cur))
                u.chains.add((cur.id, *reversed(parts)))
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and id(n) not in consumed:
            u.chains.add((n.id,))
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            u.strings.add(n.value)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and len(n.args) > 1 \
                and n.func.id in ("getattr", "hasattr", "setattr") \
                and isinstance(n.args[1], ast.Constant) and isinstance(n.args[1].value, str):
            u.attrs.add(n.args[1].value)  # getattr(obj, "name") uses obj.name
        elif isinstance(n, ast.Import):  # inside a function: the module itself counts
            u.imports.extend((a.name, None) for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            u.imports.extend((m, name) for m, name, _ in _import_targets(n, module, is_pkg))
    return u


def _import_targets(node: ast.Import | ast.ImportFrom, module: str, is_pkg: bool):
    """(module, name or None, bound alias) for each name an import statement binds."""
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.asname:
                yield a.name, None, a.asname
            else:  # `import a.b` binds `a`
                yield a.name.split(".")[0], None, a.name.split(".")[0]
        return
    base = node.module or ""
    if node.level:
        pkg = module.split(".") if is_pkg else module.split(".")[:-1]
        pkg = pkg[:len(pkg) - (node.level - 1)]
        base = ".".join([*pkg, *([node.module] if node.module else [])])
    for a in node.names:
        yield base, a.name, a.asname or a.name


@dataclass
class Module:
    name: str
    units: dict[str, list[Unit]] = field(default_factory=dict)        # name -> its definitions
    methods: dict[str, dict[str, Unit]] = field(default_factory=dict)  # class -> method -> unit
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # alias -> target
    prelude: list[Unit] = field(default_factory=list)  # other statements, run on import


def parse_module(name: str, source: str, is_pkg: bool) -> Module:
    tree = _strip_docstrings(ast.parse(source))
    mod = Module(name)
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for m, n, alias in _import_targets(stmt, name, is_pkg):
                mod.imports[alias] = (m, n)
        elif isinstance(stmt, ast.ClassDef):
            meths = [s for s in stmt.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))]
            header = ast.ClassDef(name=stmt.name, bases=stmt.bases, keywords=stmt.keywords,
                                  body=[s for s in stmt.body if s not in meths] or [ast.Pass()],
                                  decorator_list=stmt.decorator_list)
            mod.units.setdefault(stmt.name, []).append(_scan(header, name, is_pkg))
            mod.methods[stmt.name] = {m.name: _scan(m, name, is_pkg) for m in meths}
            for u in mod.methods[stmt.name].values():  # the same method in another class differs
                u.digest = _hash(stmt.name, u.digest)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mod.units.setdefault(stmt.name, []).append(_scan(stmt, name, is_pkg))
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            unit = _scan(stmt, name, is_pkg)
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        mod.units.setdefault(n.id, []).append(unit)
        else:  # if/try/with/expressions at module level: run whenever the module is imported
            mod.prelude.append(_scan(stmt, name, is_pkg))
            for n in ast.walk(stmt):
                if isinstance(n, (ast.Import, ast.ImportFrom)):
                    for m, nm, alias in _import_targets(n, name, is_pkg):
                        mod.imports.setdefault(alias, (m, nm))
    return mod


class CodeIndex:
    """The parsed project packages under ``root``; ``stage(name)`` is a stage's fingerprint."""

    def __init__(self, modules: Mapping[str, Module]) -> None:
        self.modules = modules
        self.basenames: dict[str, list[str]] = {}
        for m in modules:
            self.basenames.setdefault(m.rsplit(".", 1)[-1] + ".py", []).append(m)
        self._stages: dict[str, dict] = {}

    def stage(self, stage: str) -> dict:
        """``{"digest", "modules": {module: digest}, "libraries": {dist: version}}``."""
        if stage not in self._stages:
            self._stages[stage] = _Closure(self).of(f"stages.{stage}")
        return self._stages[stage]


class _Closure:
    def __init__(self, index: CodeIndex) -> None:
        self.ix = index
        self.units: dict[int, tuple[str, Unit]] = {}  # id(unit) -> (module, unit)
        self.classes: set[tuple[str, str]] = set()
        self.attrs: set[str] = set()
        self.external: set[str] = set()
        self.touched: set[str] = set()
        self.wholes: set[str] = set()
        self.todo: list[tuple[str, Unit]] = []

    def of(self, root: str) -> dict:
        if root not in self.ix.modules:
            raise ValueError(f"no module {root} among the project's sources")
        self.whole(root)
        while True:
            while self.todo:
                self.visit(*self.todo.pop())
            grown = [(m, u) for m, c in self.classes
                     for name, u in self.ix.modules[m].methods[c].items()
                     if id(u) not in self.units and (name in self.attrs or _dunder(name))]
            if not grown:
                break
            for m, u in grown:
                self.add(m, u)
        per_module: dict[str, list[str]] = {}
        for m, u in self.units.values():
            per_module.setdefault(m, []).append(u.digest)  # no traversal order in it
        modules = {m: _hash(*sorted(v)) for m, v in sorted(per_module.items())}
        libs = library_versions(frozenset(self.external))
        return {"digest": _hash(repr(sorted(modules.items())), repr(sorted(libs.items()))),
                "modules": modules, "libraries": libs}

    def add(self, module: str, unit: Unit) -> None:
        if id(unit) not in self.units:
            self.units[id(unit)] = (module, unit)
            self.todo.append((module, unit))
            self.touch(module)

    def touch(self, module: str) -> None:
        """Importing a module runs its prelude and its parent packages' preludes."""
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            m = ".".join(parts[:i])
            if m in self.ix.modules and m not in self.touched:
                self.touched.add(m)
                for u in self.ix.modules[m].prelude:
                    self.add(m, u)

    def whole(self, module: str) -> None:
        if module in self.wholes:
            return
        self.wholes.add(module)
        mod = self.ix.modules[module]
        self.touch(module)
        for name in mod.units:
            self.name(module, name)
        for meths in mod.methods.values():
            for u in meths.values():
                self.add(module, u)

    def name(self, module: str, name: str) -> None:
        mod = self.ix.modules[module]
        for u in mod.units.get(name, ()):
            self.add(module, u)
        if name in mod.methods:
            self.classes.add((module, name))

    def visit(self, module: str, unit: Unit) -> None:
        self.attrs |= unit.attrs
        for chain in unit.chains:
            self.resolve(module, chain, 0)
        for target, name in unit.imports:
            self.target(target, (name,) if name else (), 0)
        for s in unit.strings:
            if "." in s and s in self.ix.modules:
                self.whole(s)
            elif "." in s and s.split(".")[0] in RESULT_LIBS and s.replace(".", "").isidentifier():
                self.external.add(s.split(".")[0])  # `python -m verl.trainer.main_ppo`
            for m in self.ix.basenames.get(s.rsplit("/", 1)[-1], ()) if s.endswith(".py") else ():
                self.whole(m)

    def resolve(self, module: str, chain: tuple[str, ...], depth: int) -> None:
        mod = self.ix.modules[module]
        head = chain[0]
        if head in mod.units:
            self.name(module, head)
        elif head in mod.imports and depth < 20:
            target, sym = mod.imports[head]
            self.target(target, ((sym,) if sym else ()) + chain[1:], depth + 1)

    def target(self, module: str, rest: tuple[str, ...], depth: int) -> None:
        """``module`` imported, then attributes ``rest`` looked up on it."""
        top = module.split(".")[0]
        if top not in PACKAGES:
            if top:
                self.external.add(top)
            return
        while rest and f"{module}.{rest[0]}" in self.ix.modules:
            module, rest = f"{module}.{rest[0]}", rest[1:]
        if module not in self.ix.modules:
            return
        self.touch(module)
        if rest:
            self.resolve(module, rest, depth)
        else:  # the module object itself is used: all of it counts
            self.whole(module)


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def project_root() -> Path:
    """The directory holding the project packages (the one Python imports them from)."""
    spec = importlib.util.find_spec(PACKAGES[0])
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"cannot locate the {PACKAGES[0]!r} package")
    return Path(list(spec.submodule_search_locations)[0]).resolve().parent


def _sources(root: Path) -> dict[str, tuple[bytes, bool]]:
    """Module name -> (source bytes, is a package) for every module of the project packages."""
    out = {}
    for pkg in PACKAGES:
        for p in sorted((root / pkg).rglob("*.py")):
            rel = p.relative_to(root).with_suffix("")
            is_pkg = rel.name == "__init__"
            out[".".join(rel.parts[:-1] if is_pkg else rel.parts)] = (p.read_bytes(), is_pkg)
    return out


_PARSED: dict[tuple[str, str], Module] = {}  # (module, hash of its source) -> parsed
_INDEX: dict[Path, tuple[tuple, CodeIndex]] = {}


class _Parsed(Mapping):
    """Module name -> :class:`Module`, each parsed when first looked up (a stage checked in a
    worker parses only the modules it reaches)."""

    def __init__(self, sources: dict[str, tuple[bytes, bool]], stamp: tuple) -> None:
        self.sources, self.hashes = sources, dict(stamp)

    def __getitem__(self, m: str) -> Module:
        k = (m, self.hashes[m])
        if k not in _PARSED:
            _PARSED[k] = parse_module(m, self.sources[m][0].decode(), self.sources[m][1])
        return _PARSED[k]

    def __contains__(self, m: object) -> bool:
        return m in self.hashes

    def __iter__(self):
        return iter(self.hashes)

    def __len__(self) -> int:
        return len(self.hashes)


def index(root: Path | None = None) -> CodeIndex:
    """The packages under ``root`` (default: where Python imports them from). Cached per process:
    the sources are read each time (a few hundred kB) and a file is parsed again only when its
    content changed."""
    root = Path(root).resolve() if root else project_root()
    sources = _sources(root)
    stamp = tuple((m, hashlib.sha1(src).hexdigest()) for m, (src, _) in sources.items())
    cached = _INDEX.get(root)
    if cached is None or cached[0] != stamp:
        cached = _INDEX[root] = (stamp, CodeIndex(_Parsed(sources, stamp)))
    return cached[1]


def stage_code(stage: str, root: Path | None = None) -> dict:
    """The code fingerprint of ``stage``: ``{"digest", "modules", "libraries"}``."""
    return index(root).stage(stage)


def changed_modules(old: dict, new: dict) -> list[str]:
    """Modules (and libraries) whose part of two fingerprints differs, for messages."""
    mods = sorted(m for m in {*old.get("modules", {}), *new.get("modules", {})}
                  if old.get("modules", {}).get(m) != new.get("modules", {}).get(m))
    libs = sorted(f"{d} {old.get('libraries', {}).get(d)} -> {new.get('libraries', {}).get(d)}"
                  for d in {*old.get("libraries", {}), *new.get("libraries", {})}
                  if old.get("libraries", {}).get(d) != new.get("libraries", {}).get(d))
    return mods + libs
