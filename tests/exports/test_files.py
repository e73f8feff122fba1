"""Exports: atomic JSON files and append-only journals replayed from the store."""

from __future__ import annotations

from pathlib import Path

import orjson

from learnd.exports.files import Journal, write_json_atomic


def test_atomic_write_leaves_no_temp_file_behind(tmp_path: Path) -> None:
    """A finished write leaves the target only, with the whole document."""
    target = tmp_path / "state" / "signal_weights.json"
    write_json_atomic(target, {"b": 1, "a": [1.5, 2]})
    assert orjson.loads(target.read_bytes()) == {"a": [1.5, 2], "b": 1}
    assert [path.name for path in target.parent.iterdir()] == ["signal_weights.json"]


def test_journal_appends_each_row_once_across_restarts(tmp_path: Path) -> None:
    """Rows already in the file (by seq) are not appended again by a new Journal over the same file."""
    path = tmp_path / "weight_learning.jsonl"
    rows = [(1, b'{"a":1}'), (2, b'{"a":2}')]
    assert Journal(path).append(rows) == 2
    assert Journal(path).append([*rows, (3, b'{"a":3}')]) == 1
    assert [orjson.loads(line)["seq"] for line in path.read_bytes().splitlines()] == [1, 2, 3]


def test_journal_after_a_torn_last_line_starts_on_a_new_line(tmp_path: Path) -> None:
    """A crash mid-append leaves half a line: the next rows go on lines of their own and every one reads back."""
    path = tmp_path / "weight_learning.jsonl"
    Journal(path).append([(1, b'{"a":1}')])
    with open(path, "ab") as handle:
        handle.write(b'{"a":2,"se')  # the torn append of row 2
    assert Journal(path).append([(2, b'{"a":2}'), (3, b'{"a":3}')]) == 2
    readable = []
    for line in path.read_bytes().splitlines():
        try:
            readable.append(orjson.loads(line)["seq"])
        except orjson.JSONDecodeError:
            continue  # the torn fragment itself
    assert readable == [1, 2, 3]
