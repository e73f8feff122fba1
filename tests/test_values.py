"""values.value_class: a slotted dataclass with a dataclass's equality and a frozen one's hash, that mypy holds
frozen (checked with a real mypy run on a snippet)."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api

from learnd.values import value_class

ROOT = Path(__file__).resolve().parent.parent


@value_class
class Fill:
    symbol: str
    qty: int
    price: float | None = None


@dataclasses.dataclass(frozen=True)
class FrozenFill:
    """The plain frozen dataclass value_class stands in for (same fields, same order)."""

    symbol: str
    qty: int
    price: float | None = None


def test_instances_are_slotted_with_no_dict() -> None:
    """The class declares its fields as slots; an instance has no __dict__, so no attribute can be added."""
    fill = Fill("AMD", 3)
    assert Fill.__slots__ == ("symbol", "qty", "price")  # type: ignore[attr-defined]
    assert not hasattr(fill, "__dict__")
    with pytest.raises(AttributeError):
        fill.venue = "X"  # type: ignore[attr-defined]


def test_fields_keep_their_declaration_order_and_defaults() -> None:
    """Positional arguments fill the fields in declaration order; a default applies when it is left out."""
    assert [field.name for field in dataclasses.fields(Fill)] == ["symbol", "qty", "price"]
    fill = Fill("AMD", 3, 1.5)
    assert (fill.symbol, fill.qty, fill.price) == ("AMD", 3, 1.5)
    assert Fill("AMD", 3).price is None
    assert dataclasses.astuple(fill) == ("AMD", 3, 1.5)
    assert repr(fill) == "Fill(symbol='AMD', qty=3, price=1.5)"


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        (("AMD", 3, 1.5), ("AMD", 3, 1.5), True),
        (("AMD", 3, 1.5), ("AMD", 3, 1.25), False),
        (("AMD", 3, None), ("NVDA", 3, None), False),
        (("AMD", 3, 1.0), ("AMD", 3.0, 1), True),
    ],
)
def test_equality_and_hash_are_those_of_a_frozen_dataclass(
    left: tuple[str, int, float | None], right: tuple[str, int, float | None], equal: bool
) -> None:
    """Equal field values make equal instances with equal hashes, exactly where frozen dataclasses compare so:
    mypy holds the class frozen (so hashable), and the runtime must agree."""
    assert (Fill(*left) == Fill(*right)) is equal
    assert (FrozenFill(*left) == FrozenFill(*right)) is equal
    assert hash(Fill(*left)) == hash(FrozenFill(*left))
    if equal:
        assert hash(Fill(*left)) == hash(Fill(*right))
        assert len({Fill(*left), Fill(*right)}) == 1


def test_an_instance_never_equals_another_class_with_the_same_fields() -> None:
    """Equality is per class, as a dataclass's: the same values in another class compare unequal."""
    others: list[object] = [FrozenFill("AMD", 3), ("AMD", 3, None)]
    assert all(Fill("AMD", 3) != other for other in others)


def run_mypy(tmp_path: Path, body: str) -> tuple[str, int]:
    """mypy --strict on a snippet that imports learnd.values from this checkout; its report and exit status."""
    snippet = tmp_path / "snippet.py"
    snippet.write_text("from learnd.values import value_class\n\n" + textwrap.dedent(body))
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nmypy_path = {ROOT}\n")
    report, errors, status = mypy_api.run(
        [
            "--strict",
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            str(snippet),
        ]
    )
    assert errors == ""
    return report, status


SNIPPET = """
@value_class
class Point:
    x: int
    y: int


point = Point(1, 2)
moved = Point(point.x + 1, point.y)
seen = {point, moved}
"""


def test_mypy_holds_value_classes_frozen(tmp_path: Path) -> None:
    """mypy accepts building, reading and hashing a value class, and reports assigning one of its fields."""
    clean, status = run_mypy(tmp_path, SNIPPET)
    assert (clean, status) == ("", 0)
    report, status = run_mypy(tmp_path, SNIPPET + "point.x = 5\n")
    assert status == 1
    assert 'snippet.py:13: error: Property "x" defined in "Point" is read-only' in report
