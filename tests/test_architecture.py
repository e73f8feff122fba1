"""The package layout is a contract: imports run one way down the data path, and the pure core stays pure."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Final

import pytest

PACKAGE: Final = Path(__file__).resolve().parent.parent / "learnd"

# What each part of learnd may import from learnd (besides itself), as each package's docstring says.
_FOUNDATION: Final = {"errors", "values", "config"}
ALLOWED: Final[dict[str, set[str]]] = {
    "errors": set(),
    "values": set(),
    "config": {"errors"},
    "sources": {"errors", "values"},
    "records": {"errors", "values", "config"},
    "sessions": {"errors", "config"},
    "learning": _FOUNDATION | {"records", "sessions"},
    "store": _FOUNDATION | {"sources", "records"},
    "exports": _FOUNDATION | {"records", "learning"},
    "jobs": _FOUNDATION | {"records", "sessions", "learning", "store", "exports"},
    "service": _FOUNDATION | {"sources", "records", "sessions", "learning", "store", "exports", "jobs"},
    "views": _FOUNDATION | {"sources", "records", "sessions", "learning", "store", "exports", "jobs"},
    "devtools": _FOUNDATION
    | {"sources", "records", "sessions", "learning", "store", "exports", "jobs", "service", "views"},
    "cli": _FOUNDATION
    | {"sources", "records", "sessions", "learning", "store", "exports", "jobs", "service", "views", "devtools"},
    "__main__": {"cli"},
    # The client a bot imports or copies: the standard library only, nothing of learnd (tests/test_client.py).
    "client": set(),
}
# The pure core: no IO, clock, environment, logging, scheduling or asyncio (STYLE.md, "Functional core").
PURE: Final = (
    "records/decode.py",
    "records/parse.py",
    "records/components.py",
    "sources/framing.py",
    "learning/multipliers.py",
    "learning/entry_model.py",
    "learning/exit_model.py",
    "learning/evaluate.py",
    "learning/signals.py",
    "learning/stats.py",
    "jobs/reports.py",
)
SHELL_MODULES: Final = {
    "os",
    "io",
    "time",
    "asyncio",
    "sqlite3",
    "socket",
    "subprocess",
    "signal",
    "structlog",
    "logging",
    "watchfiles",
    "apscheduler",
    "exchange_calendars",
    "pandas",
    "scipy",
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def part_of(module: str) -> str:
    """`learnd.store.ledger` -> `store`; `learnd.cli` -> `cli`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_run_down_the_data_path(path: Path) -> None:
    """A module imports from learnd only its own package and the packages its own may use."""
    own = part_of(module_name(path))
    if own == "":
        return  # learnd/__init__.py
    used = {part_of(name) for name in imports_of(path) if name.startswith("learnd.")}
    assert used - {own} <= ALLOWED[own], f"{path.relative_to(PACKAGE)} imports {sorted(used - {own} - ALLOWED[own])}"


def test_every_part_of_the_package_is_in_the_table() -> None:
    """A new package or top-level module has to say where it sits before it can be imported."""
    assert {part_of(module_name(path)) for path in modules()} - {""} == set(ALLOWED)


@pytest.mark.parametrize("relative", PURE)
def test_the_core_imports_nothing_of_the_shell(relative: str) -> None:
    """The learning math, the record parsing and the report contents are pure."""
    used = {name.split(".")[0] for name in imports_of(PACKAGE / relative)}
    assert not used & SHELL_MODULES


@pytest.mark.parametrize("package", sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py")))
def test_every_package_docstring_names_what_it_may_import(package: str) -> None:
    """Each package's docstring says what it owns and names, in backticks, exactly the parts it may import."""
    docstring = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text())) or ""
    named = set(re.findall(r"`([a-z_]+)`", docstring)) & set(ALLOWED)
    assert named == ALLOWED[package]


def test_no_module_shadows_the_standard_library() -> None:
    """`python learnd/x/y.py` puts that folder first on sys.path: a module named like a stdlib one would shadow it."""
    import sys

    names = {path.stem for path in modules()} - {"__init__", "__main__"}
    assert not names & set(sys.stdlib_module_names)


# `python -m learnd` is run as a whole process by tests/test_cli.py; it has no code of its own to test.
_TESTED_ELSEWHERE: Final = {"__main__.py"}


@pytest.mark.parametrize(
    "path",
    [path for path in modules() if path.name != "__init__.py" and path.name not in _TESTED_ELSEWHERE],
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_every_module_has_a_test_file_of_its_own(path: Path) -> None:
    """The tests mirror the package: learnd/a/b.py is tested in tests/a/test_b.py."""
    relative = path.relative_to(PACKAGE)
    expected = PACKAGE.parent / "tests" / relative.parent / f"test_{relative.name}"
    assert expected.is_file(), f"{relative} has no {expected.relative_to(PACKAGE.parent)}"
