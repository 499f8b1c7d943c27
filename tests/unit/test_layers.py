"""The package's imports, read from the source (ast): no module imports a higher layer than its
own, and no import cycle, counting imports inside functions too (a lazy import is still a
dependency). The layers are written down here once; docs/architecture.md explains them.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "posttrain"

# Lowest first. A module may import its own layer and the layers below it. A package named here
# covers its submodules.
LAYERS = [
    ("foundation", ["posttrain", "posttrain.errors", "posttrain.config_fields", "posttrain.hub", "posttrain.rundir",
                    "posttrain.threads", "posttrain.models"]),
    ("pure domain: rewards and generated tasks", ["posttrain.rewards", "posttrain.tasks"]),
    ("the table of methods", ["posttrain.methods"]),
    ("recipes", ["posttrain.recipe"]),
    ("data and sampling", ["posttrain.chat_templates", "posttrain.sampling", "posttrain.data"]),
    ("models, evaluation, launching", ["posttrain.tiny", "posttrain.evaluation", "posttrain.launch"]),
    ("trainers", ["posttrain.trainers"]),
    ("runs and pipelines", ["posttrain.runs"]),
    ("experiments", ["posttrain.experiments"]),
    ("command line", ["posttrain.cli", "posttrain.__main__"]),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, found = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "posttrain" and module.startswith(prefix + "."))
            if matches and len(prefix) > best:
                best, found = len(prefix), index
    if found is None:
        raise AssertionError(f"{module} is in no layer; add it to LAYERS (and docs/architecture.md)")
    return found


def imports_of(module: str) -> set[str]:
    """posttrain modules `module` imports, anywhere in its file. `from a import b` counts as a
    dependency on the module a.b when that is a module, else on a."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "posttrain"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "posttrain":
                continue
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
    return {m for m in found if m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_import_names_a_module_of_the_package():
    missing = {(m, d) for m, deps in GRAPH.items() for d in deps if d not in MODULES}
    assert not missing


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state, stack = [], {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def upward_imports(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {d for d in deps if layer_of(d) > layer_of(m)} for m, deps in graph.items()
            if any(layer_of(d) > layer_of(m) for d in deps)}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_from_a_higher_layer(module):
    higher = upward_imports({module: GRAPH[module]}).get(module, set())
    assert not higher, (f"{module} (layer '{LAYERS[layer_of(module)][0]}') imports from higher layers: "
                        + ", ".join(f"{d} ('{LAYERS[layer_of(d)][0]}')" for d in sorted(higher)))


def test_no_import_cycles():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_layers_are_the_ones_docs_architecture_describes():
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    for name, prefixes in LAYERS:
        assert name in doc, f"docs/architecture.md does not name the layer '{name}'"
        for prefix in prefixes:
            if prefix != "posttrain":
                assert f"`{prefix.removeprefix('posttrain.')}" in doc, f"docs/architecture.md does not place {prefix}"


def test_the_checks_catch_the_faults_issue_11_measured():
    """Fed the graph the package had before the restructuring (recipe -> experiments -> runs ->
    trainers -> recipe; evaluation -> trainers for write_atomic), both checks fail as they should."""
    before = {"posttrain.recipe.check": {"posttrain.experiments.journey"},
              "posttrain.experiments.journey": {"posttrain.runs"},
              "posttrain.runs": {"posttrain.trainers.common"},
              "posttrain.trainers.common": {"posttrain.recipe.check"},
              "posttrain.evaluation.evaluate": {"posttrain.trainers.common"},
              "posttrain.data.loading": {"posttrain.data.decontaminate"},
              "posttrain.data.decontaminate": {"posttrain.data.loading"}}
    cycles = find_cycles(before)
    assert ["posttrain.data.decontaminate", "posttrain.data.loading", "posttrain.data.decontaminate"] in cycles
    four = {"posttrain.recipe.check", "posttrain.experiments.journey", "posttrain.runs", "posttrain.trainers.common"}
    assert any(set(c) == four for c in cycles)
    assert upward_imports(before) == {"posttrain.recipe.check": {"posttrain.experiments.journey"},
                                      "posttrain.evaluation.evaluate": {"posttrain.trainers.common"}}
