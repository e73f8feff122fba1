"""Settings precedence (defaults < file < environment < command line) and validation errors that name the key."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from learnd.config import LearningParams, load_settings, settings_from_handover
from learnd.errors import ConfigError


def write_config(home: Path, text: str) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "learnd.toml").write_text(text)


def test_defaults_resolve_paths_against_the_home(tmp_path: Path) -> None:
    """With no file or environment, the four sources and state/data live under the home."""
    settings = load_settings(home=tmp_path, environ={})
    assert [source.name for source in settings.sources] == ["attribution", "exit", "signals", "orders"]
    assert settings.source("exit").path == tmp_path / "logs" / "exit.jsonl"
    assert settings.db_path == tmp_path / "state" / "learnd.db"
    assert settings.commit_interval_ms == 50


def test_file_then_environment_then_overrides_take_precedence(tmp_path: Path) -> None:
    """Each layer overrides the one before it."""
    write_config(tmp_path, "commit_interval_ms = 10\ncommit_batch_lines = 7\npoll_interval_ms = 300\n")
    settings = load_settings(
        home=tmp_path,
        environ={"LEARND_COMMIT_BATCH_LINES": "8", "LEARND_POLL_INTERVAL_MS": "400"},
        overrides={"poll_interval_ms": "500"},
    )
    assert (settings.commit_interval_ms, settings.commit_batch_lines, settings.poll_interval_ms) == (10, 8, 500)


def test_home_comes_from_learnd_home(tmp_path: Path) -> None:
    """LEARND_HOME names the home when --home is not given."""
    settings = load_settings(environ={"LEARND_HOME": str(tmp_path)})
    assert settings.home == tmp_path.resolve()


def test_a_source_can_be_added_and_moved_by_config_alone(tmp_path: Path) -> None:
    """A new table under [sources] adds a source; a path override moves one (exit_attribution.jsonl)."""
    write_config(
        tmp_path,
        '[sources.exit]\npath = "logs/exit_attribution.jsonl"\n'
        '[sources.fills2]\nkind = "orders"\npath = "/var/log/bot/orders2.jsonl"\n'
        "[sources.signals]\nenabled = false\n",
    )
    settings = load_settings(home=tmp_path, environ={})
    assert settings.source("exit").path == tmp_path / "logs" / "exit_attribution.jsonl"
    assert settings.source("fills2").kind == "orders"
    assert settings.source("fills2").path == Path("/var/log/bot/orders2.jsonl")
    assert "signals" not in [source.name for source in settings.sources]


def test_per_ticker_switch_from_the_bot_environment(tmp_path: Path) -> None:
    """ENABLE_PER_TICKER_LEARNING=true turns on per-ticker learning."""
    assert load_settings(home=tmp_path, environ={"ENABLE_PER_TICKER_LEARNING": "true"}).learning.per_ticker


@pytest.mark.parametrize(
    ("text", "environ", "key"),
    [
        ("commit_interval_ms = -1\n", {}, "commit_interval_ms"),
        ("commit_interval_ms = 'soon'\n", {}, "commit_interval_ms"),
        ("no_such_key = 1\n", {}, "no_such_key"),
        ("[learning]\nz_threshold = 0\n", {}, "learning.z_threshold"),
        ("[learning]\nbogus = 1\n", {}, "learning.bogus"),
        ('[sources.x]\npath = "a.jsonl"\n', {}, "sources.x.kind"),
        ('[sources.exit]\nkind = "nope"\n', {}, "sources.exit.kind"),
        ("", {"LEARND_MAX_LINE_BYTES": "lots"}, "max_line_bytes"),
        ("", {"LEARND_METRICS_ENABLED": "maybe"}, "metrics_enabled"),
        ("metrics_port = 70000\n", {}, "metrics_port"),
        ("respawn_after_growth_mib = -1\n", {}, "respawn_after_growth_mib"),
        ("", {"LEARND_RESPAWN_AFTER_GROWTH_MIB": "nan"}, "respawn_after_growth_mib"),
        ("this is not toml", {}, "learnd.toml"),
        ("[schedule]\ngrace_minutes = nan\n", {}, "schedule.grace_minutes"),
        ("[schedule]\ngrace_minutes = inf\n", {}, "schedule.grace_minutes"),
        ("", {"LEARND_SIGNALS__GAP_MINUTES": "nan"}, "signals.gap_minutes"),
        ("[signals]\nregime_lookback_hours = nan\n", {}, "signals.regime_lookback_hours"),
        ("[signals]\nregime_lookback_hours = -1.0\n", {}, "signals.regime_lookback_hours"),
        ("[signals]\nmin_episodes = 0\n", {}, "signals.min_episodes"),
        ("[execution]\ncost_share_threshold = nan\n", {}, "execution.cost_share_threshold"),
        ("[execution]\nmin_fills = 0\n", {}, "execution.min_fills"),
        ("shutdown_timeout_s = nan\n", {}, "shutdown_timeout_s"),
        ("shutdown_timeout_s = 0.0\n", {}, "shutdown_timeout_s"),
    ],
)
def test_invalid_settings_fail_naming_the_key(tmp_path: Path, text: str, environ: dict[str, str], key: str) -> None:
    """Every invalid value fails at load with a message that names its key."""
    write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(home=tmp_path, environ=environ)


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    """--config naming a file that does not exist fails rather than running on defaults."""
    with pytest.raises(ConfigError, match="not found"):
        load_settings(home=tmp_path, config_file=tmp_path / "nope.toml", environ={})


def test_an_unreadable_config_file_is_a_configuration_error(tmp_path: Path) -> None:
    """A config file that is not UTF-8, or a directory where the file should be, is a ConfigError naming the file
    (exit 3 at start, a rejected reload in a running daemon), never a traceback."""
    write_config(tmp_path, "")
    (tmp_path / "config" / "learnd.toml").write_bytes(b"commit_interval_ms = 20\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"learnd\.toml: not UTF-8"):
        load_settings(home=tmp_path, environ={})
    directory = tmp_path / "elsewhere.toml"
    directory.mkdir()
    with pytest.raises(ConfigError, match=r"elsewhere\.toml: cannot be read"):
        load_settings(home=tmp_path, config_file=directory, environ={})


def test_shipped_default_config_loads_and_matches_the_builtin_defaults(tmp_path: Path) -> None:
    """config/learnd.toml documents the defaults: loading it changes nothing."""
    shipped = Path(__file__).resolve().parent.parent / "config" / "learnd.toml"
    assert load_settings(home=tmp_path, config_file=shipped, environ={}) == load_settings(home=tmp_path, environ={})


def test_the_weights_file_follows_the_state_dir_unless_set(tmp_path: Path) -> None:
    """By default the weights file is state_dir/signal_weights.json, wherever state_dir is; paths.signal_weights
    moves it (relative to the home, or absolute)."""
    assert load_settings(home=tmp_path, environ={}).signal_weights_path == tmp_path / "state" / "signal_weights.json"
    moved_state = load_settings(home=tmp_path, environ={}, overrides={"paths.state_dir": "/var/lib/learnd"})
    assert moved_state.signal_weights_path == Path("/var/lib/learnd/signal_weights.json")
    own = load_settings(home=tmp_path, environ={"LEARND_PATHS__SIGNAL_WEIGHTS": "state/learnd_weights.json"})
    assert own.signal_weights_path == tmp_path / "state" / "learnd_weights.json"


def test_the_bots_pins_and_caps_default_to_the_bots_own(tmp_path: Path) -> None:
    """[bot] defaults: options_flow pinned, etf_flow and squeeze_score capped at 0.06, the file read; a TOML array,
    a comma-separated --set and the bot's own environment variables all set them."""
    default = load_settings(home=tmp_path, environ={}).bot
    assert default.pinned_components == ("options_flow",)
    assert default.capped_components == ("etf_flow", "squeeze_score")
    assert (default.weight_cap, default.adaptive_weights) == (0.06, True)
    write_config(tmp_path, '[bot]\npinned_components = ["options_flow", "dark_pool"]\nweight_cap = 0.1\n')
    from_file = load_settings(home=tmp_path, environ={}, overrides={"bot.capped_components": "etf_flow, iv_rank"})
    assert from_file.bot.pinned_components == ("options_flow", "dark_pool")
    assert from_file.bot.capped_components == ("etf_flow", "iv_rank")
    assert from_file.bot.weight_cap == 0.1
    bot_env = load_settings(
        home=tmp_path, environ={"UW_PASSIVE_ML_WEIGHT_CAP": "0.02", "DISABLE_ADAPTIVE_WEIGHTS": "1"}
    )
    assert (bot_env.bot.weight_cap, bot_env.bot.adaptive_weights) == (0.02, False)
    kept = load_settings(home=tmp_path, environ={"DISABLE_ADAPTIVE_WEIGHTS": "0"})
    assert kept.bot.adaptive_weights is True


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("bot.weight_cap", "-1", "bot.weight_cap"),
        ("bot.pinned_components", "Options Flow", "bot.pinned_components"),
        ("bot.capped_components", "7", "bot.capped_components"),
        ("bot.unknown", "1", "bot.unknown"),
        ("paths.signal_weights", "", "paths.signal_weights"),
    ],
)
def test_a_bad_bot_or_export_setting_names_its_key(tmp_path: Path, key: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(home=tmp_path, environ={}, overrides={key: value})


def test_every_learning_parameter_is_in_the_shipped_config_with_its_default() -> None:
    """config/learnd.toml lists each LearningParams field under [learning], at its built-in default."""
    shipped = Path(__file__).resolve().parent.parent / "config" / "learnd.toml"
    listed = tomllib.loads(shipped.read_text())["learning"]
    defaults = LearningParams()
    assert set(listed) == {field.name for field in dataclasses.fields(defaults)}
    assert all(listed[name] == getattr(defaults, name) for name in listed)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"interval_z": -1.0}, "interval_z"),
        ({"change_threshold": 0.0}, "change_threshold"),
        ({"off_scale_ratio": 1.0}, "off_scale_ratio"),
        ({"max_multiplier": 3.0}, "max_multiplier"),
        ({"min_multiplier": 0.1}, "min_multiplier"),
        ({"reference_half_life_sessions": 0.0}, "reference_half_life_sessions"),
        ({"creep_per_session": -0.1}, "creep_per_session"),
    ],
)
def test_new_learning_parameters_are_checked_naming_the_key(override: dict[str, float], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        LearningParams(**override)  # type: ignore[arg-type]


def test_the_respawn_hand_over_variable_is_no_setting(tmp_path: Path) -> None:
    """LEARND_RESPAWNED carries a daemon's hand-over to its next image (service.daemon.Respawn): the settings
    ignore it rather than refusing it as an unknown key."""
    settings = load_settings(home=tmp_path, environ={"LEARND_RESPAWNED": "7:8", "LEARND_RESPAWN_AFTER_GROWTH_MIB": "0"})
    assert settings.respawn_after_growth_mib == 0.0


def test_a_source_in_a_directory_this_user_may_not_search_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log path whose directory learnd's user may not search is a configuration error naming the source (it was a
    PermissionError, which a reload took for a failed write and retried for ever). The seam: stat of that path, made
    to fail as without search permission (root here may search anything)."""
    blocked = tmp_path / "logs" / "orders.jsonl"
    real_stat = os.stat

    def denied(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if Path(path) == blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", denied)
    with pytest.raises(ConfigError, match=r"sources\.orders\.path: .* cannot be looked at \(Permission denied\)"):
        load_settings(home=tmp_path, environ={})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LEARND_FOO": "1"}, "foo: unknown key (from the environment: LEARND_FOO='1')"),
        ({"UW_PASSIVE_ML_WEIGHT_CAP": "abc"}, "bot.weight_cap: must be a number, got 'abc' (from the environment: "),
        ({"LEARND_SCHEDULE__GRACE_MINUTES": "-1"}, "(from the environment: LEARND_SCHEDULE__GRACE_MINUTES='-1')"),
    ],
)
def test_a_bad_value_from_the_environment_names_its_variable(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    """A key the environment set is in no file the operator would look at: its error names the variable too."""
    with pytest.raises(ConfigError) as raised:
        load_settings(home=tmp_path, environ=environ)
    assert message in str(raised.value)


def test_a_value_the_command_line_sets_again_is_not_blamed_on_the_environment(tmp_path: Path) -> None:
    """--set overrides a variable: an error in its value is the command line's, and named as the key alone."""
    with pytest.raises(ConfigError) as raised:
        load_settings(home=tmp_path, environ={"LEARND_COMMIT_INTERVAL_MS": "20"}, overrides={"commit_interval_ms": -1})
    assert "environment" not in str(raised.value)


def test_the_settings_hand_over_builds_the_same_settings_whatever_the_values(tmp_path: Path) -> None:
    """What a respawned daemon runs with (Settings.handover) is the settings it was built from, sources added by
    config and integers beyond 64 bits included (one made every command end in a traceback: the hand-over was
    encoded with orjson, which refuses them)."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "learnd.toml").write_text(
        'max_line_bytes = 100000000000000000000\n[sources.orders_b]\nkind = "orders"\npath = "logs/b.jsonl"\n'
    )
    settings = load_settings(
        home=tmp_path, environ={"LEARND_COMMIT_INTERVAL_MS": "20"}, overrides={"log_format": "json"}
    )
    assert settings.max_line_bytes == 10**20 and settings.commit_interval_ms == 20
    again = settings_from_handover(settings.handover)
    assert again == settings and again.handover == settings.handover
    assert [source.name for source in again.sources] == [source.name for source in settings.sources]
