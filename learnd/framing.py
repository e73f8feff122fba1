"""Bytes become lines and lines become JSON objects; the alignment of a rewritten file against lines already read.

Pure: the tailer feeds raw bytes in, gets decoded rows or a reason to quarantine out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Final

import orjson

_BOM = b"\xef\xbb\xbf"
# Candidate alignments kept from each end (earliest, latest) when a rewritten file could start in many places.
MAX_ALIGNMENTS_KEPT: Final = 16
# The same value as int.from_bytes(digest, "big", signed=True), one call cheaper; line_hash runs on every line.
_unpack_signed_64: Final[Callable[[bytes], tuple[int]]] = struct.Struct(">q").unpack


@dataclass(frozen=True, slots=True)
class BadLine:
    """Why a line cannot be used; it goes to quarantine with this reason."""

    reason: str
    detail: str


def line_hash(raw: bytes) -> int:
    """A stable 64-bit signed hash of a line's bytes (without its newline), as SQLite stores integers."""
    return _unpack_signed_64(blake2b(raw, digest_size=8).digest())[0]


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
            raw.decode("utf-8")
        except UnicodeDecodeError as utf_error:
            return BadLine("invalid_utf8", str(utf_error)[:200])
        return BadLine("invalid_json", str(error)[:200])
    if not isinstance(value, dict):
        return BadLine("not_an_object", type(value).__name__)
    return value


def rewrite_alignments(window: Sequence[int], fresh: Sequence[int]) -> list[int]:
    """Every place in `window` where a rewritten file's first lines may sit, earliest first; empty when none.

    `window` holds the hashes of the last lines read from the source, oldest first; `fresh` the hashes of the
    rewritten file's first lines. A supervisor that keeps a file's last N lines leaves a file that starts with a
    run of the window's tail, so each answer is a start index whose run matches `fresh` up to the end of the window
    (or of `fresh`). More than one start matches when the window holds a run twice (a rewrite's kept tail is read
    again, so a later rewrite finds it in both places) or when lines repeat; the caller follows every candidate
    until the file tells them apart. With none, the caller falls back to per-line membership.
    """
    if not fresh:
        return []
    first = fresh[0]
    size = len(window)
    starts: list[int] = []
    for start in range(size):
        if window[start] != first:
            continue
        overlap = min(size - start, len(fresh))
        if all(window[start + index] == fresh[index] for index in range(overlap)):
            starts.append(start)
    if len(starts) > 2 * MAX_ALIGNMENTS_KEPT:
        # A flood of identical lines (blank ones, say) would make following every candidate quadratic. The earliest
        # decide ties among repeats; the latest are where a kept tail read twice sits.
        starts = starts[:MAX_ALIGNMENTS_KEPT] + starts[-MAX_ALIGNMENTS_KEPT:]
    return starts
