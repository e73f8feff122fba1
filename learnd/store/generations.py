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

log = structlog.get_logger("learnd.generations")

READY_NAME: Final = "learnd.next"  # state/learnd.next/: a finished generation waiting for the swap
PREVIOUS_NAME: Final = "learnd.previous"  # state/learnd.previous/: the generation the last swap replaced
_JOURNALS: Final = ("weight_learning.jsonl", "quarantine")


def generation_settings(settings: Settings, directory: Path) -> Settings:
    """The home's settings with state and data redirected into a generation directory; the sources are shared."""
    return replace(settings, state_dir=directory / "state", data_dir=directory / "data")


def install_ready_generation(settings: Settings) -> bool:
    """Swap a finished generation (state/learnd.next/) in for the live store. The caller holds the home lock.

    The one atomic step is os.replace of the sealed database over state/learnd.db. Before it, the live database
    is sealed too (its WAL checkpointed into it, so no -wal of the old generation can be paired with the new
    file) and hard-linked into state/learnd.previous/, and the live journals move there (derived data: a crash
    before the new ones are in place makes the engine rewrite them from the store). Returns False when there is
    nothing to install.
    """
    ready = settings.state_dir / READY_NAME
    new_generation = generation_settings(settings, ready)
    if not new_generation.db_path.exists():
        if ready.exists():
            shutil.rmtree(ready)  # what an interrupted swap left behind after its database was moved in
        return False
    previous = settings.state_dir / PREVIOUS_NAME
    if previous.exists():
        shutil.rmtree(previous)
    old_generation = generation_settings(settings, previous)
    old_generation.state_dir.mkdir(parents=True)
    old_generation.data_dir.mkdir(parents=True)
    if settings.db_path.exists():
        seal_database(settings.db_path)
        try:
            os.link(settings.db_path, old_generation.db_path)
        except OSError:
            shutil.copy2(settings.db_path, old_generation.db_path)  # a filesystem without hard links
    for name in _JOURNALS:
        if (settings.data_dir / name).exists():
            os.replace(settings.data_dir / name, old_generation.data_dir / name)
    os.replace(new_generation.db_path, settings.db_path)
    fsync_dir(settings.state_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    for name in _JOURNALS:
        if (new_generation.data_dir / name).exists():
            os.replace(new_generation.data_dir / name, settings.data_dir / name)
    # Exports written from the new generation's state, so the bot sees it before the next commit rewrites them.
    for export in sorted(new_generation.state_dir.glob("*.json")):
        os.replace(export, settings.state_dir / export.name)
    fsync_dir(settings.data_dir)
    fsync_dir(settings.state_dir)
    shutil.rmtree(ready)
    log.info("rebuild_swapped", db=str(settings.db_path), previous=str(previous))
    return True


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
