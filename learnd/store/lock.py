"""The home lock: only one daemon (or one-shot writer) owns a home's state at a time."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from learnd.errors import StateError

_ACQUIRE_PATIENCE_S = 1.0


class HomeLock:
    """An exclusive flock on state/learnd.lock, held for the life of the process; the file records the owner's pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, purpose: str) -> HomeLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
                raise StateError(
                    f"{self.path.parent.parent} is in use by another learnd ({owner}); only one may own a home"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({purpose})\n".encode(), 0)
        self._fd = fd
        return self

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
