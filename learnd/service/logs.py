"""Structured logs: structlog, JSON lines on stdout when not on a TTY (journald keeps them), console on a TTY.

JSON keeps every event, the per-period and per-file ones at debug; the console shows info and up, and the
progress bars (service.backfill) stand in for the per-period lines.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO, cast

import structlog


def uses_console(log_format: str = "auto") -> bool:
    """Whether logs go to a person (the console renderer) rather than to a machine (JSON lines)."""
    return log_format == "console" or (log_format == "auto" and sys.stdout.isatty())


def configure_logging(log_format: str = "auto", level: int | None = None) -> None:
    """Route structlog to stdout as JSON (`json`), human-readable (`console`) or by TTY (`auto`); `level` defaults
    to debug for JSON and info for the console."""
    console = uses_console(log_format)
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    if level is None:
        level = logging.INFO if console else logging.DEBUG
    factory: Callable[..., Any] = (
        structlog.WriteLoggerFactory(cast(TextIO, _BarSafeStdout()))
        if console
        else structlog.PrintLoggerFactory(sys.stdout)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )


class _BarSafeStdout:
    """stdout for console logs: each line goes through tqdm, which lifts a progress bar off the terminal and puts it
    back under the line (a plain write would land in the middle of the bar)."""

    def write(self, text: str) -> int:
        # Imported here: JSON logs (the daemon under systemd) never load tqdm.
        from tqdm import tqdm

        tqdm.write(text.removesuffix("\n"), file=sys.stdout)
        return len(text)

    def flush(self) -> None:
        sys.stdout.flush()
