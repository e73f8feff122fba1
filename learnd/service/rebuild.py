"""`learnd backfill --from-scratch`: a new store generation rebuilt from all history beside the live one, then
swapped in atomically under the home lock. Until the swap the live state (and a daemon running on it) is untouched.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

from learnd.config import Settings
from learnd.errors import StateError
from learnd.service.backfill import BackfillReport, ProgressMode, run_backfill
from learnd.service.engine import Engine, LearnerFactory
from learnd.store.generations import READY_NAME, fsync_dir, generation_settings, seal_database
from learnd.store.lock import HomeLock, LockHeld

log = structlog.get_logger("learnd.rebuild")

_BUILDING_PREFIX: Final = "rebuild-"  # state/rebuild-<n>/: a generation being built (or a killed build's remains)
REBUILD_LOCK: Final = "learnd.rebuild.lock"  # in state/: held by the one rebuild under way


@dataclass(frozen=True, slots=True)
class RebuildResult:
    """What a rebuild did: its backfill, and whether the new generation is live (`swapped`) or waits in `ready`."""

    report: BackfillReport
    swapped: bool
    ready: Path


def rebuild_from_scratch(
    settings: Settings, *, learner_factory: LearnerFactory | None = None, progress: ProgressMode = "auto"
) -> RebuildResult:
    """Backfill all history into a new generation (state/rebuild-<n>/, with its own lock, state and data dirs,
    reading the home's logs), seal it, publish it as state/learnd.next/, then swap it in if the home lock is free.

    A kill at any point before the swap leaves the live state as it was. When a daemon holds the lock, the
    generation stays ready and the next start of learnd on this home (daemon or backfill) swaps it in.
    """
    # One rebuild at a time: a second one publishing its generation deleted the first's while the first was
    # swapping it in, and the live reports and journals went with it.
    rebuilding = HomeLock(settings.state_dir / REBUILD_LOCK)
    try:
        rebuilding.acquire("backfill --from-scratch")
    except LockHeld:
        holder = rebuilding.holder() or "unknown"
        raise StateError(
            f"another `learnd backfill --from-scratch` is rebuilding {settings.home} ({holder}); run it again once "
            "that one has ended"
        ) from None
    try:
        return _rebuild(settings, learner_factory, progress)
    finally:
        rebuilding.release()


def _rebuild(settings: Settings, learner_factory: LearnerFactory | None, progress: ProgressMode) -> RebuildResult:
    _remove_abandoned_builds(settings.state_dir)
    building = _new_build_dir(settings.state_dir)
    generation = generation_settings(settings, building)
    log.info("rebuild_started", generation=str(building))
    report = run_backfill(generation, learner_factory=learner_factory, progress=progress)
    seal_database(generation.db_path)
    ready = settings.state_dir / READY_NAME
    if ready.exists():
        shutil.rmtree(ready)  # an older finished generation never swapped in: this one is newer
    os.replace(building, ready)
    fsync_dir(settings.state_dir)
    log.info("rebuild_ready", generation=str(ready))
    if HomeLock(settings.lock_path).holder() is not None:
        log.info("rebuild_swap_deferred", reason="home lock held (daemon running)", generation=str(ready))
        return RebuildResult(report=report, swapped=False, ready=ready)
    # An engine opened on the home swaps the generation in (holding the lock) and writes the exports from it,
    # through the weights file's guard, as any start of learnd there would.
    try:
        engine = Engine(settings, start_at_end=False, purpose="rebuild swap", learner_factory=learner_factory)
    except StateError as error:
        if HomeLock(settings.lock_path).holder() is None:
            raise
        log.info("rebuild_swap_deferred", reason=f"home lock taken meanwhile ({error})", generation=str(ready))
        return RebuildResult(report=report, swapped=False, ready=ready)
    try:
        swapped = engine.swapped
    finally:
        engine.close()
    return RebuildResult(report=report, swapped=swapped, ready=ready)


def _remove_abandoned_builds(state_dir: Path) -> None:
    """Remove what killed rebuilds left (a build whose lock nobody holds); a build in progress is left alone."""
    if not state_dir.is_dir():
        return
    for candidate in state_dir.glob(f"{_BUILDING_PREFIX}*"):
        lock = HomeLock(candidate / "state" / "learnd.lock")
        if candidate.is_dir() and lock.holder() is None:
            shutil.rmtree(candidate)
            log.info("rebuild_abandoned_removed", generation=str(candidate))


def _new_build_dir(state_dir: Path) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    numbers = [
        int(path.name.removeprefix(_BUILDING_PREFIX))
        for path in state_dir.glob(f"{_BUILDING_PREFIX}*")
        if path.name.removeprefix(_BUILDING_PREFIX).isdigit()
    ]
    directory = state_dir / f"{_BUILDING_PREFIX}{max(numbers, default=0) + 1}"
    directory.mkdir()
    return directory
