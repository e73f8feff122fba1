"""Value classes cheap enough for the per-line path (lines and records): slotted dataclasses that type checkers
hold frozen. Imports nothing of learnd; every layer may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

_Class = TypeVar("_Class")


@dataclass_transform(frozen_default=True)
def value_class(cls: type[_Class]) -> type[_Class]:
    """A slotted dataclass that type checkers hold frozen (assigning a field is an error under mypy), built at
    runtime without `frozen=True`: a frozen dataclass sets each field through object.__setattr__, which costs
    about 0.8 us per record on the per-line path, where nothing ever assigns a field anyway.

    Hashed by its fields like a frozen dataclass (`unsafe_hash`, which costs nothing at construction): mypy takes
    the class for frozen and so for hashable, and a set of records must not type-check and then fail at runtime.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)
