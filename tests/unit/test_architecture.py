"""docs/architecture.md and the import-linter contracts keep up with the code: a new module must be
described in the doc and placed in a layer."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "controller"
#: Modules outside the runtime: the simulators and what only the demo or the command line needs.
NOT_RUNTIME = ("controller.sim", "controller.demo", "controller.cli", "controller.__main__", "controller.__init__")


def modules() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_is_described_in_the_architecture_doc():
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [m for m in modules() if f"`{m}`" not in doc]
    assert not missing, f"docs/architecture.md does not list: {missing}"


def test_every_runtime_module_is_under_the_no_simulator_contract():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    runtime = next(c for c in contracts if "controller.sim" in c["forbidden_modules"])
    covered = set(runtime["source_modules"])
    dotted = [m.removesuffix(".py").replace("/", ".") for m in modules()]
    loose = [m for m in dotted if not m.startswith(NOT_RUNTIME)
             and not any(m == c or m.startswith(c + ".") for c in covered)]
    assert not loose, f"add these to the runtime contract in pyproject.toml: {loose}"


#: The longest a class in controller/ may be (issue 21: split a class by concern before it grows past this).
MAX_CLASS_LINES = 300


def test_no_class_is_longer_than_max_class_lines():
    import ast

    long = []
    for module in modules():
        for node in ast.walk(ast.parse((REPO / module).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    long.append(f"{module}: {node.name} ({size} lines)")
    assert not long, f"classes over {MAX_CLASS_LINES} lines: {long}"
