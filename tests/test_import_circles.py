"""No import circle anywhere in the tree: a module never imports, directly or through
others, a module that imports it.

The packages (``service``, ``bench``, ``tests``) are read by grimp, import-linter's
own graph library (``make lint-imports`` checks the layers of ``service`` with it);
imports under ``TYPE_CHECKING`` count too. The script folders (``scripts``,
``examples``) are no packages: their files import each other by top-level name
through ``sys.path``, so their imports of a sibling file are read from the source.
The circles are found by the standard library's ``graphlib``.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "bench", "tests")
SCRIPT_FOLDERS = ("scripts", "examples")


def package_imports(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports."""
    graph = grimp.build_graph(package, cache_dir=None)
    return {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}


def folder_imports(folder: Path) -> dict[str, set[str]]:
    """Script -> the scripts of the same folder it imports (by their top-level name)."""
    siblings = {path.stem for path in folder.glob("*.py")}
    imports: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        imports[path.stem] = (names & siblings) - {path.stem}
    return imports


def circle(imports: dict[str, set[str]]) -> list[str] | None:
    """One import circle (its modules, the first repeated at the end), or None."""
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as exc:
        found: list[str] = exc.args[1]
        return found
    return None


@pytest.mark.spawns
@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_in_a_circle(package: str) -> None:
    imports = package_imports(package)
    assert len(imports) > 5, "the graph holds the package's modules"
    found = circle(imports)
    assert found is None, f"import circle in {package}: {' -> '.join(found or ())}"


@pytest.mark.parametrize("folder", SCRIPT_FOLDERS)
def test_no_script_folder_imports_in_a_circle(folder: str) -> None:
    found = circle(folder_imports(ROOT / folder))
    assert found is None, f"import circle in {folder}/: {' -> '.join(found or ())}"


def test_a_circle_is_found() -> None:
    # The check itself: bench/run.py and bench/paced.py imported each other (issue 31).
    assert circle({"bench.run": {"bench.paced"}, "bench.paced": {"bench.run"}}) is not None
    assert circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    scripts = folder_imports(ROOT / "scripts")
    assert scripts["gen_workflow_types"] >= {"gen_webhook_types", "schema_types"}
