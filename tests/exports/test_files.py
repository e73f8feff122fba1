"""Exports: atomic JSON files and append-only journals replayed from the store."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from learnd.exports import files
from learnd.exports.files import Journal, write_bytes_atomic, write_json_atomic

ROOT = Path(__file__).resolve().parents[2]


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


def test_journal_after_a_torn_last_line_cuts_it_off(tmp_path: Path) -> None:
    """A crash mid-append leaves half a line: the next append cuts it off and writes its row again, so every line
    of the file is a whole row (the fragment stayed, and a reader of each line failed on it)."""
    path = tmp_path / "weight_learning.jsonl"
    Journal(path).append([(1, b'{"a":1}')])
    with open(path, "ab") as handle:
        handle.write(b'{"a":2,"se')  # the torn append of row 2
    assert Journal(path).append([(2, b'{"a":2}'), (3, b'{"a":3}')]) == 2
    assert [orjson.loads(line)["seq"] for line in path.read_bytes().splitlines()] == [1, 2, 3]


def test_journal_whose_disk_filled_mid_append_writes_each_row_once_when_it_has_room(tmp_path: Path) -> None:
    """A write the file size limit cuts short (a full disk, in a child process: RLIMIT_FSIZE, SIGXFSZ ignored),
    then the same Journal appends again with room: each row is in the file once, every line whole (it appended
    from the seq it had cached, writing the rows already in twice)."""
    path = tmp_path / "weight_learning.jsonl"
    script = """
import resource, signal, sys
from pathlib import Path
from learnd.exports.files import Journal
path = Path(sys.argv[1])
journal = Journal(path)
journal.append([(seq, b'{"pad":"%s"}' % (b"x" * 200)) for seq in range(1, 11)])
rows = [(seq, b'{"pad":"%s"}' % (b"x" * 200)) for seq in range(1, 101)]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 5000, limit[1]))
try:
    journal.append(rows)
except OSError:
    print("cut")
resource.setrlimit(resource.RLIMIT_FSIZE, limit)
journal.append(rows)
"""
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "cut"
    assert [orjson.loads(line)["seq"] for line in path.read_bytes().splitlines()] == list(range(1, 101))


def test_journal_whose_last_row_is_longer_than_a_tail_read_knows_its_seq(tmp_path: Path) -> None:
    """A last row larger than one read from the end (a quarantined line kept whole with a large keep setting): a
    new Journal still finds its seq, and appends nothing twice (it found none and appended every row again)."""
    path = tmp_path / "orders.jsonl"
    rows = [(1, b'{"raw":"short"}'), (2, b'{"raw":"%s"}' % (b"x" * 300_000))]
    assert Journal(path).append(rows) == 2
    assert Journal(path).last_seq == 2
    assert Journal(path).append(rows) == 0
    assert len(path.read_bytes().splitlines()) == 2


def test_a_journal_it_creates_is_flushed_with_its_directory_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store drops what a journal holds, so a new journal's directory entry is flushed too (a power cut could
    lose the file's name, and with it the rows); appending to it later flushes only the file. The seam: os.fsync,
    spied on (a power cut cannot be staged here)."""
    synced: list[bool] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    journal = Journal(tmp_path / "data" / "weight_learning.jsonl")
    journal.append([(1, b'{"a":1}')])
    assert synced == [False, True]
    synced.clear()
    journal.append([(2, b'{"a":2}')])
    assert synced == [False]


def test_a_replaced_file_keeps_its_mode_whatever_the_umask(tmp_path: Path) -> None:
    """The bot reads the file learnd replaces: the new one keeps the old one's mode, even under a umask that would
    make it private (a service's UMask=0077), and a new file takes the umask."""
    path = tmp_path / "signal_weights.json"
    path.write_bytes(b"{}\n")
    path.chmod(0o640)
    before = os.umask(0o077)
    try:
        write_bytes_atomic(path, b'{"a": 1}\n')
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        write_bytes_atomic(tmp_path / "new.json", b"{}\n")
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o600
    finally:
        os.umask(before)
    assert path.read_bytes() == b'{"a": 1}\n'


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file to another owner")
def test_a_replaced_file_keeps_its_owner_and_group(tmp_path: Path) -> None:
    """Run as root, learnd gives the new file the owner and group of the one it replaces (the bot's user)."""
    path = tmp_path / "signal_weights.json"
    path.write_bytes(b"{}\n")
    os.chown(path, 1234, 2345)
    write_bytes_atomic(path, b'{"a": 1}\n')
    assert (path.stat().st_uid, path.stat().st_gid) == (1234, 2345)


def test_a_journal_rotated_by_rename_goes_on_after_its_last_row(tmp_path: Path) -> None:
    """An operator renames a journal away (logrotate's rename + create) while learnd is stopped: the next start
    appends only the rows after the last one written, not the store's rows again (all of them were appended to the
    new empty file); the mark beside it says where it stood."""
    path = tmp_path / "weight_learning.jsonl"
    rows = [(seq, b'{"a":%d}' % seq) for seq in range(1, 6)]
    assert Journal(path).append(rows[:3]) == 3
    path.rename(path.with_name("weight_learning.jsonl.1"))
    path.write_bytes(b"")
    assert Journal(path).append(rows) == 2
    assert [orjson.loads(line)["seq"] for line in path.read_bytes().splitlines()] == [4, 5]
    # Without the mark (an older learnd's journal), the file's last row decides, as before.
    (tmp_path / ".weight_learning.jsonl.seq").unlink()
    assert Journal(path).last_seq == 5


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file to another owner")
def test_without_the_right_to_give_files_away_the_write_keeps_the_mode_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root without CAP_CHOWN (a unit or container that dropped it) cannot keep another user's ownership: the
    write goes on with the mode kept (it failed with EPERM at every export). The seam: the capability check."""
    monkeypatch.setattr(files, "_may_chown", lambda: False)
    path = tmp_path / "signal_weights.json"
    path.write_bytes(b"{}\n")
    os.chown(path, 1234, 2345)
    path.chmod(0o640)
    write_bytes_atomic(path, b'{"a": 1}\n')
    assert path.read_bytes() == b'{"a": 1}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
