"""Settings precedence (defaults < file < environment < command line) and validation errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from learnd.config import load_settings
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
        ("this is not toml", {}, "learnd.toml"),
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


def test_shipped_default_config_loads_and_matches_the_builtin_defaults(tmp_path: Path) -> None:
    """config/learnd.toml documents the defaults: loading it changes nothing."""
    shipped = Path(__file__).resolve().parent.parent / "config" / "learnd.toml"
    assert load_settings(home=tmp_path, config_file=shipped, environ={}) == load_settings(home=tmp_path, environ={})
