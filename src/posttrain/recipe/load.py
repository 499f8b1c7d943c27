"""Reading a recipe: YAML (with posttrain's number rules), `extends:` chains, command-line
overrides, and where every value came from (file and line, or an override), so that an error
anywhere later can name it. Knows nothing of what the keys mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import yaml

from posttrain.errors import RecipeError

KeyPath = tuple[Union[str, int], ...]


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that also reads `5e-4` as a float: YAML 1.1 (PyYAML) wants `5.0e-4`, and a
    learning rate silently read as a string is the classic recipe bug. Nor are `24:00:00` or
    `1:30` base-60 numbers (YAML 1.1): they stay strings, as in YAML 1.2 (a SLURM time limit)."""


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NUMBER_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)
_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _no_duplicate_keys(loader, node, deep=False):
    """A mapping that names a key twice is an error (YAML would silently keep the last)."""
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key '{key}' appears twice in one mapping (lines {seen[key]} and "
                f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_RecipeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              lambda loader, node: _no_duplicate_keys(loader, node))

MAX_VALUES = 100_000  # values in a recipe once its aliases are expanded (an "alias bomb" grows exponentially)


def _yaml_load(text: str):
    return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass


def _expanded_size(node: yaml.Node, memo: dict) -> int:
    """How many values `node` holds with every alias expanded, counted without expanding them."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a cycle counts once
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, memo) for item in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


@dataclass(frozen=True)
class Origin:
    """Where a value came from: a file and line, or a command-line override. `with_overrides`
    names overrides below a key set in a file (an error about the block they changed)."""

    file: Path | None = None
    line: int | None = None
    override: str | None = None
    with_overrides: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.override is not None:
            return f"command-line override '{self.override}'"
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        if self.with_overrides:
            where += " (with command-line override " + ", ".join(f"'{o}'" for o in self.with_overrides) + ")"
        return where

    @property
    def base_dir(self) -> Path:
        return self.file.parent if self.file else Path.cwd()


def dotted(path: KeyPath) -> str:
    return ".".join(str(p) for p in path)


def _line_map(node: yaml.Node, path: KeyPath = ()) -> dict[KeyPath, int]:
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = path + (key.value,)
            lines.update(_line_map(value, child))
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_map(item, path + (i,)))
    return lines


def _read_yaml(path: Path) -> tuple[dict, dict[KeyPath, Origin]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(str(path), "", "file not found") from None
    except OSError as exc:
        raise RecipeError(str(path), "", f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RecipeError(f"{path}:{line}", "", f"not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                          "save the recipe as UTF-8") from None
    try:
        node = yaml.compose(text, Loader=_RecipeLoader)
        size = _expanded_size(node, {}) if node is not None else 0
        if size > MAX_VALUES:
            raise RecipeError(str(path), "", f"{size:,} values once its YAML aliases (*name) are expanded; "
                              f"a recipe may hold at most {MAX_VALUES:,}")
        data = _yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(where, "", f"invalid YAML: {problem}") from None
    if data is None:
        data, node = {}, None
    if not isinstance(data, dict):
        raise RecipeError(str(path), "", "a recipe must be a YAML mapping of keys to values")
    lines = _line_map(node) if node is not None else {}
    return data, {p: Origin(path, line) for p, line in lines.items()}


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def merge_origins(
    base: dict[KeyPath, Origin], over: dict[KeyPath, Origin], over_data: dict
) -> dict[KeyPath, Origin]:
    """Origins after `merge(base_data, over_data)`: the overriding file wins below any key it
    replaced outright (scalars and lists replace, mappings merge)."""
    replaced = [p for p in over if p and not isinstance(_get(over_data, p), dict)]
    kept = {p: o for p, o in base.items() if not any(p[: len(r)] == r for r in replaced)}
    kept.update(over)
    return kept


def _get(data, path: KeyPath):
    for part in path:
        data = data[part]
    return data


def _load_with_extends(path: Path, chain: tuple[Path, ...]) -> tuple[dict, dict[KeyPath, Origin]]:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise RecipeError(str(chain[-1]), "extends", f"extends cycle: {cycle}")
    data, origins = _read_yaml(path)
    parents = data.pop("extends", None)
    if parents is None:
        return data, origins
    if isinstance(parents, str):
        parents = [parents]
    if not (isinstance(parents, list) and all(isinstance(p, str) for p in parents)):
        raise RecipeError(str(origins[("extends",)]), "extends", "expected a path or a list of paths")
    merged, merged_origins = {}, {}
    for parent in parents:
        parent_path = path.parent / parent
        if not parent_path.is_file():
            raise RecipeError(
                str(origins[("extends",)]), "extends",
                f"file not found: {parent_path} (paths are relative to the recipe file)",
            )
        parent_data, parent_origins = _load_with_extends(parent_path, (*chain, path))
        merged_origins = merge_origins(merged_origins, parent_origins, parent_data)
        merged = merge(merged, parent_data)
    origins.pop(("extends",), None)
    return merge(merged, data), merge_origins(merged_origins, origins, data)


def apply_override(data: dict, origins: dict[KeyPath, Origin], override: str) -> None:
    """Apply `a.b.c=value` in place; the value is parsed as YAML (`1e-3`, `true`, `[1, 2]`)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise RecipeError("command line", override, "an override must look like key.path=value")
    try:
        value = _yaml_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError("command line", key, f"cannot parse value {text!r} as YAML: {problem}") from None
    if any(not part.strip() for part in key.strip().split(".")):
        raise RecipeError("command line", key.strip(), "a key path has an empty part (two dots, or a dot at an "
                          "end); write it as a.b.c=value")
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    target = data
    for i, part in enumerate(parts[:-1]):
        nxt = target[part] if isinstance(target, list) and isinstance(part, int) and part < len(target) \
            else (target.get(part) if isinstance(target, dict) else None)
        if nxt is None:
            if isinstance(target, list):
                raise RecipeError("command line", key, f"list index {part} is out of range")
            nxt = target[part] = {}
        if not isinstance(nxt, (dict, list)):
            raise RecipeError(
                "command line", key, f"'{dotted(tuple(parts[: i + 1]))}' is a value, not a mapping"
            )
        target = nxt
    last = parts[-1]
    if isinstance(target, list):
        if not isinstance(last, int) or last >= len(target):
            raise RecipeError("command line", key, f"list index {last} is out of range")
    target[last] = value
    path = tuple(parts)
    for p in [p for p in origins if p[: len(path)] == path]:
        del origins[p]
    origins[path] = Origin(override=override)


def locate(origins: dict[KeyPath, Origin], source: Path, path: KeyPath) -> Origin:
    """Where `path` was set: the deepest key on it that a file or an override named. When that is
    a file but overrides changed keys below `path`, they are named too: the error may be theirs."""
    found = Origin(source)
    for end in range(len(path), -1, -1):
        if path[:end] in origins:
            found = origins[path[:end]]
            break
    if found.override is None:
        below = tuple(o.override for p, o in origins.items()
                      if o.override is not None and len(p) > len(path) and p[: len(path)] == path)
        if below:
            found = Origin(found.file, found.line, None, tuple(dict.fromkeys(below)))
    return found


def read_recipe(path: Path, overrides=()) -> tuple[dict, dict[KeyPath, Origin]]:
    """The recipe's data after `extends:` and the overrides, and each value's origin."""
    data, origins = _load_with_extends(path, ())
    for override in overrides:
        apply_override(data, origins, override)
    return data, origins

