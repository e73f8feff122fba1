"""learnd's small exception tree: everything learnd raises on purpose derives from LearndError."""

from __future__ import annotations


class LearndError(Exception):
    """Base of every error learnd raises deliberately."""


class ConfigError(LearndError):
    """Invalid configuration; the message names the offending key."""


class UsageError(LearndError):
    """A command-line argument argparse accepts but learnd cannot use (exit 2, as argparse's own usage errors)."""


class RecordError(LearndError):
    """A line that is well-formed JSON but not a record learnd can use; it is quarantined."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class StopRequested(LearndError):
    """Work was asked to stop (SIGTERM, SIGINT) before it finished; nothing of it was committed."""


class StateError(LearndError):
    """The state directory or store cannot be used as is (corrupt, foreign, newer schema, locked)."""


class ExportsFailed(LearndError):
    """A commit went through, then writing the journals or JSON exports after it failed (a full disk): what was
    committed stands, and the files are written again at a later commit."""
