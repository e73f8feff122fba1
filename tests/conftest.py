"""Shared fixtures: a bot home in tmp_path and settings built from it alone (the host's LEARND_* never leak in), and
one simulated home learned by a backfill, shared by the tests of what learnd exports for the bot."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from learnd.config import DEFAULT_SOURCES, Settings, load_settings
from learnd.devtools.simulate import simulate
from learnd.service.backfill import run_backfill
from learnd.store.lock import HomeLock

LEARNED_TRADES = 2000
LEARNED_SEED = 3


def build_settings(
    home: Path, *, sources: tuple[str, ...] = (), overrides: Mapping[str, object] | None = None
) -> Settings:
    """Settings for `home` with an empty environment; `sources` (when given) are the only default sources enabled.

    The wall-clock jobs stay off (they close sessions through today) and so does the metrics port: these
    settings serve in-process tests about lines.
    """
    table: dict[str, object] = {
        "schedule.daily_enabled": False,
        "schedule.weekly_enabled": False,
        "metrics_enabled": False,
    }
    if sources:
        table.update({f"sources.{name}.enabled": False for name in DEFAULT_SOURCES if name not in sources})
    table.update(overrides or {})
    return load_settings(home=home, environ={}, overrides=table)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty bot home with its logs directory."""
    (tmp_path / "logs").mkdir()
    return tmp_path


def settings_for(home: Path, **overrides: object) -> Settings:
    """build_settings with overrides given as keywords (`backfill_batch_lines=50`)."""
    return build_settings(home, overrides=overrides)


@contextmanager
def home_owned(settings: Settings) -> Iterator[str]:
    """The home lock held as a running daemon holds it; yields the owner record it wrote."""
    lock = HomeLock(settings.lock_path).acquire("daemon")
    try:
        yield settings.lock_path.read_text().strip()
    finally:
        lock.release()


@pytest.fixture(scope="session")
def learned_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated home (2000 trades, regimes including RISK_ON) learned by one backfill of its attribution and exit
    logs; the jobs and the heavy signal and order logs are left out (they do not feed the trade learner). Read it,
    never write it: the session shares it."""
    home = tmp_path_factory.mktemp("learned")
    simulate(home, LEARNED_TRADES, seed=LEARNED_SEED)
    run_backfill(build_settings(home, sources=("attribution", "exit")), progress="none")
    return home
