"""The code's layout: dependencies run one way, no import cycle, no module too long to read.

domain <- adapters <- handlers; on the tooling side client <- emulator <- CLI (with chaos and the build
tooling beside the CLI). Read from the sources' import statements, lazy ones included.
"""

import ast
from collections.abc import Iterator
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from carebus_local.template import PROJECT_ROOT

CODE_ROOTS = (PROJECT_ROOT / "src", PROJECT_ROOT / "local", PROJECT_ROOT / "functions")
LONGEST_MODULE = 450
DOMAIN_MAY_NOT_IMPORT = ("boto3", "botocore", "aws_lambda_powertools", "carebus.adapters")
# A package and the packages it may never import.
NEVER = {
    "carebus": ("carebus_client", "carebus_local", "carebus_cli", "carebus_chaos", "carebus_tooling"),
    "carebus_client": ("carebus_local", "carebus_cli", "carebus_chaos", "carebus_tooling"),
    "carebus_local": ("carebus_cli", "carebus_chaos", "carebus_tooling"),
    "carebus_chaos": ("carebus_cli",),
    "carebus_tooling": ("carebus_cli", "carebus_chaos"),
}


def modules() -> Iterator[tuple[str, Path]]:
    for root in CODE_ROOTS:
        for path in sorted(root.rglob("*.py")):
            if root.name == "functions":
                yield f"functions.{path.parent.name}.{path.stem}", path
            else:
                parts = path.relative_to(root).with_suffix("").parts
                yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports_of(path: Path) -> set[str]:
    """Every module an import statement names (lazy ones inside functions too; not TYPE_CHECKING ones)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def package_of(module: str) -> str:
    return module.split(".", 1)[0]


def test_no_module_is_longer_than_a_reader_can_hold():
    long = {name: n for name, path in modules() if (n := len(path.read_text().splitlines())) > LONGEST_MODULE}

    assert long == {}


def test_the_domain_knows_nothing_of_aws_or_of_its_adapters():
    leaks = {
        name: sorted(imported for imported in imports_of(path) if imported.startswith(DOMAIN_MAY_NOT_IMPORT))
        for name, path in modules()
        if name.startswith("carebus.") and not name.startswith("carebus.adapters")
    }

    assert {name: leaked for name, leaked in leaks.items() if leaked} == {}


@pytest.mark.parametrize("package", sorted(NEVER))
def test_dependencies_run_one_way(package):
    wrong = {
        name: sorted(imported for imported in imports_of(path) if package_of(imported) in NEVER[package])
        for name, path in modules()
        if package_of(name) == package
    }

    assert {name: imported for name, imported in wrong.items() if imported} == {}


def test_handlers_import_the_domain_and_libraries_but_no_tooling():
    tooling = {"carebus_client", "carebus_local", "carebus_cli", "carebus_chaos", "carebus_tooling"}
    wrong = {
        name: sorted(imported for imported in imports_of(path) if package_of(imported) in tooling)
        for name, path in modules()
        if name.startswith("functions.")
    }

    assert {name: imported for name, imported in wrong.items() if imported} == {}


def test_there_is_no_import_cycle():
    ours = dict(modules())
    graph = {
        name: {imported for imported in imports_of(path) if imported in ours and imported != name}
        for name, path in ours.items()
    }
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as cycle:
        pytest.fail(f"import cycle: {' -> '.join(cycle.args[1])}")
