"""A line's bytes become a JSON object, or the reason they cannot (the first step from lines to records).

Pure: bytes in, a dict or a BadLine out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class BadLine:
    """Why a line cannot be used; it goes to quarantine with this reason."""

    reason: str
    detail: str


def decode_line(raw: bytes) -> dict[str, Any] | BadLine:
    """A line's JSON object, or the reason it is not one. A UTF-8 BOM and a CRLF ending are tolerated."""
    # Nearly every line is a plain object: parse it as it is first. orjson rejects a BOM and takes a trailing CR
    # as whitespace, so a line it accepts is one the careful path below would accept with the same value.
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _decode_unusual_line(raw)
    if not isinstance(value, dict):
        return BadLine("not_an_object", type(value).__name__)
    return value


def _decode_unusual_line(raw: bytes) -> dict[str, Any] | BadLine:
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if not raw.strip():
        return BadLine("blank_line", "")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as utf_error:
            return BadLine("invalid_utf8", str(utf_error)[:200])
        value = _with_nulls_for_non_finite(text)
        if value is None:
            return BadLine("invalid_json", str(error)[:200])
    if not isinstance(value, dict):
        return BadLine("not_an_object", type(value).__name__)
    return value


def _with_nulls_for_non_finite(text: str) -> Any:
    """`text` decoded with each bare NaN, Infinity and -Infinity (what Python's json writes for non-finite floats,
    and JSON has no word for) read as null, as the bot normally writes them (FORMATS.md); None when it is no JSON
    even so. A field that must hold a number then says it is missing; one nothing reads costs nothing."""
    if "NaN" not in text and "Infinity" not in text:
        return None
    try:
        value = json.loads(text, parse_constant=lambda _: None)
        orjson.dumps(value)  # what json takes and orjson would not keep (a lone surrogate) is no JSON here either
    except (ValueError, TypeError, orjson.JSONEncodeError):
        return None
    return value
