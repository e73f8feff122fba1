"""The file stays learnd's: a file learnd writes and owns (the bot's weights file) is known by the hash of what
learnd last wrote there, so a change by another writer is noticed, described (keys dropped or added, multipliers
moved) and counted. Putting learnd's file back is the caller's move (the engine, on the daemon's watch).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

import orjson

from learnd.exports.bot import bot_multiplier
from learnd.exports.files import json_bytes, write_bytes_atomic

# The guard record of the bot's weights file, in learnd's state directory.
GUARD_RECORD: Final = "signal_weights.guard.json"
# The copy of a file learnd took over, kept beside it (see OwnedFile._keep_before_takeover).
TAKEN_OVER_SUFFIX: Final = ".before-learnd"
# How many dropped or added keys, and moved multipliers, a description names (the counts are always whole).
SHOWN: Final = 8
# Keys are compared down to this depth: entry_weights.regime_beta_distributions.<component>.<BUCKET>.
_KEY_DEPTH: Final = 4
_MOVED: Final = 1e-9

Signature = tuple[int, int, int, int, int]
# The state of a file that does not exist, for comparisons with the stat of one that does.
MISSING: Final[Signature] = (-1, -1, -1, -1, -1)


@dataclass(frozen=True, slots=True)
class ForeignWrite:
    """How the file on disk differs from what learnd last wrote there."""

    path: str
    exists: bool
    parsed: bool
    size_bytes: int
    keys_dropped: tuple[str, ...]
    keys_added: tuple[str, ...]
    # (where, learnd's multiplier, the one on disk), largest move first.
    multipliers_moved: tuple[tuple[str, float, float | None], ...]

    def summary(self) -> dict[str, Any]:
        """JSON-able fields for a log line and the guard record: counts whole, lists cut to the first few."""
        return {
            "path": self.path,
            "exists": self.exists,
            "parsed": self.parsed,
            "size_bytes": self.size_bytes,
            "keys_dropped_count": len(self.keys_dropped),
            "keys_dropped": list(self.keys_dropped[:SHOWN]),
            "keys_added_count": len(self.keys_added),
            "keys_added": list(self.keys_added[:SHOWN]),
            "multipliers_moved_count": len(self.multipliers_moved),
            "multipliers_moved": [
                f"{where} {ours:.4g} -> {'missing' if theirs is None else f'{theirs:.4g}'}"
                for where, ours, theirs in self.multipliers_moved[:SHOWN]
            ],
        }


def describe_change(path: Path, ours: bytes | None, theirs: bytes | None) -> ForeignWrite:
    """What another writer changed: `theirs` (None: the file is gone) against learnd's `ours` (None when learnd's
    own bytes are not at hand, as after a restart: then only whether the file parses is said)."""
    if theirs is None:
        return ForeignWrite(str(path), False, False, 0, (), (), ())
    try:
        found = orjson.loads(theirs)
    except orjson.JSONDecodeError:
        found = None
    if not isinstance(found, dict):
        return ForeignWrite(str(path), True, False, len(theirs), (), (), ())
    if ours is None:
        return ForeignWrite(str(path), True, True, len(theirs), (), (), ())
    mine = orjson.loads(ours)
    mine_keys = set(_key_paths(mine, ()))
    their_keys = set(_key_paths(found, ()))
    their_multipliers = dict(_multipliers(found))
    moved: list[tuple[str, float, float | None]] = []
    for where, value in _multipliers(mine):
        other = their_multipliers.get(where)
        if other is None or abs(other - value) > _MOVED:
            moved.append((where, value, other))
    moved.sort(key=lambda item: (-(abs(item[2] - item[1]) if item[2] is not None else float("inf")), item[0]))
    return ForeignWrite(
        str(path),
        True,
        True,
        len(theirs),
        tuple(_outermost(mine_keys - their_keys)),
        tuple(_outermost(their_keys - mine_keys)),
        tuple(moved),
    )


@dataclass(frozen=True, slots=True)
class TakeOver:
    """learnd's first write over a file it never wrote: where the file's content was kept (None: it could not be
    read), how it differed from learnd's, and what went wrong keeping it ("" when nothing did)."""

    kept: Path | None
    change: ForeignWrite | None
    problem: str


class OwnedFile:
    """A file learnd writes atomically and owns. It keeps the hash of what it last wrote, here and in a small
    record beside learnd's state (`record_path`), so a change by another writer is noticed while learnd runs and
    across a restart, and counts those changes (the record keeps the count and the last one for `learnd status`).

    Checking is cheap: a stat, compared with the stat taken after learnd's own write; the content is read and
    hashed only when that differs, or when `verify` asks for it.
    """

    def __init__(self, path: Path, record_path: Path) -> None:
        self.path = path
        self.record_path = record_path
        self.data: bytes | None = None
        record = read_record(record_path)
        owned = record is not None and record.get("path") == str(path)
        self.sha256: str | None = str(record["sha256"]) if owned and record is not None else None
        self.foreign_count = int(record.get("foreign_writes_count", 0)) if owned and record is not None else 0
        self.last_foreign: dict[str, Any] | None = record.get("last_foreign_write") if owned and record else None
        # Set when a foreign write was found and learnd's bytes are not back yet (a failed restore is retried).
        self.restore_pending = False
        # Set by the write that took the file over from another writer (learnd had never written it): where its
        # content was kept, and how it differed from learnd's. The caller reports it and clears it.
        self.taken_over: TakeOver | None = None
        self._signature: Signature | None = None
        self._seen: Signature | None = None

    def write(self, data: bytes) -> ForeignWrite | None:
        """Replace the file with `data` (temp file, fsync, rename); first says whether another writer had changed
        what learnd wrote there last (described against `data` when this process has not written before)."""
        found = self.foreign(lambda: data)
        if self.sha256 is None and self.data is None:
            self._keep_before_takeover(data)
        # The file is learnd's from the rename on, even if flushing its directory then fails: a failure there must
        # not make learnd's own bytes look like another writer's (and bring the older export back).
        write_bytes_atomic(self.path, data, replaced=partial(self._written, data))
        self._save_record()
        return found

    def _keep_before_takeover(self, data: bytes) -> None:
        """The first write to a file learnd never wrote (the bot's own weights, as its optimizer or nightly learner
        left them): its content is kept beside it, once, as `<name>.before-learnd`, so nothing of it is lost."""
        try:
            theirs = _read(self.path)
        except PermissionError as error:
            # Replaceable (the directory is learnd's to write) but not readable by learnd: nothing can be kept,
            # and that is said; the export goes on (refusing it would leave the bot without learnd's weights).
            self.taken_over = TakeOver(None, None, f"not readable by learnd ({error.strerror}): not kept")
            return
        if theirs is None or theirs == data or _is_learnds_export(theirs):
            return  # nothing there, or an export of learnd's own (a home moved: its record names the old path)
        kept = self.path.with_name(self.path.name + TAKEN_OVER_SUFFIX)
        if not kept.exists():
            write_bytes_atomic(kept, theirs)
        self.taken_over = TakeOver(kept, describe_change(self.path, data, theirs), "")

    def _written(self, data: bytes) -> None:
        self.data = data
        self.sha256 = hashlib.sha256(data).hexdigest()
        self._signature = _signature(self.path)
        self._seen = None
        self.restore_pending = False

    def restore(self) -> bool:
        """Write learnd's last bytes back; False when learnd has written nothing yet in this process."""
        if self.data is None:
            return False
        self.write(self.data)
        return True

    def is_intact(self, *, verify: bool = False) -> bool:
        """Whether the file still holds what learnd wrote last (True when learnd has not written it yet): by stat,
        or with `verify` by hashing the content."""
        if self.sha256 is None:
            return True
        signature = _signature(self.path)
        if signature == self._signature and not verify:
            return True
        data = _read(self.path)
        if data is not None and hashlib.sha256(data).hexdigest() == self.sha256:
            self._signature = signature  # the same bytes (touched, or rewritten identically): still learnd's
            return True
        return False

    def foreign(self, reference: Callable[[], bytes | None] = lambda: None) -> ForeignWrite | None:
        """The change another writer made since learnd last wrote the file, counted once per state of the file;
        None when it is intact (or learnd never wrote it). The change is described against learnd's last bytes, or,
        when this process has not written yet, against `reference()` (what learnd would write now)."""
        if self.is_intact():
            return None
        signature = _signature(self.path)
        if signature == self._seen:
            return None  # already counted; restore_pending says whether learnd's bytes are back
        self._seen = signature
        ours = self.data if self.data is not None else reference()
        theirs = _read(self.path)
        if self.data is None and theirs is not None and theirs == ours:
            # What learnd writes now: its own write, whose record a kill kept from following (the record still
            # names the write before it). Not a foreign write; the record catches up.
            self.sha256 = hashlib.sha256(theirs).hexdigest()
            self._signature = signature
            self._seen = None
            self._save_record()
            return None
        found = describe_change(self.path, ours, theirs)
        self.foreign_count += 1
        self.last_foreign = {"detected_ts": datetime.now(UTC).isoformat(), **found.summary()}
        self.restore_pending = True
        self._save_record()
        return found

    def _save_record(self) -> None:
        record = {
            "path": str(self.path),
            "sha256": self.sha256,
            "foreign_writes_count": self.foreign_count,
            "last_foreign_write": self.last_foreign,
        }
        # Not fsynced: it is written with every export, and a record a power cut loses only costs one warning (a
        # change reported at the next start that learnd made itself); the export it describes is fsynced.
        write_bytes_atomic(self.record_path, json_bytes(record), durable=False)


def read_record(path: Path) -> dict[str, Any] | None:
    """The guard record (what learnd last wrote where, and the foreign writes it found), None when missing or
    unreadable."""
    data = _read(path)
    if data is None:
        return None
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("sha256"), str) else None


def file_sha256(path: Path) -> str | None:
    """The hash of a file's content (None when it does not exist)."""
    data = _read(path)
    return None if data is None else hashlib.sha256(data).hexdigest()


def _signature(path: Path) -> Signature:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return MISSING
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _is_learnds_export(data: bytes) -> bool:
    """Whether bytes are a weights file learnd wrote (its own section beside the bot's): no bot writer adds it."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, dict) and isinstance(document.get("learnd"), dict)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _key_paths(node: Any, prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if not isinstance(node, dict) or len(prefix) >= _KEY_DEPTH:
        return
    for key, child in node.items():
        path = (*prefix, str(key))
        yield path
        yield from _key_paths(child, path)


def _outermost(paths: set[tuple[str, ...]]) -> list[str]:
    """Dotted paths, leaving out those whose parent is listed too (a dropped section is one entry)."""
    return sorted(".".join(path) for path in paths if path[:-1] not in paths)


def _multipliers(document: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """Every multiplier the bot can read from a document in its layout: bands' `current`, and Beta buckets
    decoded the bot's way."""
    for section in ("entry_weights", "exit_model"):
        weights = document.get(section)
        if not isinstance(weights, dict):
            continue
        bands = weights.get("weight_bands")
        if isinstance(bands, dict):
            for name, band in bands.items():
                if isinstance(band, dict) and _is_number(band.get("current")):
                    yield f"{section}.weight_bands.{name}", float(band["current"])
        betas = weights.get("regime_beta_distributions")
        if isinstance(betas, dict):
            for name, buckets in betas.items():
                if not isinstance(buckets, dict):
                    continue
                for bucket, params in buckets.items():
                    if isinstance(params, dict) and _is_number(params.get("alpha")) and _is_number(params.get("beta")):
                        alpha, beta = float(params["alpha"]), float(params["beta"])
                        if alpha >= 0.0 and beta >= 0.0 and alpha + beta > 0.0:  # alpha 0: the floor, 0.25
                            yield f"{section}.regime_beta_distributions.{name}.{bucket}", bot_multiplier(alpha, beta)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
