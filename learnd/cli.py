"""The command line: `learnd [--home DIR] COMMAND`. Each command builds the settings once and calls the shell
module that does the work (daemon, backfill, status, ...). Exit status: 0 ok, 2 usage, 3 config, 4 state, 1 other.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import orjson

from learnd import __version__
from learnd.config import RESPAWN_VARIABLE, Settings, load_settings
from learnd.errors import ConfigError, LearndError, StateError, UsageError
from learnd.exports.bot import MIXED_FIGURES
from learnd.service.memory import collecting_garbage_less_often

if TYPE_CHECKING:
    from learnd.service.daemon import Respawn

EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended
EXIT_STATE = 4

_DESCRIPTION = """\
learnd tails a trading bot's JSON Lines logs and learns signal-component weights from every closed trade.

The home (--home, $LEARND_HOME, default: the current directory) holds logs/, state/ and data/.
Settings come from built-in defaults < the config file (--config, else $LEARND_CONFIG, else
HOME/config/learnd.toml) < LEARND_* environment variables (LEARND_COMMIT_INTERVAL_MS=20,
LEARND_LEARNING__PER_TICKER=true) < --set KEY=VALUE flags.
"""
_EPILOG = """exit status: 0 ok; 1 the command's own failure; 2 usage; 3 configuration error (naming the key);
4 state error (another daemon or rebuild owns the home, the store is damaged, foreign or newer, or cannot be
written now); 130 a one-shot command stopped by Ctrl-C (what it committed stays).
"""


def program() -> NoReturn:
    """`learnd` as a program (the console script, `python -m learnd`): main() on the process's arguments, then the
    exit. After a backfill or a quick command (status, weights, schedule) the process leaves at once, its output
    flushed: the interpreter's teardown would only free, object by object and with full collections, what the
    process is about to lose (about 49 ms, 6 % of the CPU of a backfill of the bot's two real days). The other
    commands exit as Python does: the daemon, and those whose libraries clean up at exit (report's charts)."""
    args = _parser().parse_args()
    status = _execute(args)
    if args.handler in (_backfill, _status, _weights, _schedule):
        try:
            sys.stdout.flush()
        except OSError as error:
            status = _failed(OutputError(f"cannot write the output: {error.strerror or error}"))
        sys.stderr.flush()
        os._exit(status)
    raise SystemExit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `learnd` command line `argv` (default: the process's arguments); its exit status."""
    return _execute(_parser().parse_args(argv))


def _execute(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], int] = args.handler
    garbage: AbstractContextManager[None] = nullcontext()
    if handler is not _run:
        # `learnd status | head` should end quietly, like any Unix filter; the daemon keeps Python's handling.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        # A one-shot command is one burst: what it builds (modules, records, documents) lives until it exits or is
        # freed by reference counting, so the collector's walks over it find nothing. The daemon keeps Python's.
        garbage = collecting_garbage_less_often(survivors_to_oldest=True)
    try:
        _check_counts(args)
        with garbage:
            return handler(args)
    except (LearndError, sqlite3.DatabaseError) as error:
        return _failed(error)
    except OSError as error:
        if handler is _run:
            raise  # the daemon's own handling (and its traceback) stays
        # An output that cannot be written (a full disk) or a file that cannot be read: one line, not a traceback.
        return _failed(OutputError(f"{error.strerror or error}{f': {error.filename}' if error.filename else ''}"))
    except KeyboardInterrupt:
        # Ctrl-C on a one-shot command (the daemon handles its own): what it committed stays, the rest is read again
        # by the next run. One line and the shell's status for an interrupt, not a traceback.
        print("learnd: interrupted; what was committed stays, and running the command again goes on", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ExceptionGroup as group:
        # The daemon's tasks run in a TaskGroup: a state error raised in one leaves wrapped in a group, and must
        # exit with its own status all the same.
        # An unexpected error beside them is not dropped: the whole group propagates, its traceback shown.
        known, unexpected = group.split(lambda error: isinstance(error, LearndError | sqlite3.DatabaseError))
        if known is None or unexpected is not None:
            raise
        return _failed(_first_leaf(known))


# The least each numeric option may be (an option a command does not have is skipped).
_LEAST: Final = {"bootstrap": 1, "count": 1, "trades": 1, "seed": 0}


def _check_counts(args: argparse.Namespace) -> None:
    for name, least in _LEAST.items():
        value = getattr(args, name, None)
        if value is not None and value < least:
            raise UsageError(f"--{name}: must be >= {least}, got {value}")


class OutputError(LearndError):
    """An operating-system error a one-shot command met (its output or a file it reads): said in one line."""


def _failed(error: BaseException) -> int:
    """Say what went wrong on stderr; the exit status for it (2 usage, 3 configuration, 4 state, 1 anything else of
    ours)."""
    if isinstance(error, UsageError):
        print(f"learnd: usage error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(error, ConfigError):
        print(f"learnd: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if isinstance(error, StateError):
        print(f"learnd: state error: {error}", file=sys.stderr)
        return EXIT_STATE
    if isinstance(error, sqlite3.DatabaseError):
        # Damage found while reading, or a write the disk refused (full, an I/O error), after the checks at open:
        # the store is left as it is, never reset.
        print(f"learnd: state error: the store failed ({error}); nothing was reset", file=sys.stderr)
        return EXIT_STATE
    print(f"learnd: {error}", file=sys.stderr)
    return 1


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="learnd",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"learnd {__version__}")
    parser.add_argument("--home", type=Path, help="the bot's home directory (default: $LEARND_HOME or .)")
    parser.add_argument(
        "--config", type=Path, help="config file (default: $LEARND_CONFIG, else HOME/config/learnd.toml if present)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting: --set commit_interval_ms=20 --set sources.exit.path=logs/exit_attribution.jsonl",
    )
    parser.add_argument("--log-format", choices=("auto", "json", "console"), help="log output (default: auto by TTY)")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon (until SIGTERM)", description=_run.__doc__)
    run.add_argument(
        "--backfill",
        action="store_true",
        help="also read history: rotated copies never applied, and sources without a checkpoint from their start "
        "(default: those from their current end, the copies left to `backfill`)",
    )
    run.set_defaults(handler=_run)

    backfill = commands.add_parser(
        "backfill", help="apply everything not yet applied, then exit", description=_backfill.__doc__
    )
    backfill.add_argument(
        "--from-scratch",
        action="store_true",
        help="rebuild all state from all history into a new store generation, swapped in only on success",
    )
    backfill.add_argument(
        "--progress", choices=("auto", "bar", "log", "none"), default="auto", help="progress display (default auto)"
    )
    backfill.set_defaults(handler=_backfill)

    audit = commands.add_parser(
        "audit",
        help="account for every line of every file (exit 0 only if none unaccounted)",
        description=_audit.__doc__,
    )
    audit.add_argument("--json", action="store_true", help="machine-readable output")
    audit.set_defaults(handler=_audit)

    status = commands.add_parser(
        "status", help="per-source progress and whether a daemon runs", description=_status.__doc__
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)

    weights = commands.add_parser(
        "weights", help="what was learned, per strategy and regime", description=_weights.__doc__
    )
    weights.add_argument("--json", action="store_true", help="canonical JSON (sorted keys, no wall-clock fields)")
    weights.add_argument("--strategy", help="only this strategy")
    weights.add_argument("--regime", help="only this regime (case-insensitive)")
    weights.set_defaults(handler=_weights)

    evaluation = commands.add_parser(
        "evaluate", help="learned vs static weights, test-then-train", description=_evaluate.__doc__
    )
    evaluation.add_argument("--json", action="store_true", help="machine-readable output")
    evaluation.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    evaluation.add_argument("--seed", type=int, default=0, help="bootstrap seed (>= 0)")
    evaluation.add_argument(
        "--regime-blind",
        choices=sorted(MIXED_FIGURES),
        help="score every trade as the unchanged bot does, regime-blind, with this figure per component (the "
        "export writes strategy_wide in MIXED); default: learnd's own per-regime multipliers",
    )
    evaluation.set_defaults(handler=_evaluate)

    schedule = commands.add_parser(
        "schedule", help="next and last runs of the daily and weekly jobs", description=_schedule.__doc__
    )
    schedule.add_argument("--json", action="store_true", help="machine-readable output")
    schedule.add_argument("--from", dest="start", help="list runs after this ISO time (with offset; default: now)")
    schedule.add_argument("--count", type=int, default=5, help="how many next runs per job (default 5)")
    schedule.set_defaults(handler=_schedule)

    signals = commands.add_parser(
        "signals", help="signal episodes: conversion to trades and outcomes per pattern", description=_signals.__doc__
    )
    signals.add_argument("--json", action="store_true", help="machine-readable output")
    signals.set_defaults(handler=_signals)

    execution = commands.add_parser(
        "execution", help="execution quality: fills, fallbacks, slippage", description=_execution.__doc__
    )
    execution.add_argument("--json", action="store_true", help="machine-readable output")
    execution.set_defaults(handler=_execution)

    verify = commands.add_parser(
        "verify", help="end-to-end self check in a temporary home", description=_verify.__doc__
    )
    verify.add_argument("--trades", type=int, default=1500, help="trades to simulate (default 1500)")
    verify.add_argument("--seed", type=int, default=5, help="simulation seed (>= 0)")
    verify.add_argument("--keep", type=Path, help="keep the homes in this (new) directory instead of a temporary one")
    verify.set_defaults(handler=_verify)

    report = commands.add_parser(
        "report", help="show a daily or weekly report and chart the multipliers", description=_report.__doc__
    )
    which = report.add_mutually_exclusive_group()
    which.add_argument("--day", help="trading day YYYY-MM-DD (default: the latest daily report)")
    which.add_argument("--week", help="ISO week YYYY-Www")
    report.add_argument("--strategy", default="equity", help="strategy to chart (default equity)")
    report.add_argument("--no-chart", action="store_true", help="skip the PNG chart (no matplotlib needed)")
    report.add_argument("--open", action="store_true", help="open the chart with the desktop's viewer (xdg-open)")
    report.set_defaults(handler=_report)

    simulate = commands.add_parser(
        "simulate", help="write a simulated bot home with planted edges", description=_simulate.__doc__
    )
    simulate.add_argument("--out", type=Path, required=True, help="the home to create")
    simulate.add_argument("--trades", type=int, default=3000, help="closed trades to simulate (default 3000)")
    simulate.add_argument("--seed", type=int, default=1, help="random seed >= 0 (same seed, same bytes)")
    simulate.add_argument("--shuffle-outcomes", action="store_true", help="null data: outcomes permuted across trades")
    simulate.set_defaults(handler=_simulate)
    return parser


def _settings(args: argparse.Namespace, *, logs: bool = True, **overrides: Any) -> Settings:
    """The settings the command line asks for; with `logs`, structured logging set up for them. The quick commands
    (status, weights, schedule) log nothing, and structlog with the asyncio it imports is a third of their start."""
    for item in args.set:
        key, separator, value = item.partition("=")
        if not separator:
            raise UsageError(f"--set {item}: expected KEY=VALUE")
        overrides[key.strip()] = value
    if args.log_format:
        overrides["log_format"] = args.log_format
    settings = load_settings(home=args.home, config_file=args.config, overrides=overrides)
    if not settings.home.is_dir():
        # A mistyped --home or LEARND_HOME would otherwise be a new, empty home: nothing to read, every view
        # healthy, and a backfill creating its tree.
        raise ConfigError(f"home {settings.home}: no such directory (from --home, $LEARND_HOME or the current one)")
    if logs:
        from learnd.service.logs import configure_logging

        configure_logging(settings.log_format)
    return settings


def _run(args: argparse.Namespace) -> int:
    """Run the daemon on the home: tail every source, learn, commit, export, run the scheduled jobs.

    Stops cleanly on SIGTERM or SIGINT (commits, logs a summary, exits 0). SIGHUP reloads the configuration (sources,
    learning parameters, the bot's rules; an invalid one is rejected and logged, the running one stays; the exchange
    calendar takes a restart). Only one daemon may own a home. Once
    the start-up is caught up, a daemon that history, a backlog or the job catch-up grew by more than
    respawn_after_growth_mib executes itself afresh (same pid and home lock) to idle at its starting size.
    """
    # Held (pending) until the daemon handles them (serve unblocks them): during the imports a SIGHUP's default
    # action killed the process, and a Ctrl-C printed a traceback.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    from learnd.service.memory import keep_large_blocks_apart

    keep_large_blocks_apart()  # before the daemon's imports and its bursts, whose large blocks would hole the heap
    import asyncio

    from learnd.service.daemon import Respawn, serve

    handed_over = os.environ.pop(RESPAWN_VARIABLE, None)
    respawned = Respawn.from_environ_value(handed_over) if handed_over is not None else None
    if respawned is not None and respawned.settings:
        # The image before ran with these (as read at its start or its last reload that was applied).
        from learnd.config import settings_from_handover
        from learnd.service.logs import configure_logging

        settings = settings_from_handover(respawned.settings)
        configure_logging(settings.log_format)
    else:
        settings = _settings(args)
    return asyncio.run(
        serve(
            settings,
            backfill=args.backfill,
            reload_settings=lambda: _settings(args),
            respawn=_respawn,
            respawned=respawned,
        )
    )


def _respawn(respawn: Respawn) -> NoReturn:
    """Execute this daemon afresh, as it was started (same pid, arguments and environment), handing it the home
    lock and the signals kept meanwhile: it resumes from the checkpoints the burst left, with nothing to catch up."""
    sys.stdout.flush()
    sys.stderr.flush()
    environ = {**os.environ, RESPAWN_VARIABLE: respawn.environ_value()}
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)


def _backfill(args: argparse.Namespace) -> int:
    """Apply every line present and not yet applied: rotated copies of each source first (name.1, name.2.gz,
    dated names; oldest first; plain and gzip), then each current file from its checkpoint (or its start). Then
    run the daily and weekly jobs for every historical day and week not yet run, in event order.

    Running it twice applies nothing the second time. --from-scratch rebuilds everything into a new store
    generation beside the live one and swaps it in only on success (at once, or when the running daemon next
    starts); the old state stays usable until then.
    """
    settings = _settings(args)
    if args.from_scratch:
        from learnd.service.rebuild import rebuild_from_scratch

        result = rebuild_from_scratch(settings, progress=args.progress)
        status = _print_backfill(result.report)
        if result.swapped:
            print("rebuild: the new store generation is live; the previous one is kept in state/learnd.previous/")
        else:
            print(
                f"rebuild: the new generation is ready in {result.ready}; a daemon owns this home, so it replaces "
                "the live state when learnd next starts here (systemctl restart learnd), unless a log is rotated or "
                "truncated before then: the lines the daemon learns meanwhile could not be read again, and the "
                "rebuild is discarded (logged as rebuild_discarded)"
            )
        return status
    from learnd.service.backfill import run_backfill

    return _print_backfill(run_backfill(settings, progress=args.progress))


def _print_backfill(report: Any) -> int:
    """Print a backfill's summary; its exit status (1 when a job period failed, 0 otherwise)."""
    failed = report.job_failures_count
    retried = "logged as job_failed; they run again at the next start or backfill"
    print(
        f"backfill: {report.lines_count} lines read ({report.history_lines_count} from "
        f"{report.history_files_count} rotated files), {report.applied_count} applied, {report.duplicate_count} "
        f"duplicate, {report.ignored_count} ignored, {report.quarantined_count} quarantined; "
        f"{report.job_periods_count} job periods run" + (f", {failed} of them failed ({retried})" if failed else "")
    )
    return 1 if failed else 0


def _audit(args: argparse.Namespace) -> int:
    """Account for every line of every file learnd can see (current and rotated, plain and gzip): applied,
    duplicate, ignored (by kind), quarantined (by reason), pending, and unaccounted. Exits 0 only when nothing
    is unaccounted anywhere and every file could be read."""
    settings = _settings(args)
    from learnd.views.audit import collect_audit, render_audit

    report = collect_audit(settings)
    _emit(report, render_audit, as_json=args.json)
    return 0 if report["healthy"] else 1


def _status(args: argparse.Namespace) -> int:
    """Show, per source: path, committed offset, file size, lag, lines applied/quarantined/duplicate, and
    whether a daemon is running on this home."""
    settings = _settings(args, logs=False)
    from learnd.views.status import collect_status, render_status

    report = collect_status(settings)
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")
    else:
        sys.stdout.write(render_status(report))
    return 0


def _weights(args: argparse.Namespace) -> int:
    """Show the learned model: per strategy, each entry component's multiplier (strategy-wide and per regime),
    its evidence and samples, and each exit component's multiplier, win rate and mean P&L."""
    settings = _settings(args, logs=False)
    from learnd.views.weights import render_weights, weights_document

    document = weights_document(settings, args.strategy, args.regime)
    if args.json:
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")
    else:
        sys.stdout.write(render_weights(document))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    """Prequential (test, then train) evaluation over the attribution logs: each closed trade, in event order,
    is scored with the weights learned so far and with the static base weights, then learned from. Reports the
    Spearman IC of score vs realized P&L (learned, static, and their paired difference with a day-block
    bootstrap interval) overall, per regime and per month; top-quintile hit rate; multiplier turnover."""
    settings = _settings(args)
    from learnd.views.evaluation import run_evaluation

    result = run_evaluation(settings, bootstrap_samples=args.bootstrap, seed=args.seed, regime_blind=args.regime_blind)
    scoring = f"regime_blind:{args.regime_blind}" if args.regime_blind else "per_regime"
    if args.json:
        document = {"scoring": scoring, **result.to_dict()}
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")
    else:
        sys.stdout.write(f"learned score: {scoring}\n" + result.render_text())
    return 0


def _schedule(args: argparse.Namespace) -> int:
    """Show the next runs of each job (UTC and exchange time) on the exchange calendar, and the last runs with
    their outcome. Times come from the calendar: holidays and early closes included."""
    settings = _settings(args, logs=False)
    from learnd.views.schedule import render_schedule, schedule_document

    start = _parse_moment(args.start) if args.start else None
    document = schedule_document(settings, start, args.count)
    if args.json:
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")
    else:
        sys.stdout.write(render_schedule(document))
    return 0


def _parse_moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--from {text!r}: not an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise UsageError(f"--from {text!r}: give an offset (Z or +00:00): exchange time and UTC must not be guessed")
    return moment


def _signals(args: argparse.Namespace) -> int:
    """Signal candidates collapsed into episodes (same strategy, symbol, direction; gaps under signals.gap_minutes),
    joined to the trades they became and those trades' outcomes: conversion rate and outcomes per component
    pattern and regime, with confidence intervals. Suggestions appear only where a bound supports them; learnd
    never applies them to weights (signals.suggestions_enabled only marks them as meant to apply)."""
    settings = _settings(args)
    from learnd.learning.signals import render_signals
    from learnd.views.signals import signals_document

    document = signals_document(settings)
    _emit(document, render_signals, as_json=args.json)
    return 0


def _execution(args: argparse.Namespace) -> int:
    """Execution quality per symbol, order type, side and time-of-day bucket: submissions, fills, fill rate,
    limit-not-filled and market-fallback rates, close failures, slippage in bps (logged or computed from fill vs
    decision price: each row says which), and symbols whose costs eat a material share of their mean P&L."""
    settings = _settings(args)
    from learnd.learning.execution import render_execution
    from learnd.views.execution import execution_document

    document = execution_document(settings)
    _emit(document, render_execution, as_json=args.json)
    return 0


def _emit(document: dict[str, Any], render: Callable[[dict[str, Any]], str], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")
    else:
        sys.stdout.write(render(document))


def _verify(args: argparse.Namespace) -> int:
    """End-to-end self check in a temporary home: simulate a bot with planted edges, run the real daemon while
    appending (lines split anywhere), SIGKILL and restart it, stop it with SIGTERM, compare with a one-shot
    backfill, and check trade counts, quarantine and that planted edges moved the right way. Prints a pass/fail
    list; exits 0 only when every check passed. Does not touch --home."""
    from learnd.devtools.verify import render_checks, run_verify
    from learnd.service.logs import configure_logging

    configure_logging("console" if sys.stdout.isatty() else "json")

    if args.keep is not None and args.keep.exists():
        raise UsageError(f"--keep {args.keep}: already exists; name a new directory")
    checks = run_verify(trades=args.trades, seed=args.seed, keep=args.keep)
    sys.stdout.write(render_checks(checks))
    return 0 if all(check.passed for check in checks) else 1


def _day(text: str) -> str:
    """A report's day as `--day` names it; a UsageError when it is not a date YYYY-MM-DD."""
    try:
        if len(text) == 10 and text[4] == text[7] == "-":
            return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise UsageError(f"--day {text!r}: not a day YYYY-MM-DD")


def _week(text: str) -> str:
    """A report's ISO week as `--week` names it; a UsageError when it is not a week YYYY-Www."""
    year, _, week = text.partition("-W")
    try:
        if len(year) == 4 and len(week) == 2 and year.isdigit() and week.isdigit():
            date.fromisocalendar(int(year), int(week), 1)
            return text
    except ValueError:
        pass
    raise UsageError(f"--week {text!r}: not an ISO week YYYY-Www")


def _report(args: argparse.Namespace) -> int:
    """Print a daily (--day) or weekly (--week) report as Markdown (default: the latest daily one) and draw
    data/reports/multipliers-<strategy>.png: each component's multiplier over event time, per regime, from
    data/weight_learning.jsonl, on one time axis up to the last trade learned (with the planted truth dashed when
    the home came from `learnd simulate`)."""
    settings = _settings(args)
    reports = settings.data_dir / "reports"
    if args.week:
        path = reports / "weekly" / f"{_week(args.week)}.md"
    elif args.day:
        path = reports / "daily" / f"{_day(args.day)}.md"
    else:
        latest = sorted((reports / "daily").glob("*.md"))
        if not latest:
            raise LearndError(f"no daily report in {reports / 'daily'} yet (the daily job writes one after each close)")
        path = latest[-1]
    if not path.exists():
        raise LearndError(f"{path}: no such report (see `learnd schedule` for when jobs run)")
    sys.stdout.write(path.read_text())
    if not args.no_chart:
        from learnd.views.charts import NothingToChart, draw_home_multipliers

        try:
            chart = draw_home_multipliers(settings, strategy=args.strategy)
        except NothingToChart as nothing:
            # The report was asked for and printed: a chart with no line yet is a note, not a failure.
            print(f"\nchart: none ({nothing})")
            return 0
        print(f"\nchart: {chart}")
        if args.open:
            # Imported here: only opening a chart runs a program (status and schedule load no subprocess module).
            import shutil
            import subprocess

            opener = shutil.which("xdg-open") or shutil.which("open")
            if opener is None:
                raise LearndError(f"nothing to open {chart} with (no xdg-open); open it yourself")
            subprocess.run([opener, str(chart)], check=False)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    """Write a realistic bot home (all four logs, garbage included) with planted per-component, per-regime edges
    and a planted exit-reason effect; the truth is written beside it as truth.json."""
    from learnd.devtools.simulate import simulate

    truth = simulate(args.out, trades=args.trades, seed=args.seed, shuffle_outcomes=args.shuffle_outcomes)
    print(f"simulate: wrote {args.out} ({truth.trades} trades, seed {args.seed}); truth in {args.out / 'truth.json'}")
    return 0
