"""A bot in a process of its own: it opens its log once and appends through that descriptor until told to reopen,
as the real bot does, so a rename, a rename-over or a deletion leaves it writing to a file the path no longer names.
And the file a restarted bot may get: a new one on the inode of the one just deleted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType

_SCRIPT = """
import sys
path = sys.argv[1]
log = open(path, "ab", buffering=0)
for command in sys.stdin.buffer:
    verb, _, argument = command.rstrip(b"\\n").partition(b" ")
    if verb == b"write":
        log.write(bytes.fromhex(argument.decode()))
    elif verb == b"reopen":
        log.close()
        log = open(path, "ab", buffering=0)
    sys.stdout.write("done\\n")
    sys.stdout.flush()
"""


class BotProcess:
    """`write()` returns once the bytes are in the file (written by the other process, unbuffered)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._process = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._ask(b"hello")  # the log is open once this returns

    def __enter__(self) -> BotProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def write(self, data: bytes) -> None:
        """Append `data` through the descriptor opened at start (or at the last reopen)."""
        self._ask(b"write " + data.hex().encode())

    def reopen(self) -> None:
        """Close the log and open the path again (what a bot does on logrotate's signal)."""
        self._ask(b"reopen")

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def _ask(self, command: bytes) -> None:
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(command + b"\n")
        process.stdin.flush()
        reply = process.stdout.readline()
        if reply != b"done\n":
            raise AssertionError(f"the bot process failed on {command[:40]!r} (exit {process.poll()})")


def create_on_freed_inode(path: Path, ino: int) -> bool:
    """Create `path`, on inode `ino` (just freed) if the file system gives it back: ext4 hands a freed inode to the
    next file created in its group, but another process may be quicker, so a file that got another inode is kept
    aside (not to be handed back at once) and the creation retried a few times. Whether it got `ino`."""
    aside: list[Path] = []
    try:
        for attempt in range(32):
            path.touch()
            if path.stat().st_ino == ino:
                return True
            aside.append(path.with_name(f"{path.name}.not-reused-{attempt}"))
            os.rename(path, aside[-1])
        os.rename(aside.pop(), path)
        return False
    finally:
        for other in aside:
            other.unlink()
