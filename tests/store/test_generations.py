"""store.generations: a finished generation (state/learnd.next/) replaces the live store by one rename, the
replaced one is kept in state/learnd.previous/, an incomplete one is never installed; seal_database leaves one
self-contained file."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from learnd.config import Settings
from learnd.errors import StateError
from learnd.store.database import Batch, LedgerRow, Store
from learnd.store.generations import (
    PREVIOUS_NAME,
    READY_NAME,
    generation_settings,
    install_ready_generation,
    seal_database,
)
from tests.conftest import build_settings

ROOT = Path(__file__).resolve().parents[2]


def write_generation(settings: Settings, marker: str) -> None:
    """A store whose one ledger key is `marker`, and journals and an export that say `marker`."""
    store = Store.open(settings.db_path)
    store.commit(Batch(ledger=[LedgerRow("trade", marker, "equity", "AMD", 1, "attribution", 0, b"{}")]))
    store.close()
    (settings.data_dir / "quarantine").mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "weight_learning.jsonl").write_text(f"{marker} changes\n")
    (settings.data_dir / "signal_suggestions.jsonl").write_text(f"{marker} suggestions\n")
    (settings.data_dir / "quarantine" / "orders.jsonl").write_text(f"{marker} quarantine\n")
    (settings.data_dir / "reports" / "daily").mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "reports" / "daily" / "2026-11-24.json").write_text(f"{marker} report\n")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "signal_weights.json").write_text(f'{{"generation": "{marker}"}}')


def marker_of(db: Path) -> str:
    """The ledger key of a store, read from its main file alone (no -wal beside it counts)."""
    alone = db.parent / "alone" / "learnd.db"
    alone.parent.mkdir(exist_ok=True)
    shutil.copyfile(db, alone)
    connection = sqlite3.connect(alone)
    try:
        keys = [key for (key,) in connection.execute("SELECT key FROM ledger")]
    finally:
        connection.close()
        shutil.rmtree(alone.parent)
    assert len(keys) == 1
    return str(keys[0])


def ready(settings: Settings) -> Settings:
    return generation_settings(settings, settings.state_dir / READY_NAME)


def previous(settings: Settings) -> Settings:
    return generation_settings(settings, settings.state_dir / PREVIOUS_NAME)


@pytest.fixture
def settings(home: Path) -> Settings:
    """A home whose live generation says `old`."""
    live = build_settings(home)
    write_generation(live, "old")
    return live


def test_nothing_ready_installs_nothing(settings: Settings) -> None:
    """Without state/learnd.next/ the live generation stays, and no previous one appears."""
    assert not install_ready_generation(settings)
    assert marker_of(settings.db_path) == "old"
    assert (settings.data_dir / "weight_learning.jsonl").read_text() == "old changes\n"
    assert not (settings.state_dir / PREVIOUS_NAME).exists()


def test_a_ready_generation_replaces_the_live_one_and_the_old_one_is_kept(settings: Settings) -> None:
    """The ready store, its journals and exports become the live ones; the replaced store and journals move to
    state/learnd.previous/; state/learnd.next/ is gone."""
    write_generation(ready(settings), "new")
    assert install_ready_generation(settings)
    assert marker_of(settings.db_path) == "new"
    assert_generation(settings, "new")
    kept = previous(settings)
    assert marker_of(kept.db_path) == "old"
    assert (kept.data_dir / "weight_learning.jsonl").read_text() == "old changes\n"
    assert (kept.data_dir / "signal_suggestions.jsonl").read_text() == "old suggestions\n"
    assert (kept.quarantine_dir / "orders.jsonl").read_text() == "old quarantine\n"
    assert (kept.data_dir / "reports" / "daily" / "2026-11-24.json").read_text() == "old report\n"
    assert not (settings.state_dir / READY_NAME).exists()


def assert_generation(settings: Settings, marker: str) -> None:
    """The home's store, journals and reports are generation `marker`'s; the bot's weights file is still the live
    one (the engine that opens the new store writes it, once that store has read what the old one had), and a copy
    of it is kept with the replaced generation."""
    assert marker_of(settings.db_path) == marker
    assert (settings.data_dir / "weight_learning.jsonl").read_text() == f"{marker} changes\n"
    assert (settings.data_dir / "signal_suggestions.jsonl").read_text() == f"{marker} suggestions\n"
    assert (settings.quarantine_dir / "orders.jsonl").read_text() == f"{marker} quarantine\n"
    assert (settings.data_dir / "reports" / "daily" / "2026-11-24.json").read_text() == f"{marker} report\n"
    assert (settings.state_dir / "signal_weights.json").read_text() == '{"generation": "old"}'
    assert (previous(settings).state_dir / "signal_weights.json").read_text() == '{"generation": "old"}'


# The renames of a swap of write_generation's homes (see the count's test).
RENAMES = 10


class Killed(BaseException):
    """Stands for a kill -9 at a rename (the seam: os.replace, which the swap calls for each of its moves)."""


@pytest.mark.parametrize("cut", range(1, RENAMES + 1))
def test_a_swap_cut_short_at_any_rename_is_finished_by_the_next_start(
    settings: Settings, cut: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill before each of the swap's renames (out of the live home, the store, into it): the next start finishes
    the swap, and the home holds all of the new generation and learnd.previous/ all of the old one (a kill after
    the store's rename deleted the new journals and reports; one before it, the old journals)."""
    write_generation(ready(settings), "new")
    real_replace = os.replace
    calls = 0

    def replace_until_cut(source: Path, target: Path) -> None:
        nonlocal calls
        calls += 1
        if calls == cut:
            raise Killed
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace_until_cut)
    with pytest.raises(Killed):
        install_ready_generation(settings)
    monkeypatch.setattr(os, "replace", real_replace)
    assert install_ready_generation(settings)
    assert_generation(settings, "new")
    kept = previous(settings)
    assert marker_of(kept.db_path) == "old"
    assert (kept.data_dir / "weight_learning.jsonl").read_text() == "old changes\n"
    assert (kept.data_dir / "signal_suggestions.jsonl").read_text() == "old suggestions\n"
    assert (kept.data_dir / "reports" / "daily" / "2026-11-24.json").read_text() == "old report\n"
    assert not (settings.state_dir / READY_NAME).exists()
    assert not install_ready_generation(settings)


def test_the_swap_has_as_many_renames_as_the_cut_test_covers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cut test above reaches every rename (three journals and the reports out of the live home, the copy of
    the bot's weights file kept with them, the store, the four in): counted here, so that a step added later cannot
    go untested."""
    write_generation(ready(settings), "new")
    real_replace = os.replace
    calls: list[str] = []

    def counting(source: Path, target: Path) -> None:
        calls.append(Path(source).name)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", counting)
    assert install_ready_generation(settings)
    assert len(calls) == RENAMES


def test_the_swap_is_a_rename_of_the_sealed_store(settings: Settings) -> None:
    """The live store becomes the very file that was built (same inode: one atomic rename, no copy), and the
    previous store is the very file that was live (a hard link), so no moment exists without a whole store."""
    write_generation(ready(settings), "new")
    built = ready(settings).db_path.stat().st_ino
    live = settings.db_path.stat().st_ino
    assert install_ready_generation(settings)
    assert settings.db_path.stat().st_ino == built
    assert previous(settings).db_path.stat().st_ino == live


def test_each_swap_keeps_only_the_generation_it_replaced(settings: Settings) -> None:
    """A second swap replaces state/learnd.previous/ with the generation that was live just before it."""
    write_generation(ready(settings), "second")
    assert install_ready_generation(settings)
    write_generation(ready(settings), "third")
    assert install_ready_generation(settings)
    assert marker_of(settings.db_path) == "third"
    assert marker_of(previous(settings).db_path) == "second"
    assert (previous(settings).data_dir / "weight_learning.jsonl").read_text() == "second changes\n"


def test_a_first_generation_installs_where_no_store_was(home: Path) -> None:
    """A home without a live store takes the ready one; the previous generation holds no store."""
    settings = build_settings(home)
    write_generation(ready(settings), "first")
    assert install_ready_generation(settings)
    assert marker_of(settings.db_path) == "first"
    assert not previous(settings).db_path.exists()


def test_a_ready_directory_without_its_store_is_cleared_not_installed(settings: Settings) -> None:
    """What an interrupted swap leaves (learnd.next/ whose store was already moved in) is removed; the live
    store and journals stay as they are."""
    leftover = ready(settings)
    leftover.data_dir.mkdir(parents=True)
    (leftover.data_dir / "weight_learning.jsonl").write_text("half-swapped\n")
    assert not install_ready_generation(settings)
    assert not (settings.state_dir / READY_NAME).exists()
    assert marker_of(settings.db_path) == "old"
    assert (settings.data_dir / "weight_learning.jsonl").read_text() == "old changes\n"


def test_a_build_in_progress_is_ignored(settings: Settings) -> None:
    """Only state/learnd.next/ is installed: a generation still being built (state/rebuild-1/) is left alone."""
    building = generation_settings(settings, settings.state_dir / "rebuild-1")
    write_generation(building, "unfinished")
    assert not install_ready_generation(settings)
    assert marker_of(settings.db_path) == "old"
    assert marker_of(building.db_path) == "unfinished"


def commit_and_die(db: Path, marker: str) -> None:
    """A writer that commits `marker` into `db` and dies without closing: the commit stays in the -wal file."""
    script = (
        "import os, sys\nfrom pathlib import Path\nfrom learnd.store.database import Batch, LedgerRow, Store\n"
        "store = Store.open(Path(sys.argv[1]))\n"
        "store.commit(Batch(ledger=[LedgerRow('trade', sys.argv[2], 'equity', 'AMD', 1, 'attribution', 0, b'{}')]))\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(db), marker], cwd=ROOT, check=True, timeout=30)
    assert db.with_name("learnd.db-wal").stat().st_size > 0


def test_seal_folds_the_wal_into_the_file(tmp_path: Path) -> None:
    """After seal_database the main file alone holds the last commit, and no -wal or -shm is left beside it."""
    db = tmp_path / "learnd.db"
    commit_and_die(db, "in-the-wal")
    seal_database(db)
    assert not db.with_name("learnd.db-wal").exists()
    assert not db.with_name("learnd.db-shm").exists()
    assert marker_of(db) == "in-the-wal"


def test_the_live_store_is_sealed_before_it_is_kept(home: Path) -> None:
    """A live store whose last commit is still in its WAL is kept whole in state/learnd.previous/."""
    settings = build_settings(home)
    commit_and_die(settings.db_path, "live-in-wal")
    write_generation(ready(settings), "new")
    assert install_ready_generation(settings)
    assert marker_of(previous(settings).db_path) == "live-in-wal"
    assert not settings.db_path.with_name("learnd.db-wal").exists()


def test_seal_refuses_a_wal_a_reader_still_holds(tmp_path: Path) -> None:
    """A reader inside a transaction keeps the WAL from being folded in: StateError, and the commit stays safe
    in the WAL (nothing is lost, nothing swapped)."""
    db = tmp_path / "learnd.db"
    commit_and_die(db, "in-the-wal")
    reader = sqlite3.connect(db)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM ledger").fetchone()
        with pytest.raises(StateError, match="could not checkpoint its WAL"):
            seal_database(db)
    finally:
        reader.close()
    store = Store.open(db, readonly=True)
    try:
        assert [row.key for row in store.ledger("trade")] == ["in-the-wal"]
    finally:
        store.close()
