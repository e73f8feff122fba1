"""The Prometheus endpoint: real HTTP on loopback, values from a real engine on a tmp home."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from learnd.config import Settings, load_settings
from learnd.service.backfill import run_backfill
from learnd.service.engine import Engine
from learnd.service.metrics import MAX_MULTIPLIER_GROUPS, Metrics, metrics_service

ORDER = b'{"ts": "2026-01-05T15:00:00+00:00", "symbol": "AAPL", "side": "buy"}\n'
LATER_ORDER = b'{"ts": "2026-01-05T15:30:00+00:00", "symbol": "MSFT", "side": "sell"}\n'
EXIT = b'{"symbol": "AAPL", "timestamp": "2026-01-05T15:45:00+00:00", "exit_reason": "time_decay", "pnl_pct": 1.5}\n'


def free_port() -> int:
    """A port free right now on loopback (settings refuse port 0, so the test picks one itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_settings(home: Path, **overrides: object) -> Settings:
    return load_settings(home=home, environ={}, overrides={"metrics_port": free_port(), **overrides})


@pytest.fixture
def backfilled_home(tmp_path: Path) -> Path:
    """A bot home, already backfilled: orders has two applied lines and a quarantined one; exit repeats an exit."""
    home = tmp_path / "bot"
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "orders.jsonl").write_bytes(ORDER + LATER_ORDER + b"{not json\n")
    (home / "logs" / "exit.jsonl").write_bytes(EXIT + EXIT)
    run_backfill(load_settings(home=home, environ={}))
    return home


@pytest.fixture
def engine(backfilled_home: Path) -> Iterator[Engine]:
    opened = Engine(make_settings(backfilled_home), start_at_end=False, purpose="test")
    yield opened
    opened.close()


def scrape(address: tuple[str, int]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics; every sample as (name, sorted labels) -> value."""
    host, port = address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def wait_for_address(metrics: Metrics) -> tuple[str, int]:
    for _ in range(200):
        address = metrics.address
        if address is not None:
            return address
        await asyncio.sleep(0.005)
    raise AssertionError("metrics server did not start")


async def test_serves_engine_counters_over_http_on_loopback(engine: Engine) -> None:
    metrics = Metrics()
    metrics.record_commit(0.002)
    metrics.record_export_latency(0.04)
    metrics.record_job("daily", ok=True)
    metrics.record_job("weekly", ok=False)
    metrics.set_multipliers("equity", "bull", {"options_flow": 1.05, "dark_pool": 0.97})
    stop = asyncio.Event()
    service = asyncio.create_task(metrics.service(engine, stop))
    address = await wait_for_address(metrics)
    assert address == ("127.0.0.1", engine.settings.metrics_port)

    samples = await asyncio.to_thread(scrape, address)

    orders = (("outcome", "applied"), ("source", "orders"))
    assert samples["learnd_lines_total", orders] == 2
    assert samples["learnd_lines_total", (("outcome", "duplicate"), ("source", "orders"))] == 0
    assert samples["learnd_lines_total", (("outcome", "quarantined"), ("source", "orders"))] == 1
    assert samples["learnd_lines_total", (("outcome", "applied"), ("source", "exit"))] == 1
    assert samples["learnd_lines_total", (("outcome", "duplicate"), ("source", "exit"))] == 1
    assert samples["learnd_lines_total", (("outcome", "applied"), ("source", "signals"))] == 0
    assert samples["learnd_lag_bytes", (("source", "orders"),)] == 0
    assert samples["learnd_commit_duration_seconds_count", ()] == 1
    assert samples["learnd_export_latency_seconds_count", ()] == 1
    assert samples["learnd_job_runs_total", (("job", "daily"),)] == 1
    assert samples["learnd_job_failures_total", (("job", "daily"),)] == 0
    assert samples["learnd_job_failures_total", (("job", "weekly"),)] == 1
    multiplier = (("component", "options_flow"), ("regime", "bull"), ("strategy", "equity"))
    assert samples["learnd_multiplier", multiplier] == 1.05
    stop.set()
    await service
    assert metrics.address is None


async def test_refresh_follows_new_lines_and_last_event_time(engine: Engine, backfilled_home: Path) -> None:
    metrics = Metrics()
    stop = asyncio.Event()
    service = asyncio.create_task(metrics.service(engine, stop))
    address = await wait_for_address(metrics)
    unread = b'{"ts": "2026-01-06T16:00:00+00:00", "symbol": "AMD"}\n'
    with (backfilled_home / "logs" / "orders.jsonl").open("ab") as log:
        log.write(b'{"ts": "2026-01-06T15:00:00+00:00", "symbol": "NVDA"}\n' + unread)
    engine.poll(1)
    engine.commit(export=False)
    metrics.refresh(engine)

    samples = await asyncio.to_thread(scrape, address)

    assert samples["learnd_lines_total", (("outcome", "applied"), ("source", "orders"))] == 3
    assert samples["learnd_lag_bytes", (("source", "orders"),)] == len(unread)
    assert samples["learnd_commits_total", ()] == 1
    assert samples["learnd_last_learned_event_timestamp_seconds", ()] == 1767711600.0
    stop.set()
    await service


async def test_listening_socket_is_bound_to_loopback_only(engine: Engine) -> None:
    metrics = Metrics()
    stop = asyncio.Event()
    service = asyncio.create_task(metrics.service(engine, stop))
    host, port = await wait_for_address(metrics)
    assert host == "127.0.0.1"
    outside = _non_loopback_address()
    if outside is not None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client, pytest.raises(OSError):
            client.settimeout(1)
            client.connect((outside, port))
    stop.set()
    await service


def _non_loopback_address() -> str | None:
    """This host's address on its default route, when it has one (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_port_zero_picks_a_free_port() -> None:
    metrics = Metrics()
    host, port = metrics.start("127.0.0.1", 0)
    try:
        assert host == "127.0.0.1"
        assert port > 0
        assert metrics.address == (host, port)
    finally:
        metrics.stop()
    assert metrics.address is None


async def test_disabled_setting_starts_nothing(backfilled_home: Path) -> None:
    settings = make_settings(backfilled_home, metrics_enabled=False)
    port = settings.metrics_port
    engine = Engine(settings, start_at_end=False, purpose="test")
    try:
        metrics = Metrics()
        await asyncio.wait_for(metrics.service(engine, asyncio.Event()), timeout=1)
        await asyncio.wait_for(metrics_service(engine, asyncio.Event()), timeout=1)
        assert metrics.address is None
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            assert client.connect_ex(("127.0.0.1", port)) != 0
    finally:
        engine.close()


def test_multiplier_labels_are_bounded() -> None:
    """Unknown components are left out; groups past the cap are dropped; a group's stale components go away."""
    metrics = Metrics()
    for index in range(MAX_MULTIPLIER_GROUPS + 5):
        metrics.set_multipliers("equity", f"regime{index}", {"options_flow": 1.0, "made_up": 2.0})
    metrics.set_multipliers("equity", "regime0", {"dark_pool": 0.9})
    samples = {
        tuple(sorted(sample.labels.items()))
        for family in metrics.registry.collect()
        if family.name == "learnd_multiplier"
        for sample in family.samples
    }
    assert len(samples) == MAX_MULTIPLIER_GROUPS
    assert not any(("component", "made_up") in labels for labels in samples)
    assert (("component", "dark_pool"), ("regime", "regime0"), ("strategy", "equity")) in samples
    assert (("component", "options_flow"), ("regime", "regime0"), ("strategy", "equity")) not in samples


def test_metrics_use_their_own_registry() -> None:
    from prometheus_client import REGISTRY

    Metrics()
    Metrics()  # a second instance would clash if both registered globally
    assert "learnd_multiplier" not in {family.name for family in REGISTRY.collect()}


async def test_a_port_another_program_holds_is_logged_and_the_daemon_goes_on(backfilled_home: Path) -> None:
    """A metrics port already taken (a second daemon, another program) ends the metrics service with a
    `metrics_failed` error naming the address; it does not raise, so the daemon's other tasks keep running."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        engine = Engine(make_settings(backfilled_home, metrics_port=port), start_at_end=False, purpose="test")
        try:
            metrics = Metrics()
            with capture_logs() as logs:
                await asyncio.wait_for(metrics.service(engine, asyncio.Event()), timeout=5)
        finally:
            engine.close()
    assert metrics.address is None
    (failed,) = [entry for entry in logs if entry["event"] == "metrics_failed"]
    assert (failed["log_level"], failed["host"], failed["port"]) == ("error", "127.0.0.1", port)
    assert "in use" in failed["error"]
