"""The home lock: only one daemon (or one-shot writer) owns a home's state at a time."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from learnd.errors import StateError

_ACQUIRE_PATIENCE_S = 1.0


class LockHeld(StateError):
    """The lock is held by another process (not: the directory cannot be written)."""


class HomeLock:
    """An exclusive flock on state/learnd.lock, held for the life of the process; the file records the owner's pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, purpose: str) -> HomeLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            # A read-only mount, a path under a file, a directory of another owner: one line, not a traceback.
            raise StateError(
                f"the state directory {self.path.parent} cannot be written ({error.strerror or error}): learnd "
                "keeps its store and lock there"
            ) from None
        deadline = time.monotonic() + _ACQUIRE_PATIENCE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # `status` and `audit` probe the lock for an instant (holder()); only a lock held longer is an owner.
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                raise LockHeld(
                    f"{self.path.parent.parent} is in use by another learnd ({owner}); only one may own a home"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({purpose})\n".encode(), 0)
        self._fd = fd
        return self

    def adopt(self, fd: int, purpose: str) -> HomeLock:
        """Take over the lock an earlier image of this process held and handed over across exec (`hand_over`):
        `fd` must be an open descriptor of this home's lock file, and the lock is still held through it (taking it
        again on the same open file cannot wait). StateError otherwise: nothing else may claim a home this way."""
        try:
            held, named = os.fstat(fd), os.stat(self.path)
        except OSError as error:
            raise StateError(f"the home lock handed over (descriptor {fd}) is not usable: {error}") from None
        if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):
            raise StateError(f"descriptor {fd} handed over as the home lock is not {self.path}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(f"descriptor {fd} handed over as the home lock does not hold it") from None
        os.set_inheritable(fd, False)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({purpose})\n".encode(), 0)
        self._fd = fd
        return self

    def hand_over(self) -> int:
        """Give the held lock to the next image of this process: its descriptor, kept open across exec (the lock
        goes with the open file); this object no longer holds it."""
        fd = self._fd
        if fd is None:
            raise StateError("the home lock is not held; there is nothing to hand over")
        os.set_inheritable(fd, True)
        self._fd = None
        return fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def holder(self) -> str | None:
        """Who holds the lock (its recorded owner), or None when nobody does. Probes with a shared lock taken and
        released at once (acquire() waits that instant out)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)
