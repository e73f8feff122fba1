"""The shell's line to systemd: sd_notify datagrams (READY, STATUS, WATCHDOG, STOPPING) to $NOTIFY_SOCKET.

No dependency; a no-op when the socket is unset. Watchdog beats come from the event loop, so a blocked loop misses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Final

import structlog

from learnd.service.engine import Engine

log = structlog.get_logger("learnd.notify")

STATUS_INTERVAL_S: Final = 5.0


class Notifier:
    """Sends sd_notify messages to one socket address; every method is a no-op when the address is None.

    A failed send is logged once per run of failures (the watchdog would otherwise log every beat) and counted.
    """

    def __init__(self, address: str | None) -> None:
        self.address = _socket_address(address)
        self.failure_count = 0
        self._failing = False
        self._socket: socket.socket | None = None
        if self.address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # A full receive queue must not block the event loop: the send fails and is logged instead.
            self._socket.setblocking(False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for through $NOTIFY_SOCKET (a disabled one when unset)."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def is_enabled(self) -> bool:
        return self._socket is not None

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up is complete (Type=notify waits for this)."""
        return self.send(READY="1", STATUS=status)

    def status(self, text: str) -> bool:
        """Set the one-line status `systemctl status` shows."""
        return self.send(STATUS=text)

    def stopping(self) -> bool:
        """Tell systemd shutdown has begun."""
        return self.send(STOPPING="1", STATUS="stopping")

    def watchdog(self) -> bool:
        """One keep-alive beat (WatchdogSec= restarts the service when they stop)."""
        return self.send(WATCHDOG="1")

    def send(self, **fields: str | None) -> bool:
        """Send one datagram of KEY=value lines (None values left out); True when it was sent."""
        if self._socket is None or self.address is None:
            return False
        # The protocol is newline-separated: a newline inside a value would start a bogus assignment.
        lines = [f"{key}={' '.join(value.splitlines())}" for key, value in fields.items() if value is not None]
        try:
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError as error:
            self.failure_count += 1
            if not self._failing:
                log.warning("notify_send_failed", address=self.address.replace("\0", "@"), error=str(error))
            self._failing = True
            return False
        if self._failing:
            log.info("notify_send_recovered", failure_count=self.failure_count)
        self._failing = False
        return True


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of $WATCHDOG_USEC in seconds when systemd asks this process for watchdog beats, else None."""
    env = os.environ if environ is None else environ
    raw_usec = env.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    raw_pid = env.get("WATCHDOG_PID")
    if raw_pid and raw_pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        usec = 0
    if usec <= 0:
        log.warning("watchdog_usec_invalid", value=raw_usec)
        return None
    return usec / 2_000_000


def progress(engine: Engine) -> str:
    """The status line: what was learned since start and how far behind the sources the tailers are."""
    totals = engine.totals
    lag_bytes = sum(tailer.pending_bytes() for tailer in engine.ingestor.tailers.values())
    return (
        f"{totals.applied_count} lines applied, {totals.quarantined_count} quarantined, "
        f"lag {lag_bytes} bytes over {len(engine.ingestor.tailers)} sources"
    )


def notify_ready(engine: Engine, notifier: Notifier | None = None) -> None:
    """Send READY=1 with a first status; call once the store is open and the tailers have started."""
    if notifier is not None:
        _send_ready(engine, notifier)
        return
    with Notifier.from_environ() as own:
        _send_ready(engine, own)


def _send_ready(engine: Engine, notifier: Notifier) -> None:
    if notifier.ready(progress(engine)):
        log.info("notify_ready_sent")


async def watchdog_service(
    engine: Engine,
    stop: asyncio.Event,
    *,
    notifier: Notifier | None = None,
    environ: Mapping[str, str] | None = None,
    status_interval_s: float = STATUS_INTERVAL_S,
    respawning: Callable[[], bool] | None = None,
) -> None:
    """A ServiceHook: WATCHDOG=1 every half $WATCHDOG_USEC and STATUS= every few seconds, STOPPING=1 on stop
    (unless `respawning` says the stop is for a respawn: the service goes on, in the process's next image).

    Beats are sent from the event loop on purpose: a loop blocked for longer than WatchdogSec= gets restarted.
    """
    own = notifier is None
    active = Notifier.from_environ(environ) if notifier is None else notifier
    try:
        if not active.is_enabled:
            return
        beat_s = watchdog_interval_s(environ)
        loop = asyncio.get_running_loop()
        next_beat = next_status = loop.time()
        while not stop.is_set():
            now = loop.time()
            if now >= next_status:
                active.status(progress(engine))
                next_status = now + status_interval_s
            if beat_s is not None and now >= next_beat:
                active.watchdog()
                next_beat = now + beat_s
            due = next_status if beat_s is None else min(next_beat, next_status)
            # Timing out is the normal way round the loop; only `stop` ends it early.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, due - loop.time()))
        if respawning is not None and respawning():
            active.status("respawning to return the start-up's memory")
        else:
            active.stopping()
    finally:
        if own:
            active.close()


def _socket_address(address: str | None) -> str | None:
    """The sendto() address for $NOTIFY_SOCKET: a path, or '@name' for the abstract namespace; None when unusable."""
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    # systemd only hands out these two forms (and vsock, which learnd has no use for).
    log.warning("notify_socket_unsupported", address=address)
    return None
