"""Store generations: a finished rebuild (state/learnd.next/) swapped in for the live store in one atomic step,
the replaced one kept in state/learnd.previous/. The engine swaps at open, under the home lock.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Final

import structlog

from learnd.config import Settings
from learnd.errors import StateError
from learnd.sources.files import Identity, inspect_file
from learnd.sources.tailer import Checkpoint
from learnd.store.database import Store

log = structlog.get_logger("learnd.generations")

READY_NAME: Final = "learnd.next"  # state/learnd.next/: a finished generation waiting for the swap
PREVIOUS_NAME: Final = "learnd.previous"  # state/learnd.previous/: the generation the last swap replaced
# What a generation holds in its data directory beside its store: the journals (the store drops what they hold, so
# they are the only copy) and the reports (the store records their periods as run, so none is written again).
# The journals and their marks (exports.files.journal_mark: the seq each wrote last), the quarantine journals, the
# reports.
_DATA: Final = (
    "weight_learning.jsonl",
    ".weight_learning.jsonl.seq",
    "signal_suggestions.jsonl",
    ".signal_suggestions.jsonl.seq",
    "quarantine",
    "reports",
)
# In state/learnd.next/ while a swap moves files: a swap that a kill cut short is finished at the next start.
_SWAPPING: Final = "swapping"
_EXPORTS_WAIT: Final = "exports-wait-for-previous"
# A guard record (exports.guard) names the file it guards: the generation's names a file that is not the bot's.
_GUARD_SUFFIX: Final = ".guard.json"


def generation_settings(settings: Settings, directory: Path) -> Settings:
    """The home's settings with state and data redirected into a generation directory, the bot's weights file
    too (the live one is the bot's until the swap); the sources are shared."""
    state_dir = directory / "state"
    return replace(
        settings,
        state_dir=state_dir,
        data_dir=directory / "data",
        signal_weights_path=state_dir / settings.signal_weights_path.name,
    )


def install_ready_generation(settings: Settings) -> bool:
    """Swap a finished generation (state/learnd.next/) in for the live store. The caller holds the home lock.

    The one atomic step is os.replace of the sealed database over state/learnd.db. Before it, the live database
    is sealed too (its WAL checkpointed into it, so no -wal of the old generation can be paired with the new
    file) and hard-linked into state/learnd.previous/, and the live journals and reports move there; after it,
    the new generation's journals, reports and exports move in. A mark in state/learnd.next/ says a swap is under
    way: a kill at any point leaves it, and the next start finishes the swap where it stopped (nothing of either
    generation is deleted until every file is in its place). Returns False when there is nothing to install.
    """
    ready = settings.state_dir / READY_NAME
    new_generation = generation_settings(settings, ready)
    previous = settings.state_dir / PREVIOUS_NAME
    old_generation = generation_settings(settings, previous)
    swapping = ready / _SWAPPING
    if swapping.exists():
        log.info("rebuild_swap_resumed", generation=str(ready))
    elif not new_generation.db_path.exists():
        if ready.exists():
            shutil.rmtree(ready)  # not a finished generation (a swap of an older learnd that had moved it in)
        return False
    else:
        behind = lines_it_cannot_read(settings, new_generation)
        if behind:
            # The live store learned lines after the rebuild read history (a daemon ran on), and the files no
            # longer hold them to be read again: swapped in, the generation would lose them for good.
            shutil.rmtree(ready)
            log.error(
                "rebuild_discarded",
                reasons=behind,
                advice="run `learnd backfill --from-scratch` again; with no daemon running it swaps at once",
            )
            return False
        if previous.exists():
            shutil.rmtree(previous)  # the generation an earlier swap replaced: this swap's keeps the live one
        swapping.write_bytes(b"")
        fsync_dir(ready)
    old_generation.state_dir.mkdir(parents=True, exist_ok=True)
    old_generation.data_dir.mkdir(parents=True, exist_ok=True)
    if new_generation.db_path.exists():
        if settings.db_path.exists() and not old_generation.db_path.exists():
            seal_database(settings.db_path)
            try:
                os.link(settings.db_path, old_generation.db_path)
            except OSError:
                shutil.copy2(settings.db_path, old_generation.db_path)  # a filesystem without hard links
        for name in _DATA:
            if (settings.data_dir / name).exists() and not (old_generation.data_dir / name).exists():
                os.replace(settings.data_dir / name, old_generation.data_dir / name)
        fsync_dir(old_generation.state_dir)
        fsync_dir(old_generation.data_dir)
        # Until the new store has read what the live one had, the bot's weights file stays as it is (see
        # positions_to_reach): the mark says so to every start, until the commit that gets there removes it.
        exports_wait_mark(settings).write_bytes(b"")
        os.replace(new_generation.db_path, settings.db_path)
        fsync_dir(settings.state_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    for name in _DATA:
        if (new_generation.data_dir / name).exists():
            os.replace(new_generation.data_dir / name, settings.data_dir / name)
    # The bot's weights file stays as it is (a copy is kept with the replaced generation): the engine that opens
    # the new store writes it once that store has learned at least what the live one had (a deferred swap reads
    # again what the daemon learned after the rebuild first), so the file the bot loads never goes back. The guard
    # record stays too: it names the live file, which learnd still owns.
    live_weights = settings.signal_weights_path
    kept_weights = old_generation.state_dir / live_weights.name
    if live_weights.exists() and not kept_weights.exists():
        # Copied beside, then renamed: a kill mid-copy leaves no torn copy that the resumed swap would keep.
        copying = kept_weights.with_name(f".{kept_weights.name}.tmp")
        shutil.copy2(live_weights, copying)
        os.replace(copying, kept_weights)
        fsync_dir(old_generation.state_dir)
    for export in sorted(new_generation.state_dir.glob("*.json")):
        if export.name != live_weights.name and not export.name.endswith(_GUARD_SUFFIX):
            os.replace(export, settings.state_dir / export.name)
    fsync_dir(settings.data_dir)
    fsync_dir(settings.state_dir)
    shutil.rmtree(ready)
    log.info("rebuild_swapped", db=str(settings.db_path), previous=str(previous))
    return True


def exports_wait_mark(settings: Settings) -> Path:
    """Present from a swap until the installed store has read what the replaced one had (its exports wait)."""
    return settings.state_dir / _EXPORTS_WAIT


def positions_to_reach(settings: Settings, store: Store) -> dict[str, Checkpoint]:
    """After a swap: the positions the replaced store had read to that `store` (the installed one) has not reached
    yet, per source (none after a swap at once; after a deferred one, what the daemon read after the rebuild)."""
    replaced = generation_settings(settings, settings.state_dir / PREVIOUS_NAME).db_path
    if not replaced.exists():
        return {}
    old = Store.open(replaced, readonly=True)
    try:
        positions = old.checkpoints()
    finally:
        old.close()
    return {name: position for name, position in positions.items() if not has_reached(store.checkpoint(name), position)}


def has_reached(position: Checkpoint | None, target: Checkpoint) -> bool:
    """Whether reading that stands at `position` has read what `target` had: past it in the same file, or moved on
    to another file (a source drains its file before it follows the next)."""
    if not target.fp_len:
        return True
    if position is None or not position.fp_len:
        return False
    if (position.dev, position.ino) != (target.dev, target.ino):
        return True
    return position.offset >= target.offset


def lines_it_cannot_read(settings: Settings, generation: Settings) -> list[str]:
    """Why the generation could not read again what the live store read after it was built (empty: it can, and
    will at its first start). A source whose live position is past the generation's must still be read from the
    same file, which must still begin as it did and hold the bytes read: a file rotated, rewritten or truncated
    since may have taken those lines with it."""
    if not settings.db_path.exists():
        return []
    live = Store.open(settings.db_path, readonly=True)
    try:
        built = Store.open(generation.db_path, readonly=True)
        try:
            return [
                f"{name}: {reason}"
                for name, position in sorted(live.checkpoints().items())
                if (reason := _unreadable(position, built.checkpoint(name)))
            ]
        finally:
            built.close()
    finally:
        live.close()


def _unreadable(live: Checkpoint, built: Checkpoint | None) -> str:
    """Why the bytes the live store read of its file, past where the generation got, cannot be read again."""
    if not live.fp_len:
        return ""  # no file read there: nothing to read again
    if built is not None and built.fp_hash == live.fp_hash and built.offset >= live.offset:
        return ""
    found = inspect_file(Path(live.path), is_current=True)
    if found is None or Identity(live.fp_hash, live.fp_len) not in found.ladder:
        return f"{live.path} no longer begins as it did (rewritten, truncated or gone)"
    # The same file (its identity grows with its first lines, up to 4 KiB, so the two may name it by different
    # prefixes of it).
    if (
        built is None
        or (built.dev, built.ino) != (live.dev, live.ino)
        or Identity(built.fp_hash, built.fp_len) not in found.ladder
    ):
        return f"{live.path} is not the file the rebuild read (rotated since)"
    if found.disk_bytes < live.offset:
        return f"{live.path} holds {found.disk_bytes} bytes, the live store read {live.offset}"
    return ""


def seal_database(path: Path) -> None:
    """Fold the WAL into the database file and close, leaving one self-contained file that can be renamed."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA busy_timeout=5000")
        busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise StateError(f"{path}: could not checkpoint its WAL (a reader or writer holds it); nothing swapped")
    finally:
        connection.close()
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise StateError(f"{path}: written to while being sealed; nothing swapped")
    # The last connection normally removes both; leftovers of a sealed file describe nothing and must not be
    # paired with the file that replaces it.
    wal.unlink(missing_ok=True)
    path.with_name(path.name + "-shm").unlink(missing_ok=True)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
