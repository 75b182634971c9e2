"""The package's layout, held against the code: imports go forward only (base -> data -> model ->
run -> lab, search, bench), the three last stages never import each other, every package says in
its docstring what it holds, and every module has a test file where tests/ mirrors project/."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "project"
BASE = {"project", "project.errors", "project.devices", "project.memory", "project.storage", "project.moved"}
STAGES = {"data": 1, "model": 2, "run": 3, "lab": 4, "search": 4, "bench": 4}


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(module: str) -> tuple[int, str]:
    """(stage, package) of a module; the entry point ``project.__main__`` stands above them all."""
    if module in ("project.__main__", "project.docs", "project.figures"):  # the entry point; make docs runs the others
        return 5, "main"
    if module in BASE:
        return 0, "base"
    package = module.split(".")[1]
    return STAGES[package], package


def _imports(path: Path) -> set[str]:
    """The project modules a file imports, lazily inside functions too; ``from project.x import y``
    counts as ``project.x.y`` where y is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("project")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("project"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").exists() or (ROOT / Path(*sub.split("."))).is_dir()
                found.add(sub if is_module else node.module)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_forward_only(path):
    source, (stage, package) = _name(path), _stage(_name(path))
    for target in _imports(path):
        to_stage, to_package = _stage(target)
        assert to_stage < stage or to_package == package or (to_stage == 0 and stage == 0), (
            f"{source} (stage {stage}, {package}) imports {target} (stage {to_stage}, {to_package}): imports go "
            f"forward only, base -> data -> model -> run -> lab/search/bench")


def test_the_rule_would_catch_a_backward_import(tmp_path):
    """The checker itself, on a line that imports backwards and one that crosses stage 4."""
    back = tmp_path / "back.py"
    back.write_text("def f():\n    from project.run.cli import ProjectCLI\n")
    assert _imports(back) == {"project.run.cli"} and _stage("project.run.cli")[0] > _stage("project.data.datasets")[0]
    across = tmp_path / "across.py"
    across.write_text("from project.search import study\n")
    assert _imports(across) == {"project.search.study"} and _stage("project.search.study") == (4, "search")


def test_every_package_says_what_it_holds_and_may_import():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc, f"{init.relative_to(ROOT)}: its docstring says what it may import"
        for module in init.parent.glob("*.py"):
            if module.stem not in ("__init__", "__main__"):
                assert f"{module.name} " in doc, f"{init.relative_to(ROOT)} does not list {module.name}"


@pytest.mark.parametrize("path", [p for p in MODULES if p.stem not in ("__init__", "__main__")],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_has_its_test_file(path):
    relative = path.relative_to(PACKAGE)
    expected = ROOT / "tests" / relative.parent / f"test_{relative.name}"
    assert expected.exists(), f"{path.relative_to(ROOT)} has no {expected.relative_to(ROOT)}"


def test_no_module_past_about_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in MODULES if (n := len(p.read_text().splitlines())) > 420}
    assert not long, f"split these by idea: {long}"


def _own_package_imports(path: Path) -> list[str]:
    """``from project.model import zoo`` inside project/model/, whose __init__.py imports its
    classifier: a module reaching its siblings through a package that is importing it, a circle."""
    package = _name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    init = path.parent / "__init__.py"
    if not package or not init.exists() or not any(target.startswith(f"{package}.") for target in _imports(init)):
        return []
    return [f"from {node.module} import {', '.join(a.name for a in node.names)}"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module == package]


@pytest.mark.parametrize("path", [p for p in MODULES if p.name != "__init__.py"], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_its_siblings_through_its_own_package(path, tmp_path):
    assert not _own_package_imports(path), f"{path.relative_to(ROOT)}: import the modules themselves, not the package"


def test_the_circle_rule_would_catch_one(tmp_path):
    circle = PACKAGE / "model" / "circle_probe.py"
    try:
        circle.write_text("from project.model import schedules, zoo\n")
        assert _own_package_imports(circle) == ["from project.model import schedules, zoo"]
    finally:
        circle.unlink()


def test_nothing_imports_a_private_name_of_another_module():
    """A name with a leading underscore is its module's own: used elsewhere, it is public and named so."""
    private = [f"{path.relative_to(ROOT)}: {alias.name} from {node.module}"
               for path in MODULES for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("project")
               for alias in node.names if alias.name.startswith("_") and alias.name != "__version__"]
    assert not private, private
