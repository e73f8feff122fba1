"""Settings: one frozen object built once from defaults < config file < LEARND_* environment < command line.

Validated at load; every error names the key. Paths are resolved against the home.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast, get_args

from learnd.errors import ConfigError

SourceKind = Literal["attribution", "exit", "signals", "orders"]
SOURCE_KINDS: Final[tuple[SourceKind, ...]] = ("attribution", "exit", "signals", "orders")
DEFAULT_SOURCES: Final[dict[str, tuple[SourceKind, str]]] = {
    "attribution": ("attribution", "logs/attribution.jsonl"),
    "exit": ("exit", "logs/exit.jsonl"),
    "signals": ("signals", "logs/signals.jsonl"),
    "orders": ("orders", "logs/orders.jsonl"),
}


@dataclass(frozen=True, slots=True)
class LearningParams:
    """How cautiously the learners move; every figure is in event time (trading sessions), never wall time.

    Prior strengths are in pseudo-trades of the average component: `regime_prior_trades = 100` means a regime
    needs about a hundred trades of its own before its estimate weighs as much as the strategy-wide one it is
    pooled toward (more for a component it rarely carries).
    """

    half_life_sessions: float = 60.0
    z_threshold: float = 2.0
    # Once the components' effects as a whole differ by z_threshold, a strategy-wide multiplier may move on its own
    # evidence lying this many standard deviations from where it stands (below: noise, held); such a move stops at
    # the near edge of its credible interval at this z (interval_z for a move on stronger evidence or after a change
    # alarm).
    joint_component_z: float = 1.15
    max_step_per_trade: float = 0.02
    max_step_per_session: float = 0.1
    min_multiplier: float = 0.25
    max_multiplier: float = 2.5
    pnl_clip_pct: float = 5.0
    per_ticker: bool = False
    # Ridge toward "the base weights are right": each component's deviation from the average component is worth
    # this many trades of the average component at zero. One common strength, so the average is over components
    # and not over score variance (which options_flow alone would dominate).
    ridge_prior_trades: float = 50.0
    regime_prior_trades: float = 100.0
    ticker_prior_trades: float = 400.0
    # The intercept and the average effect are all but free: against 21 ridge terms, even one pseudo-trade on the
    # score's scale would pull the average toward 0 and every multiplier up.
    coefficient_prior_trades: float = 0.01
    # Noise variance starts at 1 %^2, worth this many trades, so a handful of equal outcomes is not certainty.
    noise_prior_var: float = 1.0
    noise_prior_trades: float = 10.0
    # Evidence needed before anything moves: effective (decayed, weighted) outcomes of the strategy, and of the
    # scope that carried the component. The score gate and the interval rule hold noise; this only keeps the
    # first handful of trades (and their noise estimate) from moving anything.
    min_effective_samples: float = 50.0
    min_component_samples: float = 50.0
    # A multiplier moves only as far as the nearest value its evidence does not reject at interval_z standard
    # deviations (the near edge of its credible interval): where the evidence is weak it holds still.
    interval_z: float = 1.0
    # A moved strategy-wide multiplier that the evidence holds inside its interval creeps toward its best estimate
    # by at most this much a session (at the session's close), never across 1.
    creep_per_session: float = 0.003
    # The average component's effect (the reference of every multiplier, a weighted median) is smoothed over
    # sessions with this half-life.
    reference_half_life_sessions: float = 10.0
    # Change detection, per component: a two-sided CUSUM, in event order, of the trade's standardized residual
    # times the component's standardized contribution; allowance change_allowance per trade, alarm at
    # change_threshold. An alarm forgets that component's old evidence (in every scope of the strategy), so its
    # prior and the trades that follow decide its effect; for change_boost_sessions sessions its multipliers may
    # move change_step_per_session a session (and as many times max_step_per_trade a trade as that is times
    # max_step_per_session). Strategy-wide, an alarm on a clear edge (z_threshold) that fades or turns (toward
    # the average or past it) dates the change at the start of the alarming statistic's run and forgets only
    # the evidence before it. While the trades since the alarm, scored against the component's effect as it stood
    # before it, lie change_confirm_z standard deviations the alarm's way (confirmed: no selection made them), its
    # strategy-wide multiplier may move change_confirmed_step_per_session a session instead.
    change_threshold: float = 20.0
    change_allowance: float = 0.15
    change_boost_sessions: int = 10
    change_step_per_session: float = 0.3
    change_confirm_z: float = 1.0
    change_confirmed_step_per_session: float = 1.0
    # A component whose logged values (root mean square per unit of its base weight) are off_scale_ratio times
    # above the median component's is off the contribution scale (the bot logged it raw): it is learned, scored and
    # reported standardized to the median component's scale.
    off_scale_ratio: float = 5.0
    # Exit learning: a component's edge over the average exit is shrunk by this many pseudo-exits at zero,
    # and an edge of one standard deviation of exit P&L maps to a multiplier of 1 + exit_effect_scale.
    exit_prior_samples: float = 20.0
    exit_effect_scale: float = 1.0

    def __post_init__(self) -> None:
        for param in fields(self):
            value = getattr(self, param.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"learning.{param.name} must be finite, got {value!r}")
        positive = (
            "half_life_sessions",
            "z_threshold",
            "max_step_per_trade",
            "max_step_per_session",
            "pnl_clip_pct",
            "ridge_prior_trades",
            "regime_prior_trades",
            "ticker_prior_trades",
            "coefficient_prior_trades",
            "noise_prior_var",
            "noise_prior_trades",
            "exit_effect_scale",
            "change_threshold",
            "change_step_per_session",
            "change_confirmed_step_per_session",
            "reference_half_life_sessions",
        )
        for name in positive:
            if getattr(self, name) <= 0.0:
                raise ConfigError(f"learning.{name} must be > 0, got {getattr(self, name)!r}")
        # Within the range the bot's file holds (FORMATS.md: weight_bands current 0.25..2.5; its Beta buckets can
        # say no more): a multiplier beyond it would be written one way in the bands and another in the buckets.
        if not 0.25 <= self.min_multiplier <= 1.0 <= self.max_multiplier <= 2.5:
            raise ConfigError(
                f"learning.min_multiplier/max_multiplier must bracket 1 within the bot's 0.25..2.5 (got "
                f"{self.min_multiplier}, {self.max_multiplier})"
            )
        non_negative = (
            "joint_component_z",
            "min_effective_samples",
            "min_component_samples",
            "exit_prior_samples",
            "interval_z",
            "change_allowance",
            "change_boost_sessions",
            "change_confirm_z",
            "creep_per_session",
        )
        for name in non_negative:
            if getattr(self, name) < 0.0:
                raise ConfigError(f"learning.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.off_scale_ratio > 1.0:
            raise ConfigError(f"learning.off_scale_ratio must be > 1, got {self.off_scale_ratio!r}")


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """One tailed log: its name (used in state and metrics), kind (how rows parse) and absolute path."""

    name: str
    kind: SourceKind
    path: Path


@dataclass(frozen=True, slots=True)
class SignalSettings:
    """Signal episodes (repeats of one strategy/symbol/direction) and their join to trades."""

    gap_minutes: float = 5.0
    join_window_minutes: float = 10.0
    pattern_size: int = 3
    regime_lookback_hours: float = 6.0
    min_episodes: int = 20
    min_outcomes: int = 10
    suggestions_enabled: bool = False


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    """Execution quality: time-of-day buckets and the flag for costs that eat a symbol's P&L."""

    edge_minutes: int = 30
    retain_days: int = 1
    cost_share_threshold: float = 0.25
    min_fills: int = 5
    min_trades: int = 5


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    """When the daily and weekly jobs run (exchange calendar time)."""

    exchange: str = "XNYS"
    grace_minutes: float = 15.0
    calendar_first_year: int = 1990
    calendar_last_year: int = 2050
    weekly_window_sessions: int = 0
    daily_enabled: bool = True
    weekly_enabled: bool = True


@dataclass(frozen=True, slots=True)
class BotSettings:
    """How the unchanged bot applies the weights file (FORMATS.md, "How the bot actually uses
    state/signal_weights.json"); the defaults are the bot's own. learnd cannot change these; it reports them.

    `pinned_components` are scored at their static weight whatever the file says; `capped_components` have their
    weight (base x multiplier) capped at `weight_cap` (the bot's UW_PASSIVE_ML_WEIGHT_CAP); with
    `adaptive_weights` false (the bot's DISABLE_ADAPTIVE_WEIGHTS=1) the bot ignores the file altogether.
    """

    pinned_components: tuple[str, ...] = ("options_flow",)
    capped_components: tuple[str, ...] = ("etf_flow", "squeeze_score")
    weight_cap: float = 0.06
    adaptive_weights: bool = True

    def __post_init__(self) -> None:
        for key in ("pinned_components", "capped_components"):
            for name in getattr(self, key):
                if not _COMPONENT_NAME.fullmatch(name):
                    raise ConfigError(f"bot.{key}: {name!r} is not a component name")
        if not math.isfinite(self.weight_cap) or self.weight_cap < 0.0:
            raise ConfigError(f"bot.weight_cap: must be a finite number >= 0, got {self.weight_cap!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything learnd needs to run, resolved and validated."""

    home: Path
    sources: tuple[SourceSettings, ...]
    state_dir: Path
    data_dir: Path
    # The weights file learnd writes for the bot, and owns (see exports.guard); paths.signal_weights.
    signal_weights_path: Path
    poll_interval_ms: int = 1000
    commit_interval_ms: int = 50
    commit_batch_lines: int = 1000
    backfill_batch_lines: int = 2000
    max_line_bytes: int = 1 << 20
    quarantine_keep_bytes: int = 4096
    dedupe_window_lines: int = 20000
    rotation_grace_ms: int = 5000
    shutdown_timeout_s: float = 4.0
    # Once the start-up's burst (history, a backlog, the job catch-up) is done, a daemon that grew by more than this
    # many MiB since it opened its home executes itself afresh (same pid, the home lock handed over) and idles at
    # its starting size; 0 never does.
    respawn_after_growth_mib: float = 8.0
    metrics_enabled: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    log_format: str = "auto"
    learning: LearningParams = field(default_factory=LearningParams)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    signals: SignalSettings = field(default_factory=SignalSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    bot: BotSettings = field(default_factory=BotSettings)
    # What these settings were built from (the home and the merged table of file, environment and command line), as
    # JSON: a daemon's next image (a respawn) runs with them, not with whatever the file holds by then.
    handover: str = field(default="", compare=False, repr=False)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "learnd.db"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "learnd.lock"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    def source(self, name: str) -> SourceSettings:
        for source in self.sources:
            if source.name == name:
                return source
        raise ConfigError(f"sources.{name}: no such source")


# The fields of Settings a top-level config key may not set (tables, paths, and what the settings were built from).
_NOT_SCALARS: Final = {
    "home", "sources", "state_dir", "data_dir", "signal_weights_path", "learning", "schedule", "bot", "handover"
}  # fmt: skip
_SCALARS: Final[frozenset[str]] = frozenset(f.name for f in fields(Settings) if f.name not in _NOT_SCALARS)
_LOG_FORMATS: Final = ("auto", "json", "console")
# The environment variable a respawning daemon hands over to its next image in (no setting: never read as one).
# See service.daemon.Respawn.
RESPAWN_VARIABLE: Final = "LEARND_RESPAWNED"
# The weekly drift test's recent window, in sessions (jobs.longrun.RECENT_SESSIONS): a report window over the
# ledger must hold more, or nothing is left to compare them with.
RECENT_REPORT_SESSIONS: Final = 20
_COMPONENT_NAME: Final = re.compile(r"[a-z][a-z0-9_]*")
_T = TypeVar("_T")


def load_settings(
    home: Path | None = None,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings: built-in defaults < config file < LEARND_* environment < `overrides` (command line).

    `home` defaults to $LEARND_HOME, then the current directory. The config file defaults to
    HOME/config/learnd.toml when it exists. Raises ConfigError naming the key on any invalid value.
    """
    env = os.environ if environ is None else environ
    home_path = Path(home if home is not None else env.get("LEARND_HOME", ".")).expanduser().resolve()
    table: dict[str, Any] = {}
    if config_file is None and env.get("LEARND_CONFIG"):
        config_file = Path(env["LEARND_CONFIG"])
    if config_file is None:
        candidate = home_path / "config" / "learnd.toml"
        config_file = candidate if candidate.is_file() else None
    elif not config_file.is_absolute():
        config_file = Path.cwd() / config_file
    if config_file is not None:
        table = _read_toml(config_file)
    from_environment = _merge_environment(table, env)
    for key, value in (overrides or {}).items():
        _set_dotted(table, key, value)
        from_environment.pop(key, None)
    # Taken before _build, which takes the tables apart. (A TOML date, which no key takes, is kept as its text.) The
    # standard json, which keeps an integer of any size as it is (one beyond 64 bits is the key's own error).
    handover = json.dumps({"home": str(home_path), "table": table}, default=str)
    try:
        return replace(_build(home_path, table), handover=handover)
    except ConfigError as error:
        # A key the environment set is named with its variable: it is in no file an operator would look at.
        key = str(error).partition(":")[0]
        variable = from_environment.get(key)
        if variable is None:
            raise
        raise ConfigError(f"{error} (from the environment: {variable}={env[variable]!r})") from None


def settings_from_handover(text: str) -> Settings:
    """The settings a daemon's earlier image ran with (`Settings.handover`), built again."""
    try:
        document = json.loads(text)
        home, table = Path(document["home"]), document["table"]
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"the settings handed over by the daemon's earlier image cannot be read ({error})") from None
    return replace(_build(home, table), handover=text)


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # only a home with a config file reads one: the parser stays out of every other start

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path}: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path}: not UTF-8 ({error})") from None
    except OSError as error:  # a directory, no permission, an I/O error
        raise ConfigError(f"config file {path}: cannot be read ({error.strerror or error})") from None


def _merge_environment(table: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """LEARND_COMMIT_INTERVAL_MS=20 sets commit_interval_ms; LEARND_LEARNING__PER_TICKER sets learning.per_ticker.
    Returns the keys set, with the variable that set each."""
    origins: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith("LEARND_") or name in ("LEARND_HOME", "LEARND_CONFIG", RESPAWN_VARIABLE):
            continue
        dotted = name.removeprefix("LEARND_").lower().replace("__", ".")
        _set_dotted(table, dotted, value)
        origins[dotted] = name
    # The bot's own switch for per-ticker learning is honoured as documented in its README.
    flag = env.get("ENABLE_PER_TICKER_LEARNING")
    if flag is not None:
        _set_dotted(table, "learning.per_ticker", flag)
        origins["learning.per_ticker"] = "ENABLE_PER_TICKER_LEARNING"
    # So are the two switches that change what the bot applies from the weights file (learnd reports it).
    cap = env.get("UW_PASSIVE_ML_WEIGHT_CAP")
    if cap is not None:
        _set_dotted(table, "bot.weight_cap", cap)
        origins["bot.weight_cap"] = "UW_PASSIVE_ML_WEIGHT_CAP"
    disabled = env.get("DISABLE_ADAPTIVE_WEIGHTS")
    if disabled is not None:
        is_disabled = disabled.strip().lower() in ("1", "true", "yes", "on")
        _set_dotted(table, "bot.adaptive_weights", "false" if is_disabled else "true")
        origins["bot.adaptive_weights"] = "DISABLE_ADAPTIVE_WEIGHTS"
    return origins


def _set_dotted(table: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = table
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part} is not a table")
        node = child
    node[leaf] = value


def _build(home: Path, table: dict[str, Any]) -> Settings:
    table = dict(table)
    paths = table.pop("paths", {}) or {}
    if not isinstance(paths, dict):
        raise ConfigError("paths: must be a table")
    sources = _build_sources(home, table.pop("sources", {}))
    learning = _build_section(LearningParams(), table.pop("learning", {}), "learning")
    schedule = _build_section(ScheduleSettings(), table.pop("schedule", {}), "schedule")
    signals = _build_section(SignalSettings(), table.pop("signals", {}), "signals")
    execution = _build_section(ExecutionSettings(), table.pop("execution", {}), "execution")
    bot = _build_section(BotSettings(), table.pop("bot", {}), "bot")
    state_dir = _resolve(home, paths.pop("state_dir", "state"), "paths.state_dir")
    data_dir = _resolve(home, paths.pop("data_dir", "data"), "paths.data_dir")
    # By default in the state directory, wherever that is; an absolute or home-relative path otherwise.
    weights = paths.pop("signal_weights", None)
    signal_weights_path = (
        state_dir / "signal_weights.json" if weights is None else _resolve(home, weights, "paths.signal_weights")
    )
    if paths:
        raise ConfigError(f"paths.{sorted(paths)[0]}: unknown key")
    base = Settings(
        home=home,
        sources=sources,
        state_dir=state_dir,
        data_dir=data_dir,
        signal_weights_path=signal_weights_path,
        learning=learning,
        schedule=schedule,
        signals=signals,
        execution=execution,
        bot=bot,
    )
    settings = _build_section(base, table, "")
    _validate(settings)
    return settings


def _build_sources(home: Path, raw: object) -> tuple[SourceSettings, ...]:
    if not isinstance(raw, dict):
        raise ConfigError("sources: must be a table of source tables")
    merged: dict[str, dict[str, Any]] = {
        name: {"kind": kind, "path": path} for name, (kind, path) in DEFAULT_SOURCES.items()
    }
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"sources.{name}: must be a table with `path` (and `kind`, `enabled`)")
        merged.setdefault(name, {"kind": name if name in SOURCE_KINDS else None, "path": None}).update(spec)
    result: list[SourceSettings] = []
    for name, spec in merged.items():
        unknown = set(spec) - {"kind", "path", "enabled"}
        if unknown:
            raise ConfigError(f"sources.{name}.{sorted(unknown)[0]}: unknown key")
        if not _as_bool(spec.get("enabled", True), f"sources.{name}.enabled"):
            continue
        kind = spec.get("kind")
        if kind not in get_args(SourceKind):
            raise ConfigError(f"sources.{name}.kind: must be one of {', '.join(SOURCE_KINDS)}, got {kind!r}")
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"sources.{name}: a source name may hold letters, digits, '-' and '_' only")
        path = spec.get("path")
        if not isinstance(path, str) or not path:
            raise ConfigError(f"sources.{name}.path: required, a file path")
        result.append(
            SourceSettings(name=name, kind=cast(SourceKind, kind), path=_resolve(home, path, f"sources.{name}.path"))
        )
    if not result:
        raise ConfigError("sources: every source is disabled; nothing to learn from")
    return tuple(result)


def _resolve(home: Path, value: object, key: str) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ConfigError(f"{key}: must be a path")
    path = Path(value).expanduser()
    # Not resolved through symlinks: the tailer follows the configured path as the bot writes it.
    return path if path.is_absolute() else home / path


def _build_section(base: _T, raw: object, prefix: str) -> _T:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix}: must be a table")
    known = {f.name: f for f in fields(base)}  # type: ignore[arg-type]
    updates: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in known or (not prefix and key not in _SCALARS):
            raise ConfigError(f"{dotted}: unknown key")
        current = getattr(base, key)
        updates[key] = _coerce(value, type(current), dotted)
    return replace(base, **updates)  # type: ignore[type-var]


def _coerce(value: object, kind: type, key: str) -> object:
    if kind is bool:
        return _as_bool(value, key)
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{key}: must be an integer, got {value!r}")
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: must be a number, got {value!r}")
    if kind is tuple:
        # A TOML array of names, or one comma-separated string (environment, --set).
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
            raise ConfigError(f"{key}: must be a list of names, got {value!r}")
        return tuple(item.strip() for item in items if item.strip())
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a string, got {value!r}")
    return value


def _check_finite(settings: Settings) -> None:
    """No float setting may be NaN or infinite: every comparison with NaN is false, so a range check lets it pass
    (the learning parameters check their own)."""
    sections: tuple[tuple[str, Any], ...] = (
        ("", settings),
        ("signals.", settings.signals),
        ("execution.", settings.execution),
        ("schedule.", settings.schedule),
        ("bot.", settings.bot),
    )
    for prefix, section in sections:
        for item in fields(section):
            value = getattr(section, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{prefix}{item.name}: must be a finite number, got {value!r}")


def _as_bool(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}: must be true or false, got {value!r}")


def _validate(settings: Settings) -> None:
    _check_finite(settings)
    positive = (
        "poll_interval_ms",
        "commit_interval_ms",
        "commit_batch_lines",
        "backfill_batch_lines",
        "max_line_bytes",
        "quarantine_keep_bytes",
        "dedupe_window_lines",
    )
    for key in positive:
        if getattr(settings, key) <= 0:
            raise ConfigError(f"{key}: must be positive, got {getattr(settings, key)!r}")
    growth = settings.respawn_after_growth_mib
    if not (math.isfinite(growth) and growth >= 0.0):
        raise ConfigError(f"respawn_after_growth_mib: must be a finite number >= 0 (0: never), got {growth!r}")
    if settings.rotation_grace_ms < 0:
        raise ConfigError(f"rotation_grace_ms: must be >= 0, got {settings.rotation_grace_ms}")
    if not 0 <= settings.metrics_port < 65536:
        raise ConfigError(f"metrics_port: must be a TCP port (0 picks a free one), got {settings.metrics_port}")
    if settings.log_format not in _LOG_FORMATS:
        raise ConfigError(f"log_format: must be one of {', '.join(_LOG_FORMATS)}, got {settings.log_format!r}")
    if settings.signals.gap_minutes <= 0 or settings.signals.join_window_minutes < 0:
        raise ConfigError("signals.gap_minutes: must be positive (and signals.join_window_minutes >= 0)")
    if settings.signals.pattern_size <= 0:
        raise ConfigError("signals.pattern_size: must be positive")
    if not 0 < settings.execution.edge_minutes < 180:
        raise ConfigError("execution.edge_minutes: must be between 0 and 180")
    if settings.execution.retain_days < 0:
        raise ConfigError("execution.retain_days: must be >= 0")
    if not 1900 <= settings.schedule.calendar_first_year <= settings.schedule.calendar_last_year <= 2200:
        raise ConfigError("schedule.calendar_first_year: must be a year up to schedule.calendar_last_year")
    window = settings.schedule.weekly_window_sessions
    if window < 0 or 0 < window <= RECENT_REPORT_SESSIONS:
        raise ConfigError(
            f"schedule.weekly_window_sessions: must be 0 (the whole ledger) or more than the drift test's "
            f"{RECENT_REPORT_SESSIONS} recent sessions (it compares them with the ones before), got {window}"
        )
    if settings.schedule.grace_minutes < 0:
        raise ConfigError("schedule.grace_minutes: must be >= 0")
    if settings.shutdown_timeout_s <= 0:
        raise ConfigError(f"shutdown_timeout_s: must be positive, got {settings.shutdown_timeout_s!r}")
    if settings.signals.regime_lookback_hours < 0:
        raise ConfigError("signals.regime_lookback_hours: must be >= 0")
    if settings.execution.cost_share_threshold < 0:
        raise ConfigError("execution.cost_share_threshold: must be >= 0")
    least = {
        "signals.min_episodes": settings.signals.min_episodes,
        "signals.min_outcomes": settings.signals.min_outcomes,
        "execution.min_fills": settings.execution.min_fills,
        "execution.min_trades": settings.execution.min_trades,
    }
    for key, count in least.items():
        if count < 1:
            raise ConfigError(f"{key}: must be at least 1, got {count}")
    for source in settings.sources:
        # A file that does not exist yet is waited for; one that exists must be a file learnd may read.
        try:
            found = os.stat(source.path)
        except FileNotFoundError:
            continue
        except OSError as error:  # a directory on the way that this user may not search
            raise ConfigError(
                f"sources.{source.name}.path: {source.path} cannot be looked at ({error.strerror})"
            ) from None
        if stat.S_ISDIR(found.st_mode):
            raise ConfigError(f"sources.{source.name}.path: {source.path} is a directory, not a log file")
        if not os.access(source.path, os.R_OK):
            raise ConfigError(f"sources.{source.name}.path: {source.path} cannot be read by this user")
    names = [source.name for source in settings.sources]
    paths = [source.path for source in settings.sources]
    if len(set(paths)) != len(paths):
        raise ConfigError("sources: two sources share one path")
    if len(set(names)) != len(names):
        raise ConfigError("sources: duplicate source name")
