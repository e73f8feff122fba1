"""The file stays learnd's: a change by another writer is noticed (by stat, or by hash when the stat looks alike),
described, counted once, remembered across a restart, and undone by writing learnd's bytes back."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from learnd.exports import files, guard
from learnd.exports.files import json_bytes
from learnd.exports.guard import OwnedFile, describe_change, read_record
from learnd.exports.signal_weights import signal_weights
from learnd.learning.learner import LearnedModel

MODEL = LearnedModel(
    entry={
        "equity": {
            "dark_pool": {
                "multiplier": 1.6,
                "samples": 40.0,
                "wins": 20.0,
                "losses": 20.0,
                "total_pnl": 3.0,
                "by_regime": {"risk_on": {"multiplier": 1.9, "samples": 10.0}},
            },
            "iv_rank": {"multiplier": 0.5, "samples": 30.0, "by_regime": {}},
        }
    },
    exits={},
    trades_learned=50,
    partials_learned=0,
    exits_learned=0,
    last_trade_us=1_772_461_956_000_000,
)


def learnd_bytes() -> bytes:
    return json_bytes(signal_weights(MODEL))


def bot_optimizer_save(document: dict[str, Any]) -> dict[str, Any]:
    """What FORMATS.md says the bot's optimizer does when it saves: keys it does not know dropped
    (effective_weights and the rest of learnd's), default buckets added."""
    saved = {"entry_weights": document["entry_weights"], "exit_model": document["exit_model"]}
    for buckets in saved["entry_weights"]["regime_beta_distributions"].values():
        buckets.setdefault("RISK_OFF", {"alpha": 1.0, "beta": 1.0})
    return saved


def rewrite_in_place(path: Path, data: bytes) -> None:
    """A foreign writer's non-atomic save: the same file (inode) truncated and written."""
    with open(path, "r+b") as handle:
        handle.truncate(0)
        handle.write(data)


def test_an_in_place_rewrite_is_noticed_described_counted_once_and_undone(tmp_path: Path) -> None:
    """The optimizer's save (keys dropped, buckets added) is found by stat, described, counted once however often it
    is checked, and restore() puts learnd's bytes back."""
    path = tmp_path / "signal_weights.json"
    owned = OwnedFile(path, tmp_path / "guard.json")
    assert owned.write(learnd_bytes()) is None
    assert owned.is_intact()
    rewrite_in_place(path, orjson.dumps(bot_optimizer_save(orjson.loads(learnd_bytes()))))
    assert not owned.is_intact()
    found = owned.foreign()
    assert found is not None
    assert owned.foreign() is None  # the same state of the file counts once
    assert owned.foreign_count == 1
    assert {"effective_weights", "learned_multipliers", "learnd", "strategies"} <= set(found.keys_dropped)
    assert "entry_weights.regime_beta_distributions.dark_pool.RISK_OFF" in found.keys_added
    assert found.summary()["keys_dropped_count"] == len(found.keys_dropped)
    assert owned.restore_pending
    assert owned.restore()
    assert path.read_bytes() == learnd_bytes()
    assert owned.is_intact() and not owned.restore_pending


def test_moved_multipliers_are_named_with_both_values(tmp_path: Path) -> None:
    """The bot's own learner pulling multipliers toward 0.7: each moved band and Beta bucket is listed, decoded the
    bot's way, largest move first."""
    ours = learnd_bytes()
    theirs = orjson.loads(ours)
    theirs["entry_weights"]["weight_bands"]["dark_pool"]["current"] = 0.7
    theirs["entry_weights"]["regime_beta_distributions"]["dark_pool"]["MIXED"].update(alpha=0.3, beta=0.7)
    found = describe_change(tmp_path / "w.json", ours, orjson.dumps(theirs))
    moved = {where: (mine, other) for where, mine, other in found.multipliers_moved}
    assert moved["entry_weights.weight_bands.dark_pool"] == (1.6, 0.7)
    mine, other = moved["entry_weights.regime_beta_distributions.dark_pool.MIXED"]
    assert other is not None and abs(mine - 1.6) < 1e-12 and abs(other - 0.7) < 1e-12
    assert len(found.multipliers_moved) == 2  # the legacy alias `darkpool` kept learnd's figure
    assert found.keys_dropped == () and found.keys_added == ()


def test_a_half_written_or_removed_file_is_described_as_such(tmp_path: Path) -> None:
    """A non-atomic writer caught mid-write leaves no JSON object; a removed file does not exist."""
    half = describe_change(tmp_path / "w.json", learnd_bytes(), learnd_bytes()[:100])
    assert (half.exists, half.parsed, half.size_bytes) == (True, False, 100)
    gone = describe_change(tmp_path / "w.json", learnd_bytes(), None)
    assert (gone.exists, gone.parsed) == (False, False)


def test_a_same_size_rewrite_is_found_by_hash_when_the_stat_looks_alike(tmp_path: Path) -> None:
    """Same size, and the modification time set back to what learnd's write left: only the hash tells, and
    is_intact(verify=True) hashes."""
    path = tmp_path / "signal_weights.json"
    owned = OwnedFile(path, tmp_path / "guard.json")
    owned.write(learnd_bytes())
    before = os.stat(path)
    data = bytearray(learnd_bytes())
    data[data.index(b"1.6")] = ord("2")
    rewrite_in_place(path, bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert not owned.is_intact(verify=True)
    assert owned.foreign() is not None


def test_a_change_while_learnd_was_stopped_is_found_at_the_next_start(tmp_path: Path) -> None:
    """The record keeps the hash of learnd's last write and the count: a new OwnedFile (a restart) finds the
    change, says the file no longer parses, and the count goes on from the record."""
    path = tmp_path / "signal_weights.json"
    record = tmp_path / "guard.json"
    first = OwnedFile(path, record)
    first.write(learnd_bytes())
    rewrite_in_place(path, b"{garbage")
    assert first.foreign() is not None
    restarted = OwnedFile(path, record)
    assert restarted.foreign_count == 1
    rewrite_in_place(path, b"{other garbage")
    found = restarted.foreign()
    assert found is not None and found.exists and not found.parsed
    assert restarted.foreign_count == 2
    saved = read_record(record)
    assert saved is not None
    assert saved["foreign_writes_count"] == 2 and saved["last_foreign_write"]["parsed"] is False


def test_learnd_s_own_write_whose_record_a_kill_lost_is_not_a_foreign_write(tmp_path: Path) -> None:
    """Killed between the export's rename and its record's: at the next start the file holds exactly what learnd
    writes now, and that is learnd's (it was counted as a foreign write, for good in `status`); the record catches
    up, so a later change by another writer is still found."""
    path = tmp_path / "signal_weights.json"
    record = tmp_path / "guard.json"
    first = OwnedFile(path, record)
    first.write(b'{"an": "earlier export"}\n')
    path.write_bytes(learnd_bytes())  # the next export's rename, its record never written
    restarted = OwnedFile(path, record)
    assert restarted.foreign(learnd_bytes) is None
    assert restarted.foreign_count == 0
    saved = read_record(record)
    assert saved is not None and saved["foreign_writes_count"] == 0
    rewrite_in_place(path, b"{garbage")
    assert restarted.foreign(learnd_bytes) is not None
    assert restarted.foreign_count == 1


def test_a_bucket_at_the_floor_is_compared_like_any_other(tmp_path: Path) -> None:
    """A Beta bucket at the floor multiplier (alpha 0, decoded as 0.25) another writer moved is listed as moved (it
    was left out of the comparison, so the change went unnoticed)."""
    ours = orjson.loads(learnd_bytes())
    bucket = ours["entry_weights"]["regime_beta_distributions"]["dark_pool"]["MIXED"]
    bucket.update(alpha=0.0, beta=42.0)
    theirs = orjson.loads(orjson.dumps(ours))
    theirs["entry_weights"]["regime_beta_distributions"]["dark_pool"]["MIXED"].update(alpha=21.0, beta=21.0)
    found = describe_change(tmp_path / "w.json", orjson.dumps(ours), orjson.dumps(theirs))
    moved = {where: (mine, other) for where, mine, other in found.multipliers_moved}
    assert moved["entry_weights.regime_beta_distributions.dark_pool.MIXED"] == (0.25, 1.0)


def test_a_record_for_another_path_is_not_this_files(tmp_path: Path) -> None:
    """Moving the export (paths.signal_weights) starts afresh: learnd never claims a file it did not write."""
    record = tmp_path / "guard.json"
    OwnedFile(tmp_path / "old.json", record).write(learnd_bytes())
    bot_file = tmp_path / "new.json"
    bot_file.write_bytes(b'{"the": "bot\'s own"}')
    fresh = OwnedFile(bot_file, record)
    assert fresh.is_intact()
    assert fresh.foreign() is None
    assert fresh.foreign_count == 0


def test_a_failure_after_the_rename_leaves_the_file_learnd_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The export's rename went through, then flushing the directory failed (EIO): the file holds learnd's new bytes,
    so it is no foreign write and nothing older is put back. The seam: the directory flush, made to fail once."""
    path = tmp_path / "signal_weights.json"
    owned = OwnedFile(path, tmp_path / "guard.json")
    owned.write(b'{"an": "earlier export"}\n')

    def failing_flush(directory: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(files, "fsync_directory", failing_flush)
    with pytest.raises(OSError, match="Input/output error"):
        owned.write(learnd_bytes())
    monkeypatch.undo()
    assert path.read_bytes() == learnd_bytes()
    assert owned.foreign(learnd_bytes) is None
    assert (owned.foreign_count, owned.restore_pending, owned.restore()) == (0, False, True)
    assert path.read_bytes() == learnd_bytes()


def test_the_bot_s_own_file_learnd_takes_over_is_kept_beside_it(tmp_path: Path) -> None:
    """learnd's first write to a file it never wrote (the bot's own weights, as its optimizer left them) keeps that
    content as `<name>.before-learnd` and says how it differs; later writes keep that first copy as it is."""
    path = tmp_path / "signal_weights.json"
    bots = b'{"entry_weights": {"weight_bands": {"dark_pool": {"current": 1.7}}}}\n'
    path.write_bytes(bots)
    owned = OwnedFile(path, tmp_path / "guard.json")
    assert owned.write(learnd_bytes()) is None
    kept = tmp_path / "signal_weights.json.before-learnd"
    assert kept.read_bytes() == bots
    assert owned.taken_over is not None and owned.taken_over.kept == kept and not owned.taken_over.problem
    change = owned.taken_over.change
    assert change is not None and change.parsed and change.multipliers_moved
    path.write_bytes(b'{"another": "writer"}\n')
    OwnedFile(tmp_path / "signal_weights.json", tmp_path / "other-guard.json").write(learnd_bytes())
    assert kept.read_bytes() == bots


def test_a_bot_file_learnd_cannot_read_is_replaced_and_the_takeover_says_nothing_was_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot's own file is not readable by learnd's user (0600, another owner): it cannot be kept, the export
    still replaces it (the directory is learnd's to write), and the takeover says nothing was kept and why (the
    read failed the write, every time). The seam: the read, made to fail as without permission."""
    path = tmp_path / "signal_weights.json"
    path.write_bytes(b'{"entry_weights": {}}\n')
    real_read = guard._read

    def denied(target: Path) -> bytes | None:
        if target == path:
            raise PermissionError(13, "Permission denied", str(target))
        return real_read(target)

    monkeypatch.setattr(guard, "_read", denied)
    owned = OwnedFile(path, tmp_path / "guard.json")
    owned.write(learnd_bytes())
    monkeypatch.undo()
    assert path.read_bytes() == learnd_bytes()
    assert owned.taken_over is not None and owned.taken_over.kept is None
    assert "not readable by learnd (Permission denied)" in owned.taken_over.problem
    assert not (tmp_path / "signal_weights.json.before-learnd").exists()


def test_learnd_s_own_file_at_a_path_its_record_does_not_name_is_no_takeover(tmp_path: Path) -> None:
    """A home moved (the guard record names the old path): the file there is an export of learnd's own, not the
    bot's, so the first write keeps no copy and reports no takeover."""
    path = tmp_path / "signal_weights.json"
    path.write_bytes(learnd_bytes())
    owned = OwnedFile(path, tmp_path / "guard.json")
    newer = json_bytes({**orjson.loads(learnd_bytes()), "note": "a newer export"})
    owned.write(newer)
    assert owned.taken_over is None
    assert not (tmp_path / "signal_weights.json.before-learnd").exists()
    assert path.read_bytes() == newer
