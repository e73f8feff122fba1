"""records.decode: a line's bytes become a JSON object, or a named reason to quarantine them."""

from __future__ import annotations

import pytest

from learnd.records.decode import BadLine, decode_line


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "blank_line"),
        (b"   \t", "blank_line"),
        (b"\r", "blank_line"),
        (b'{"a": "\xff"}', "invalid_utf8"),
        (b'{"a": 1', "invalid_json"),
        (b"not json at all", "invalid_json"),
        (b'{"a": NaN, "b": 1', "invalid_json"),
        (b'{"a": "\\ud800", "b": NaN}', "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b"42", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b"null", "not_an_object"),
    ],
)
def test_decode_line_names_the_reason_a_line_is_unusable(raw: bytes, reason: str) -> None:
    """Every kind of bad line comes back as a BadLine with its own reason, never an exception."""
    decoded = decode_line(raw)
    assert isinstance(decoded, BadLine)
    assert decoded.reason == reason


@pytest.mark.parametrize("raw", [b'{"a": 1}', b'\xef\xbb\xbf{"a": 1}', b'{"a": 1}\r', b'\xef\xbb\xbf{"a": 1}\r'])
def test_decode_line_tolerates_bom_and_crlf(raw: bytes) -> None:
    """A UTF-8 BOM and a CRLF ending decode to the same object as the plain line."""
    assert decode_line(raw) == {"a": 1}


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_a_non_finite_literal_reads_as_null(token: bytes) -> None:
    """Python's json writes NaN, Infinity and -Infinity for non-finite floats; the bot normally writes null there
    (FORMATS.md). Either way the field reads as null, and the rest of the line as written (the whole line was
    quarantined as invalid_json, a close with a NaN exit price lost to learning)."""
    assert decode_line(b'{"pnl_pct": 0.5, "context": {"exit_price": %s, "note": "NaN"}}' % token) == {
        "pnl_pct": 0.5,
        "context": {"exit_price": None, "note": "NaN"},
    }
