"""The tree shows the architecture, and stays that way: every module of controller/ sits in exactly one
layer of the import-linter `layers` contract (so `lint-imports` checks it), docs/architecture.md
describes it, the top of the package stays small and no class grows past a screenful or five."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "controller"
#: The most modules left at the top of controller/ (issue 21): the rest live in a room by concern.
MAX_TOP_LEVEL = 12
#: The longest class in controller/, in lines.
MAX_CLASS_LINES = 300


def modules() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def dotted(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def layers() -> list[list[str]]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    assert len(contracts) == 1, "one layers contract keeps the rooms in order"
    return [[name.strip() for name in layer.split("|")] for layer in contracts[0]["layers"]]


def imports_nothing(path: str) -> bool:
    """A package's __init__ that only documents it (controller/, controller/config/) needs no layer."""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    return path.endswith("__init__.py") and not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree))


def test_every_module_is_described_in_the_architecture_doc():
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [m for m in modules() if f"`{m}`" not in doc]
    assert not missing, f"docs/architecture.md does not list: {missing}"


def test_every_module_sits_in_exactly_one_layer():
    names = [name for layer in layers() for name in layer]
    placed = {m: [n for n in names if dotted(m) == n or dotted(m).startswith(n + ".")] for m in modules()}
    loose = [m for m, where in placed.items() if not where and not imports_nothing(m)]
    twice = {m: where for m, where in placed.items() if len(where) > 1}
    assert not loose, f"place these in the layers contract in pyproject.toml: {loose}"
    assert not twice, f"these sit in more than one layer: {twice}"


def test_the_architecture_doc_draws_every_layer():
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [name for layer in layers() for name in layer if name.removeprefix("controller.") not in doc]
    assert not missing, f"docs/architecture.md's layer drawing does not name: {missing}"


def test_few_modules_at_the_top_of_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, f"{len(top)} modules at the top of controller/: {top}"


def test_no_class_is_over_the_limit():
    long = []
    for path in modules():
        for node in ast.walk(ast.parse((REPO / path).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    long.append(f"{path}:{node.name} ({lines} lines)")
    assert not long, f"classes over {MAX_CLASS_LINES} lines: {long}"
