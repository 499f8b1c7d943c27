"""Read a config dataclass's fields from its source code, without importing it.

Validating a recipe's `trainer:` block against `trl.SFTConfig` by importing TRL costs ~5 s
(it imports torch and transformers). Parsing the dataclass sources with `ast` costs a few
milliseconds and gives the same field names, annotations and defaults; a unit test checks the
result against `dataclasses.fields` of the real classes, so the two cannot drift apart.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


NO_DEFAULT = object()  # a field whose default is not a literal (a factory, an expression)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    annotation: str  # source text, e.g. "int | None"
    choices: tuple | None = None
    default: object = NO_DEFAULT  # the declared default when it is a literal


def _default(value: ast.expr | None):
    """The declared default of `name: T = value`: a literal, `field(default=literal)`, or
    `field(default_factory=list/dict/lambda: literal)`; NO_DEFAULT otherwise."""
    if value is None:
        return NO_DEFAULT
    if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "field":
        for kw in value.keywords:
            if kw.arg == "default":
                return _default(kw.value)
            if kw.arg == "default_factory":
                factory = kw.value
                if isinstance(factory, ast.Name) and factory.id in ("list", "dict"):
                    return [] if factory.id == "list" else {}
                if isinstance(factory, ast.Lambda):
                    return _default(factory.body)
        return NO_DEFAULT
    try:
        return ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return NO_DEFAULT


def _module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    return Path(spec.origin)


@lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _find_class(module: str, name: str) -> tuple[str, ast.ClassDef]:
    """Find class `name` as seen from `module`, following `from X import name` re-exports."""
    tree = _parse(_module_file(module))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return module, node
    package = module if _module_file(module).name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names):
            source = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([source] if source else []))
            return _find_class(source, name)
    # Lazy packages (transformers) declare re-exports as text under TYPE_CHECKING.
    text = _module_file(module).read_text(encoding="utf-8")
    match = re.search(rf"from \.([\w.]+) import {name}\b", text)
    if match:
        return _find_class(f"{package}.{match.group(1)}", name)
    raise LookupError(f"class {name} not found from module {module}")


_LIST_INTRO = re.compile(r"(?:Must be one of|Supported values are|Possible values are|One of)\s*:?\s*", re.I)
_QUOTED = re.compile(r"`?['\"]?`?(\w+)`?['\"]?`?")
_SEPARATORS = re.compile(r"[\s,]+|\bor\b|\band\b")


def _listed_choices(help_text: str) -> tuple | None:
    """The values a field's help lists as its only ones ("Possible values are: `'sigmoid'`,
    `'hinge'`, ..." in TRL's configs), or None. Conservative: the list must be a sentence of
    quoted names and nothing else, so a help that explains its values in prose gives none
    (checking against half a list would reject good values)."""
    for intro in _LIST_INTRO.finditer(help_text):
        end = re.search(r"\.(?:\s|$)", help_text[intro.end():])
        sentence = help_text[intro.end(): intro.end() + end.start()] if end else help_text[intro.end():]
        names = re.findall(r"`?['\"]([\w-]+)['\"]`?|`([\w-]+)`", sentence)
        rest = re.sub(r"`?['\"][\w-]+['\"]`?|`[\w-]+`", "", sentence)
        if len(names) >= 2 and not _SEPARATORS.sub("", rest).strip(":;"):
            return tuple(a or b for a, b in names)
    return None


def _choices(value: ast.expr | None) -> tuple | None:
    if not (isinstance(value, ast.Call) and getattr(value.func, "id", "") == "field"):
        return None
    for kw in value.keywords:
        if kw.arg == "metadata" and isinstance(kw.value, ast.Dict):
            for key, val in zip(kw.value.keys, kw.value.values):
                if isinstance(key, ast.Constant) and key.value == "choices":
                    try:
                        return tuple(ast.literal_eval(val))
                    except ValueError:
                        return None
            for key, val in zip(kw.value.keys, kw.value.values):
                if isinstance(key, ast.Constant) and key.value == "help":
                    try:
                        return _listed_choices(str(ast.literal_eval(val)))
                    except ValueError:
                        return None
    return None


@lru_cache(maxsize=None)
def dataclass_fields(module: str, name: str) -> dict[str, FieldSpec]:
    """Fields of dataclass `module.name` and its dataclass bases; subclasses override."""
    module, cls = _find_class(module, name)
    fields: dict[str, FieldSpec] = {}
    for base in cls.bases:
        base_name = ast.unparse(base).rpartition(".")[2]
        if base_name in {"object", "Generic", "PushToHubMixin"}:
            continue
        try:
            fields.update(dataclass_fields(module, base_name))
        except LookupError:
            pass  # a non-dataclass mixin defined elsewhere contributes no fields
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            annotation = ast.unparse(node.annotation)
            if annotation.startswith("ClassVar"):
                continue
            fields[node.target.id] = FieldSpec(node.target.id, annotation, _choices(node.value), _default(node.value))
    return fields


# --- checking a YAML value against an annotation's source text ----------------------------

_SCALARS = {"int": int, "float": (int, float), "bool": bool, "str": str, "dict": dict, "list": list}


def _alternatives(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _alternatives(node.left) + _alternatives(node.right)
    if isinstance(node, ast.Subscript):
        head = ast.unparse(node.value).rpartition(".")[2]
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head == "Optional":
            return [*inner, ast.Constant(None)]
        if head == "Union":
            return [alt for item in inner for alt in _alternatives(item)]
    return [node]


def _matches(value, node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None and value is None or isinstance(node.value, str)
    if isinstance(node, ast.Subscript):
        head = ast.unparse(node.value).rpartition(".")[2]
        if head == "Literal":
            inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            return value in [ast.literal_eval(i) for i in inner]
        return _matches(value, node.value)
    name = ast.unparse(node).rpartition(".")[2]
    expected = _SCALARS.get(name)
    if expected is None:
        return True  # enums, Any, classes: the real dataclass checks these at run time
    if expected is int or expected == (int, float):
        return isinstance(value, expected) and not isinstance(value, bool)
    return isinstance(value, expected)


def value_matches(value, annotation: str) -> bool:
    """Whether a YAML value fits a dataclass annotation (loosely: enums accept any string)."""
    node = ast.parse(annotation, mode="eval").body
    return any(_matches(value, alt) for alt in _alternatives(node))


@lru_cache(maxsize=None)
def enum_values(module: str, name: str) -> tuple[str, ...]:
    """The string values of enum class `module.name` (`NAME = "value"` lines), read from source."""
    _, cls = _find_class(module, name)
    return tuple(node.value.value for node in cls.body
                 if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                 and isinstance(node.value.value, str))
