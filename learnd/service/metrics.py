"""Metrics: a Prometheus endpoint (prometheus_client, its own registry) on metrics_host:metrics_port.

Gauges refresh from the engine once a second on the loop; the HTTP thread only reads what the loop published.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Final
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_wsgi_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from learnd.config import Settings
from learnd.learning.learner import LearnedModel
from learnd.records.components import ENTRY_COMPONENTS, EXIT_BASE_WEIGHTS
from learnd.service.engine import Engine

log = structlog.get_logger("learnd.metrics")

REFRESH_INTERVAL_S: Final = 1.0
LINE_OUTCOMES: Final = ("applied", "duplicate", "ignored", "quarantined")
# Every distinct label set is a time series kept forever by Prometheus: multipliers are capped per (strategy, regime).
MAX_MULTIPLIER_GROUPS: Final = 64
MULTIPLIER_COMPONENTS: Final[frozenset[str]] = frozenset(ENTRY_COMPONENTS) | frozenset(EXIT_BASE_WEIGHTS)
_SERVER_JOIN_TIMEOUT_S: Final = 2.0

_COMMIT_BUCKETS_S: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_EXPORT_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _EngineSnapshot:
    """A collector serving the families the loop last built from the engine (the store is not thread-safe)."""

    def __init__(self) -> None:
        self._families: tuple[Metric, ...] = ()

    def publish(self, families: Iterable[Metric]) -> None:
        self._families = tuple(families)  # one reference swap: a scrape sees the old or the new set, never a mix

    def collect(self) -> Iterable[Metric]:
        return self._families

    def describe(self) -> Iterable[Metric]:
        """The families' names, so the registry rejects a clash at registration rather than at scrape time."""
        return _engine_families()


class Metrics:
    """learnd's instruments in a dedicated registry, plus the HTTP server exposing them.

    The daemon calls `record_*` / `set_multipliers` as things happen and runs `service` among its ServiceHooks.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._snapshot = _EngineSnapshot()
        self.registry.register(self._snapshot)
        self.commit_seconds = Histogram(
            "learnd_commit_duration_seconds",
            "Time to commit one batch of applied lines to the store.",
            buckets=_COMMIT_BUCKETS_S,
            registry=self.registry,
        )
        self.export_latency_seconds = Histogram(
            "learnd_export_latency_seconds",
            "Time from a line being appended to a source to the export reflecting it.",
            buckets=_EXPORT_BUCKETS_S,
            registry=self.registry,
        )
        self.last_event_timestamp = Gauge(
            "learnd_last_learned_event_timestamp_seconds",
            "Event time (epoch seconds) of the newest record learned from.",
            registry=self.registry,
        )
        self.job_runs = Counter("learnd_job_runs", "Scheduled job runs.", ["job"], registry=self.registry)
        self.job_failures = Counter(
            "learnd_job_failures", "Scheduled job runs that failed.", ["job"], registry=self.registry
        )
        self.multiplier = Gauge(
            "learnd_multiplier",
            "Learned weight multiplier per component.",
            ["strategy", "regime", "component"],
            registry=self.registry,
        )
        # Signals and execution: a few totals, no per-symbol labels (bounded series).
        self.signal_open_episodes = Gauge(
            "learnd_signal_open_episodes", "Signal episodes still open (bounded by design).", registry=self.registry
        )
        self.signal_episodes_closed = Gauge(
            "learnd_signal_episodes_closed", "Signal episodes closed and kept for joins.", registry=self.registry
        )
        self.signal_candidates = Gauge(
            "learnd_signal_candidates", "Signal candidate lines learned from.", registry=self.registry
        )
        self.execution_orders = Gauge("learnd_execution_orders", "Order events learned from.", registry=self.registry)
        # The gauges a learner may feed through Learner.gauges(), by the name it uses.
        self._learner_gauges: dict[str, Callable[[float], None]] = {
            "last_learned_event_timestamp_seconds": self.record_learned_event,
            "signal_open_episodes": self.signal_open_episodes.set,
            "signal_episodes_closed": self.signal_episodes_closed.set,
            "signal_candidates": self.signal_candidates.set,
            "execution_orders": self.execution_orders.set,
        }
        self._last_event_s = 0.0
        self._published_model: LearnedModel | None = None
        self._multiplier_groups: dict[tuple[str, str], frozenset[str]] = {}
        self._capped_logged = False
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """The (host, port) the server listens on, None when not serving."""
        server = self._server
        if server is None:
            return None
        host, port = server.server_address[:2]
        return str(host), int(port)

    def record_commit(self, seconds: float) -> None:
        """One commit took `seconds` (the daemon passes engine.last_commit_s after each commit)."""
        self.commit_seconds.observe(seconds)

    def record_export_latency(self, seconds: float) -> None:
        """A line appended `seconds` ago is now reflected in the exports."""
        self.export_latency_seconds.observe(seconds)

    def record_learned_event(self, event_s: float) -> None:
        """A record with event time `event_s` (epoch seconds) was learned; the gauge keeps the newest."""
        if event_s > self._last_event_s:
            self._last_event_s = event_s
            self.last_event_timestamp.set(event_s)

    def record_job(self, job: str, ok: bool) -> None:
        """A scheduled job ran (`ok` False when it failed)."""
        self.job_runs.labels(job=job).inc()
        if ok:
            self.job_failures.labels(job=job)  # the failure series exists (at 0) as soon as the job has run
        else:
            self.job_failures.labels(job=job).inc()

    def set_multipliers(self, strategy: str, regime: str, multipliers: Mapping[str, float]) -> None:
        """Publish the current multipliers of one (strategy, regime); replaces that group's previous set.

        Components outside the contract's vocabulary are left out, and new groups past MAX_MULTIPLIER_GROUPS are
        dropped (logged once), so a misbehaving label cannot grow the series without bound.
        """
        group = (strategy, regime)
        if group not in self._multiplier_groups and len(self._multiplier_groups) >= MAX_MULTIPLIER_GROUPS:
            if not self._capped_logged:
                log.warning("metrics_multiplier_groups_capped", limit=MAX_MULTIPLIER_GROUPS, strategy=strategy)
                self._capped_logged = True
            return
        known = {name: value for name, value in multipliers.items() if name in MULTIPLIER_COMPONENTS}
        for stale in self._multiplier_groups.get(group, frozenset()) - known.keys():
            self.multiplier.remove(strategy, regime, stale)
        for name, value in known.items():
            self.multiplier.labels(strategy=strategy, regime=regime, component=name).set(value)
        self._multiplier_groups[group] = frozenset(known)

    def refresh(self, engine: Engine) -> None:
        """Rebuild the engine-derived families (lines per source and outcome, lag, commits, last event time)."""
        lines, lag, commits, foreign = _engine_families()
        per_source: dict[tuple[str, str], int] = {}
        for (source, outcome, _), count in engine.store.line_counts().items():
            per_source[source, outcome] = per_source.get((source, outcome), 0) + count
        names = [source.name for source in engine.settings.sources]
        for name in names:
            for outcome in LINE_OUTCOMES:
                lines.add_metric([name, outcome], per_source.get((name, outcome), 0))
        for name, tailer in engine.ingestor.tailers.items():
            lag.add_metric([name], tailer.pending_bytes())
        commits.add_metric([], engine.totals.commit_count)
        foreign.add_metric([], engine.totals.foreign_write_count)
        self._snapshot.publish((lines, lag, commits, foreign))
        for learner in engine.learners:
            for name, value in learner.gauges().items():
                self._learner_gauges[name](value)
            model = learner.model()
            if model is not None:
                self._publish_multipliers(model)

    def _publish_multipliers(self, model: LearnedModel) -> None:
        """Multiplier gauges from a learned model, recomputed only when the model changed since last time."""
        if model is self._published_model:
            return
        self._published_model = model
        for strategy, components in model.entry.items():
            self.set_multipliers(strategy, "*", {name: view["multiplier"] for name, view in components.items()})
            regimes = {regime for view in components.values() for regime in view["by_regime"]}
            for regime in sorted(regimes):
                self.set_multipliers(
                    strategy,
                    regime,
                    {
                        name: view["by_regime"][regime]["multiplier"]
                        for name, view in components.items()
                        if regime in view["by_regime"]
                    },
                )
        for strategy, components in model.exits.items():
            self.set_multipliers(strategy, "exit", {name: view["multiplier"] for name, view in components.items()})

    def start(self, host: str, port: int) -> tuple[str, int]:
        """Serve /metrics on host:port (port 0 picks a free one) from a daemon thread; returns the bound address."""
        if self._server is not None:
            raise RuntimeError("metrics server already started")
        self._server, self._thread = start_wsgi_server(port, addr=host, registry=self.registry)
        address = self.address
        assert address is not None
        log.info("metrics_serving", host=address[0], port=address[1])
        return address

    def stop(self) -> None:
        """Stop serving and close the listening socket (blocks up to the server's 0.5 s poll interval)."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(_SERVER_JOIN_TIMEOUT_S)

    async def service(self, engine: Engine, stop: asyncio.Event) -> None:
        """A ServiceHook: serve when metrics are enabled, refresh every second until `stop`, then shut down."""
        settings: Settings = engine.settings
        if not settings.metrics_enabled:
            log.info("metrics_disabled")
            return
        self.refresh(engine)
        try:
            self.start(settings.metrics_host, settings.metrics_port)
        except OSError as error:
            # The endpoint is for watching the daemon; without it the daemon still learns, exports and runs its jobs.
            log.error(
                "metrics_failed",
                host=settings.metrics_host,
                port=settings.metrics_port,
                error=str(error),
                hint="free the port, or set metrics_port (metrics_enabled = false: none) and restart",
            )
            return
        try:
            while not stop.is_set():
                # Timing out is the normal way round the loop; only `stop` ends it early.
                try:
                    await asyncio.wait_for(stop.wait(), timeout=REFRESH_INTERVAL_S)
                except TimeoutError:
                    self.refresh(engine)
            await asyncio.to_thread(self.stop)
        finally:
            self.stop()  # a no-op after a clean stop; on cancellation it closes the socket anyway


def _engine_families() -> tuple[CounterMetricFamily, GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily]:
    """Empty families for the engine-derived metrics: lines per source and outcome, lag per source, commits, and
    changes another writer made to the weights file (each undone)."""
    return (
        CounterMetricFamily("learnd_lines", "Lines committed per source and outcome.", labels=["source", "outcome"]),
        GaugeMetricFamily("learnd_lag_bytes", "Bytes appended to a source and not read yet.", labels=["source"]),
        CounterMetricFamily("learnd_commits", "Store commits since the daemon started."),
        CounterMetricFamily(
            "learnd_export_foreign_writes",
            "Changes another writer made to the weights file since the daemon started; learnd put its file back.",
        ),
    )


async def metrics_service(engine: Engine, stop: asyncio.Event) -> None:
    """A ServiceHook serving engine-derived metrics only; use `Metrics().service` to also record commits and jobs."""
    await Metrics().service(engine, stop)
