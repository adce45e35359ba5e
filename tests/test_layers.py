"""The package's house rules, read from its source (ast): imports flow one way, from the command line down to the
tools, the service, recognition and the core; no cycles; every package ships in the wheel."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "shelfsense"

# Lowest first. A module may import its own layer or any layer below it, never one above (docs/architecture.md).
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "shelfsense",
        "shelfsense.errors",
        "shelfsense.types",
        "shelfsense.locations",
        "shelfsense.tomlvalues",
        "shelfsense.thermalconfig",
        "shelfsense.config",
        "shelfsense.config",
        "shelfsense.shelfconfig",
    ),
    ("shelfsense.recognition", "shelfsense.footage"),
    ("shelfsense.shelf",),  # shelf state and events: reads recognition's results, served by the service
    ("shelfsense.service",),
    (
        "shelfsense.client",
        "shelfsense.tools",
        "shelfsense.synth",
        "shelfsense.bench",
        "shelfsense.training",
    ),
    ("shelfsense.cli",),
)


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def layer_of(module: str) -> int:
    best = None
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            # the root package names itself only: its modules each need their own entry
            inside = module.startswith(prefix + ".") and prefix != "shelfsense"
            if (module == prefix or inside) and (best is None or len(prefix) > len(best[1])):
                best = (level, prefix)
    if best is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md")
    return best[0]


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Package modules that `module` imports anywhere in its file: top level, inside functions, under TYPE_CHECKING."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            # the longest known module the name refers to (a name imported from a module is not a module)
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name.startswith("shelfsense"):
                found.add(name)
    # a package's own __init__ is loaded by any import of its modules: not an edge of its own
    return {m for m in found if not (known[m].name == "__init__.py" and module.startswith(m + "."))}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def test_every_module_has_a_layer() -> None:
    for module in modules():
        layer_of(module)


def test_imports_flow_downward() -> None:
    upward = [
        f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
        for m, targets in graph().items()
        for t in sorted(targets)
        if layer_of(t) > layer_of(m)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycles.append(path[path.index(t) :] + [t])
            elif t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_service_never_imports_tooling() -> None:
    service = {m: t for m, t in graph().items() if layer_of(m) <= layer_of("shelfsense.service")}
    assert all(layer_of(t) <= layer_of("shelfsense.service") for targets in service.values() for t in targets)


def test_every_package_ships_in_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert packages <= listed, f"add to [tool.setuptools] packages: {sorted(packages - listed)}"


@pytest.mark.parametrize("bad", ["shelfsense.cli.main", "shelfsense.tools.replay"])
def test_the_check_sees_an_upward_import(bad: str, tmp_path: Path) -> None:
    """The rule itself can fail: a recognition module importing a higher layer is reported."""
    fake = tmp_path / "fake.py"
    fake.write_text(f"def late():\n    from {bad} import something\n")
    found = imports("shelfsense.recognition.fake", fake, {**modules(), "shelfsense.recognition.fake": fake})
    assert found == {bad}
    assert layer_of(bad) > layer_of("shelfsense.recognition.fake")


def test_a_module_outside_every_layer_is_reported() -> None:
    with pytest.raises(AssertionError, match="belongs to no layer"):
        layer_of("shelfsense.somewhere_new")
