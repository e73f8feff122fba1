"""sd_notify over a real AF_UNIX datagram socket, the watchdog service, and the systemd unit file."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from learnd.config import load_settings
from learnd.service.engine import Engine
from learnd.service.notify import Notifier, notify_ready, watchdog_interval_s, watchdog_service

UNIT_PATH = Path(__file__).resolve().parents[2] / "systemd" / "learnd.service"


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's, exported as $NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield receiver
    receiver.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "orders.jsonl").write_bytes(b'{"ts": "2026-01-05T15:00:00+00:00", "symbol": "AAPL"}\n')
    settings = load_settings(home=home, environ={})
    opened = Engine(settings, start_at_end=False, purpose="test")
    yield opened
    opened.close()


def received(receiver: socket.socket) -> list[str]:
    messages: list[str] = []
    while True:
        try:
            messages.append(receiver.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_disabled_without_notify_socket() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.is_enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False


def test_messages_reach_a_path_socket(notify_socket: socket.socket) -> None:
    with Notifier.from_environ() as notifier:
        assert notifier.ready("starting")
        assert notifier.status("two\nlines")
        assert notifier.watchdog()
        assert notifier.stopping()
    assert received(notify_socket) == [
        "READY=1\nSTATUS=starting",
        "STATUS=two lines",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping",
    ]


def test_abstract_namespace_address() -> None:
    """'@name' in $NOTIFY_SOCKET means the abstract socket '\\0name'."""
    name = f"learnd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.setblocking(False)
        with Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}) as notifier:
            assert notifier.ready()
        assert received(receiver) == ["READY=1"]


def test_failed_send_is_logged_once_per_run_of_failures(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs, Notifier(str(tmp_path / "missing.sock")) as notifier:
        assert not notifier.watchdog()
        assert not notifier.watchdog()
    assert notifier.failure_count == 2
    assert [entry["event"] for entry in logs] == ["notify_send_failed"]


def test_relative_address_is_refused() -> None:
    with structlog.testing.capture_logs() as logs:
        notifier = Notifier("relative/notify.sock")
    assert not notifier.is_enabled
    assert logs[0]["event"] == "notify_socket_unsupported"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(
    environ: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval_s(environ) == expected


async def test_ready_status_watchdog_stopping_in_order(
    notify_socket: socket.socket, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "40000")
    notify_ready(engine)
    stop = asyncio.Event()
    service = asyncio.create_task(watchdog_service(engine, stop))
    await asyncio.sleep(0.1)
    stop.set()
    await service
    messages = received(notify_socket)
    # The one orders line (54 bytes) is not read yet: the tailers hold their files from the start, so it is lag.
    assert messages[0] == "READY=1\nSTATUS=0 lines applied, 0 quarantined, lag 54 bytes over 4 sources"
    assert messages[1].startswith("STATUS=") and "lag" in messages[1]
    assert messages[2] == "WATCHDOG=1"
    assert messages.count("WATCHDOG=1") >= 2
    assert all(message.startswith(("STATUS=", "WATCHDOG=")) for message in messages[1:-1])
    assert messages[-1] == "STOPPING=1\nSTATUS=stopping"


async def test_a_stop_for_a_respawn_sends_no_stopping(
    notify_socket: socket.socket, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon stopping only to execute its next image (service.daemon.Respawn) is no stop of the service:
    systemd hears a status, not STOPPING=1."""
    monkeypatch.setenv("WATCHDOG_USEC", "40000")
    stop = asyncio.Event()
    service = asyncio.create_task(watchdog_service(engine, stop, respawning=lambda: True))
    await asyncio.sleep(0.05)
    stop.set()
    await service
    messages = received(notify_socket)
    assert not any("STOPPING=1" in message for message in messages)
    assert messages[-1] == "STATUS=respawning to return the start-up's memory"


async def test_watchdog_keeps_beating_while_a_long_job_awaits_in_steps(
    notify_socket: socket.socket, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # a beat every 20 ms

    async def long_job() -> int:
        steps = 0
        for _ in range(40):
            await asyncio.sleep(0.01)
            steps += 1
        return steps

    stop = asyncio.Event()
    service = asyncio.create_task(watchdog_service(engine, stop))
    await asyncio.sleep(0)
    received(notify_socket)
    assert await long_job() == 40
    beats = received(notify_socket).count("WATCHDOG=1")
    stop.set()
    await service
    assert beats >= 3


async def test_a_blocked_loop_sends_no_beats(
    notify_socket: socket.socket, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The beats come from the loop, not a thread: while the loop is blocked, systemd hears nothing."""
    monkeypatch.setenv("WATCHDOG_USEC", "20000")
    stop = asyncio.Event()
    service = asyncio.create_task(watchdog_service(engine, stop))
    await asyncio.sleep(0.05)
    received(notify_socket)
    time.sleep(0.1)  # blocks the loop on purpose
    assert received(notify_socket) == []
    stop.set()
    await service


async def test_watchdog_service_returns_at_once_without_notify_socket(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    await asyncio.wait_for(watchdog_service(engine, asyncio.Event()), timeout=1)


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value it is given (systemd units repeat keys such as SystemCallFilter=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_unit_file_has_the_required_keys() -> None:
    unit = read_unit(UNIT_PATH)
    service = unit["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/opt/learnd/.venv/bin/learnd --home /srv/bot run",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "3",  # a configuration error: every start would meet it again
        "WatchdogSec": "30",
        "TimeoutStopSec": "20",
        "User": "learnd",
        "Group": "learnd",
        "WorkingDirectory": "/srv/bot",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/srv/bot/state /srv/bot/data",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter": "@system-service",
        "SystemCallArchitectures": "native",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
    }
    assert {key: service.get(key, [None])[0] for key in expected} == expected
    assert float(service["RestartSec"][0]) > 0
    assert "LEARND_LOG_FORMAT=json" in service["Environment"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """Verified as `make install-service` would install it: its paths substituted with ones that exist here."""
    home = tmp_path / "bot"
    for name in ("state", "data"):
        (home / name).mkdir(parents=True)
    executable = tmp_path / "learnd"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    text = UNIT_PATH.read_text().replace("/opt/learnd/.venv/bin/learnd", str(executable))
    unit = tmp_path / "learnd.service"
    unit.write_text(text.replace("/srv/bot", str(home)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    complaints = [line for line in result.stderr.splitlines() if "learnd.service" in line]
    assert result.returncode == 0 and not complaints, result.stderr
