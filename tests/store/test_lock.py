"""store.lock: one owner per home. A second holder, in a real second process, is refused naming the owner; the
lock is free again once released or once its owner dies; holder() only looks."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from learnd.errors import StateError
from learnd.store.lock import HomeLock

ROOT = Path(__file__).resolve().parents[2]

# A second process: takes the lock, says so, and holds it until told to release it (a line on stdin) or killed.
# With `probe` it takes a shared lock instead, as `status` does, and lets go of it by itself after 0.2 s.
_HOLDER = """
import fcntl, os, sys, time
from pathlib import Path
from learnd.store.lock import HomeLock

path, mode = Path(sys.argv[1]), sys.argv[2]
if mode == "probe":
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    print("held", flush=True)
    time.sleep(0.2)
    os.close(fd)
else:
    lock = HomeLock(path).acquire(mode)
    print("held", flush=True)
    sys.stdin.readline()
    lock.release()
print("released", flush=True)
sys.stdin.readline()
"""


class Holder:
    """The second process and what it says."""

    def __init__(self, path: Path, mode: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(path), mode],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.expect("held")

    def expect(self, word: str) -> None:
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == word

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        self.expect("released")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "state" / "learnd.lock"


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.stop()


def test_acquire_creates_the_state_directory_and_records_the_owner(lock_path: Path) -> None:
    """The lock file names its owner: this process's pid and what it is doing."""
    lock = HomeLock(lock_path).acquire("backfill")
    try:
        assert lock_path.read_text() == f"pid {os.getpid()} (backfill)\n"
    finally:
        lock.release()


def test_a_second_process_is_refused_naming_the_owner(lock_path: Path, holders: list[Holder]) -> None:
    """While another process owns the home, acquire raises StateError naming that process and its purpose,
    and leaves the owner's record as it was."""
    holders.append(owner := Holder(lock_path, "daemon"))
    with pytest.raises(StateError, match=rf"in use by another learnd \(pid {owner.process.pid} \(daemon\)\)"):
        HomeLock(lock_path).acquire("backfill")
    assert lock_path.read_text() == f"pid {owner.process.pid} (daemon)\n"


def test_this_process_holding_it_refuses_another_process(lock_path: Path) -> None:
    """The other way round: a second process cannot take a lock this one holds, and is told who has it."""
    lock = HomeLock(lock_path).acquire("daemon")
    try:
        probe = (
            "import sys; from pathlib import Path; from learnd.store.lock import HomeLock\n"
            "HomeLock(Path(sys.argv[1])).acquire('backfill')"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe, str(lock_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    finally:
        lock.release()
    assert result.returncode != 0
    # LockHeld: a StateError (exit 4 on the command line) that says the lock is held, not that it cannot be made.
    assert f"LockHeld: {lock_path.parent.parent} is in use by another learnd (pid {os.getpid()} (daemon))" in (
        result.stderr
    )


def test_a_released_lock_can_be_taken(lock_path: Path, holders: list[Holder]) -> None:
    """Once the owner releases it (still running), another process acquires it and records itself."""
    holders.append(owner := Holder(lock_path, "daemon"))
    owner.release()
    lock = HomeLock(lock_path).acquire("backfill")
    try:
        assert lock_path.read_text() == f"pid {os.getpid()} (backfill)\n"
    finally:
        lock.release()


def test_release_in_this_process_frees_it_at_once(lock_path: Path) -> None:
    """After release(), another lock on the same file (a new descriptor, which flock treats as another holder)
    is taken; release() twice is harmless."""
    first = HomeLock(lock_path).acquire("one")
    first.release()
    first.release()
    second = HomeLock(lock_path).acquire("two")
    assert lock_path.read_text() == f"pid {os.getpid()} (two)\n"
    second.release()


def test_an_owner_killed_with_sigkill_leaves_the_lock_free(lock_path: Path, holders: list[Holder]) -> None:
    """The kernel drops a dead process's flock: a crashed daemon never locks its home out."""
    holders.append(owner := Holder(lock_path, "daemon"))
    owner.process.send_signal(signal.SIGKILL)
    owner.process.wait(timeout=10)
    lock = HomeLock(lock_path).acquire("daemon")
    lock.release()


def test_a_probe_held_for_an_instant_is_waited_out(lock_path: Path, holders: list[Holder]) -> None:
    """A shared lock held briefly (a `status` probing) is not an owner: acquire waits it out and succeeds."""
    lock_path.parent.mkdir(parents=True)
    lock_path.touch()
    holders.append(prober := Holder(lock_path, "probe"))
    lock = HomeLock(lock_path).acquire("daemon")
    prober.expect("released")
    lock.release()


def test_holder_names_the_owner_while_held_and_none_after(lock_path: Path, holders: list[Holder]) -> None:
    """holder() says who owns the home while a process holds it, and None once it released."""
    holders.append(owner := Holder(lock_path, "daemon"))
    assert HomeLock(lock_path).holder() == f"pid {owner.process.pid} (daemon)"
    owner.release()
    assert HomeLock(lock_path).holder() is None


def test_holder_only_looks(lock_path: Path) -> None:
    """holder() creates no file where there is none, and leaves an existing one's content and lock alone."""
    assert HomeLock(lock_path).holder() is None
    assert not lock_path.parent.exists()
    lock_path.parent.mkdir(parents=True)
    lock_path.write_text("pid 1 (an old daemon)\n")
    before = lock_path.stat()
    assert HomeLock(lock_path).holder() is None
    after = lock_path.stat()
    assert lock_path.read_text() == "pid 1 (an old daemon)\n"
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nothing left held behind
    finally:
        os.close(fd)


# A process that adopts the lock handed over to it as descriptor argv[2] (as a respawned daemon does), says what
# the lock file records, and holds the lock until told to go.
_ADOPTER = """
import sys
from pathlib import Path
from learnd.store.lock import HomeLock

lock = HomeLock(Path(sys.argv[1])).adopt(int(sys.argv[2]), "daemon")
print(Path(sys.argv[1]).read_text().strip(), flush=True)
sys.stdin.readline()
lock.release()
"""


def test_a_lock_handed_over_is_held_through_the_next_process_and_adopted_there(lock_path: Path) -> None:
    """hand_over leaves the held lock's descriptor open for the next image; a process that inherits it adopts the
    lock (and records itself): nobody can take the home in between or while it runs, and it is free once released."""
    fd = HomeLock(lock_path).acquire("daemon").hand_over()
    adopter = subprocess.Popen(
        [sys.executable, "-c", _ADOPTER, str(lock_path), str(fd)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=(fd,),
    )
    os.close(fd)  # this process's copy: the lock lives on in the adopter's
    try:
        assert adopter.stdout is not None and adopter.stdin is not None
        assert adopter.stdout.readline().strip() == f"pid {adopter.pid} (daemon)"
        with pytest.raises(StateError, match=rf"in use by another learnd \(pid {adopter.pid} \(daemon\)\)"):
            HomeLock(lock_path).acquire("backfill")
        adopter.stdin.write("\n")
        adopter.stdin.flush()
        assert adopter.wait(timeout=10) == 0
    finally:
        if adopter.poll() is None:
            adopter.kill()
        adopter.wait(timeout=10)
        for stream in (adopter.stdin, adopter.stdout):
            if stream is not None:
                stream.close()
    HomeLock(lock_path).acquire("backfill").release()


def test_adopt_refuses_a_descriptor_of_another_file(lock_path: Path, tmp_path: Path) -> None:
    HomeLock(lock_path).acquire("daemon").release()
    other = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(StateError, match=r"is not .*learnd\.lock"):
            HomeLock(lock_path).adopt(other, "daemon")
    finally:
        os.close(other)


def test_adopt_refuses_a_descriptor_that_does_not_hold_the_lock(lock_path: Path, holders: list[Holder]) -> None:
    """The home's lock file, but opened apart from the owner's: it is no handed-over lock, and the owner keeps it."""
    holders.append(owner := Holder(lock_path, "daemon"))
    fd = os.open(lock_path, os.O_RDWR)
    try:
        with pytest.raises(StateError, match="does not hold it"):
            HomeLock(lock_path).adopt(fd, "daemon")
    finally:
        os.close(fd)
    assert lock_path.read_text() == f"pid {owner.process.pid} (daemon)\n"


def test_hand_over_needs_a_held_lock(lock_path: Path) -> None:
    with pytest.raises(StateError, match="not held"):
        HomeLock(lock_path).hand_over()
