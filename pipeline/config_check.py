"""Config errors before any work: the composed config checked against ``pipeline/schema.py``.

Two checks, both pure functions:

* :func:`check_overrides` reads the command line's overrides before Hydra composes anything: a
  key the schema does not know (``sft.learning_rate=1e-4``, with or without Hydra's ``+``)
  stops with the closest known key (``did you mean sft.lr?``) instead of Hydra's hint to add
  it with ``+``;
* :func:`validate` checks the composed config: every key known (so ``+`` cannot add one the
  stages would silently carry into their cache keys), every value of its type and in its range
  (``sample.n = 0: must be >= 1``), and the rules across groups (``eval.ks`` within ``eval.n``,
  known objectives, ...).

Both raise :class:`ConfigError`, whose message has one line per problem, each naming the key.
Hydra's ``+`` adds a key even to a struct config (``OmegaConf.update(..., force_add=True)``), so
refusing extras needs the schema: composition alone cannot.
"""
from __future__ import annotations

import types
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from pipeline.schema import Config
from pipeline.schema_base import suggest


class ConfigError(ValueError):
    """A config the study cannot run; one line per problem, each naming its key."""


# ---- walking the schema by key ---------------------------------------------------------------

FREE = object()  # any key is accepted below this node (a mapping passed through as it is)


@dataclass(frozen=True)
class AnyKey:
    """Below ``dict[str, X]``: every key, each of type X."""

    value: Any


def _unwrap(ann: Any, meta: Sequence[Any] = ()) -> tuple[Any, list[Any]]:
    """(bare type, constraints) of an annotation, Annotated[...] layers removed."""
    meta = list(meta)
    while get_origin(ann) is Annotated:
        base, *extra = get_args(ann)
        for x in extra:
            meta.extend(x.metadata if isinstance(x, FieldInfo) else [x])
        ann = base
    return ann, meta


def _annotation(node: Any) -> tuple[Any, list[Any]]:
    if isinstance(node, FieldInfo):
        return _unwrap(node.annotation, node.metadata)
    return _unwrap(node)


def _members(node: Any) -> list[Any]:
    """The types a value may have: a union's members (flattened) without None, or the type."""
    ann, _ = _annotation(node)
    if get_origin(ann) in (Union, types.UnionType):
        return [m for a in get_args(ann) if a is not type(None) for m in _members(a)]
    return [ann]


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _tag(model: type[BaseModel]) -> Any:
    """The value of a model's tag field (the first single-valued Literal), if it has one."""
    for f in model.model_fields.values():
        if get_origin(f.annotation) is Literal and len(get_args(f.annotation)) == 1:
            return get_args(f.annotation)[0]
    return None


def _children(node: Any) -> dict[str, list[Any]] | AnyKey | object | None:
    """The keys below a node, each with its schema nodes (one per union member that has it),
    AnyKey for ``dict[str, X]``, FREE when any key goes, None for a leaf."""
    out: dict[str, list[Any]] = {}
    for m in _members(node):
        if _is_model(m):
            if m.model_config.get("extra") == "allow":
                return FREE
            for name, f in m.model_fields.items():
                out.setdefault(f.alias or name, []).append(f)
        elif m is dict or m is Any or get_origin(m) is dict:
            value = get_args(m)[1] if get_args(m) else Any
            return FREE if value is Any else AnyKey(value)
    return out or None


def _list_item(node: Any) -> Any:
    return next((get_args(m)[0] for m in _members(node) if get_origin(m) is list), None)


def unknown_key(path: Sequence[str], choice: str | None = None) -> str | None:
    """None if the schema knows the dotted key ``path``, else a message with the closest key.
    ``choice``: the file chosen for the group ``path[0]`` names (e.g. objective ``sft``), if
    known; else a key of any of the group's files is known."""
    nodes: list[Any] = [Config]
    for i, part in enumerate(path):
        if i == 1 and choice is not None:
            nodes = [m for n in nodes for m in _members(n) if _is_model(m) and _tag(m) == choice] \
                or nodes
        found: list[Any] = []
        known: set[str] = set()
        for node in nodes:
            kids = _children(node)
            if kids is FREE:
                return None
            if part.isdigit() and _list_item(node) is not None:
                found.append(_list_item(node))
            elif isinstance(kids, AnyKey):
                found.append(kids.value)
            elif kids:
                known.update(kids)
                found += kids.get(part, [])
        if not found:
            where = ".".join(path[:i])
            hint = suggest(part, sorted(known), f"{where}." if where else "")
            listed = f" (keys of {where or 'the config'}: {', '.join(sorted(known))})" \
                if known and not hint else ""
            return f"unknown key {'.'.join(path[:i + 1])}{hint}{listed}"
        nodes = found
    return None


def check_overrides(overrides: Sequence[str], groups: Collection[str],
                    defaults: Mapping[str, str] | None = None) -> None:
    """Refuse command-line overrides of keys the schema does not know, before Hydra composes.

    Group choices (``objective=NAME``, ``+experiment=NAME``; ``groups`` names them), ``hydra.*``
    and deletions (``~key``) are left to Hydra, which lists valid choices itself. A key below a
    group is checked against the file chosen on the command line or, failing that, in
    ``defaults`` (group -> file), else against every file of the group."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser, parsed = OverridesParser.create(), []
    for line in overrides:
        try:
            parsed += parser.parse_overrides([line])
        except HydraException:
            pass  # Hydra reports its own syntax errors
    chosen = dict(defaults or {})
    chosen.update({o.key_or_group: o.value() for o in parsed if o.key_or_group in groups and
                   o.package is None and not o.is_sweep_override() and isinstance(o.value(), str)})
    problems = []
    for o in parsed:
        key = o.key_or_group
        if o.package is not None or o.is_delete() or key in groups or key.split(".")[0] == "hydra" \
                or "/" in key:
            continue
        problem = unknown_key(key.split("."), chosen.get(key.split(".")[0]))
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError("\n".join(problems))


# ---- the composed config -------------------------------------------------------------------------

def validate(cfg: Any) -> Config:
    """Check a composed config (DictConfig or plain mapping) against the schema; return the
    validated model or raise :class:`ConfigError` naming every key that is wrong."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(cfg, DictConfig):
        try:
            data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None)
            first = str(e).strip().splitlines()[0]
            raise ConfigError(f"{key}: {first}" if key else first) from None
    else:
        data = dict(cfg)
    assert isinstance(data, Mapping)
    data = {k: v for k, v in data.items() if k != "hydra"}
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError("\n".join(describe(e.errors()))) from None


def _constraints(node: Any) -> list[Any]:
    """The range constraints at a node, also inside ``X | None``."""
    ann, meta = _annotation(node)
    if not meta and get_origin(ann) in (Union, types.UnionType):
        for a in get_args(ann):
            meta += _unwrap(a)[1]
    return meta


def _range(meta: Sequence[Any]) -> str:
    lo = next(((f"[{m.ge}", f">= {m.ge}") for m in meta if isinstance(m, Ge)), None) or \
        next(((f"({m.gt}", f"> {m.gt}") for m in meta if isinstance(m, Gt)), None)
    hi = next(((f"{m.le}]", f"<= {m.le}") for m in meta if isinstance(m, Le)), None) or \
        next(((f"{m.lt})", f"< {m.lt}") for m in meta if isinstance(m, Lt)), None)
    if lo and hi:
        return f"in {lo[0]}, {hi[0]}"
    return (lo or hi or ("", ""))[1]


def _locate(loc: Sequence[Any]) -> tuple[str, Any, list[str]]:
    """(dotted key, schema node at it, sibling keys) of a pydantic error location; the tag of a
    tagged union in ``loc`` is skipped (task.toy.sizes -> task.sizes), the member label of a
    scalar union (sft.fsdp.bool) ends the key."""
    node: Any = Config
    parts: list[str] = []
    siblings: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{part}]"]
            node = _list_item(node) or Any
            continue
        members = _members(node)
        models = [m for m in members if _is_model(m)]
        tagged = [m for m in models if _tag(m) == part] if len(models) > 1 else []
        if tagged:
            node = tagged[0]
            continue
        if len(members) > 1 and not models:
            break
        kids = _children(node)
        parts.append(str(part))
        if isinstance(kids, AnyKey):
            node = kids.value
        elif isinstance(kids, dict):
            siblings, node = sorted(kids), kids.get(part, [Any])[0]
        else:
            node = Any
    return ".".join(parts), node, siblings


def describe(errors: list[dict[str, Any]]) -> list[str]:
    """One line per problem (several pydantic errors at one key, e.g. of a union, make one)."""
    lines: dict[str, list[str]] = {}
    shown: dict[str, str] = {}
    for err in errors:
        key, node, siblings = _locate(err["loc"])
        kind, value = err["type"], err.get("input")
        msg = err["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
        if kind == "extra_forbidden":
            parent, _, name = key.rpartition(".")
            hint = suggest(name, [s for s in siblings if s != name], f"{parent}." if parent else "")
            shown[key] = f"unknown key {key}{hint}"
            continue
        if kind == "missing":
            shown[key] = f"{key} is missing"
            continue
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            tag = str(err["ctx"]["discriminator"]).strip("'")
            key = f"{key}.{tag}" if key else tag
            tags = [t.strip(" '") for t in str(err["ctx"].get("expected_tags", "")).split(",")]
            got = err["ctx"].get("tag")
            shown[key] = (f"{key} = {got!r}: must be one of {', '.join(tags)}"
                          f"{suggest(str(got), tags)}" if got is not None else f"{key} is missing")
            continue
        if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            msg = f"must be {_range(_constraints(node))}"
        if key in lines:  # another member of a union: "must be a valid boolean or a valid string"
            msg = msg.removeprefix("must be ")
        lines.setdefault(key, []).append(msg)
        if key and not isinstance(value, Mapping):
            shown.setdefault(key, f"{key} = {value!r}: ")
        else:
            shown.setdefault(key, "")
    out = []
    for key, text in shown.items():
        if key in lines:
            text += " or ".join(dict.fromkeys(lines[key]))
        out.append(text)
    return out
