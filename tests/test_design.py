"""The library's shape, checked: small functions, layers that import downwards, a trainer that names no method."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import icd_lib.losses  # noqa: F401  (registers the loss terms)
from icd_lib.config import METHOD_WEIGHTS
from icd_lib.losses.base import _REGISTRY

PACKAGE = Path(__file__).resolve().parents[1] / "icd_lib"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES, MAX_PARAMETERS = 50, 8


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def parameter_count(node: ast.FunctionDef) -> int:
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    return len([n for n in names if n not in ("self", "cls")]) + (args.vararg is not None) + (args.kwarg is not None)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_functions_fit_on_a_screen(path):
    too_big = [f"{node.name} (line {node.lineno}): {node.end_lineno - node.lineno + 1} lines, "
               f"{parameter_count(node)} parameters" for node in functions(path)
               if node.end_lineno - node.lineno + 1 > MAX_LINES or parameter_count(node) > MAX_PARAMETERS]
    assert not too_big, f"over {MAX_LINES} lines or {MAX_PARAMETERS} parameters: {too_big}"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_results_import_nothing_from_experiments():
    upward = {str(p.relative_to(PACKAGE)): sorted(m for m in imported_modules(p) if m.startswith("icd_lib.experiments"))
              for p in (PACKAGE / "results").glob("*.py")}
    assert not {k: v for k, v in upward.items() if v}


def method_mentions(path: Path) -> set[str]:
    """Loss classes and method modules a file's code refers to, and recipe or term names it
    spells as strings ("kd", "icd+kd"); prose in docstrings is not code."""
    classes = {cls.__name__ for cls in _REGISTRY.values()} | {"ICDLoss", "CRDLoss"}
    names = (set(_REGISTRY) | set(METHOD_WEIGHTS)) - {"student"}  # "student" is also the trained model's role
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name) and node.id in classes or isinstance(node, ast.Attribute) and node.attr in classes:
            found.add(getattr(node, "id", None) or node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
            found.add(repr(node.value))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("icd_lib.losses."):
            if node.module.rsplit(".", 1)[1] != "base":
                found.add(node.module)
    return found


def test_the_trainer_names_no_method_and_holds_no_recipe():
    found = {str(p.relative_to(PACKAGE)): sorted(method_mentions(p)) for p in (PACKAGE / "train").glob("*.py")}
    assert not {k: v for k, v in found.items() if v}


def test_the_method_check_finds_what_it_looks_for(tmp_path):
    source = tmp_path / "mentions.py"
    source.write_text('from icd_lib.losses.icd import ICDLoss\nweights = {"kd": 0.9}\nisinstance(m, ICDLoss)\n')
    assert method_mentions(source) == {"icd_lib.losses.icd", "ICDLoss", "'kd'"}


def test_the_loop_module_stays_one_job():
    lines = len((PACKAGE / "train" / "loop.py").read_text().splitlines())
    assert lines <= 300, f"train/loop.py has {lines} lines: building, resuming and recording live in their own modules"
