"""records.components: the contract's vocabulary, checked against the tables and examples of FORMATS.md
("Components" and "Composite exit reasons"), transcribed here row by row."""

from __future__ import annotations

import pytest

from learnd.records.components import (
    COMPONENT_ALIASES,
    COMPONENT_METADATA_KEYS,
    ENTRY_BASE_WEIGHTS,
    ENTRY_COMPONENTS,
    EXIT_BASE_WEIGHTS,
    canonical_component,
    exit_component,
    exit_components,
    exit_reason_tokens,
)

# FORMATS.md, "Components": short key in logs -> canonical name.
SHORT_KEYS = {
    "flow": "options_flow",
    "iv_skew": "iv_term_skew",
    "smile": "smile_slope",
    "whale": "whale_persistence",
    "event": "event_alignment",
    "motif_bonus": "temporal_motif",
    "regime": "regime_modifier",
    "calendar": "calendar_catalyst",
}
SAME_NAME = (
    "dark_pool",
    "insider",
    "toxicity_penalty",
    "congress",
    "shorts_squeeze",
    "institutional",
    "market_tide",
    "etf_flow",
    "greeks_gamma",
    "ftd_pressure",
    "iv_rank",
    "oi_change",
    "squeeze_score",
)
LEGACY_KEYS = {
    "flow_count": "options_flow",
    "flow_premium": "options_flow",
    "darkpool": "dark_pool",
    "gamma": "greeks_gamma",
}
# FORMATS.md, "Default base weights".
BASE_WEIGHTS = {
    "options_flow": 2.4,
    "dark_pool": 1.3,
    "insider": 0.5,
    "iv_term_skew": 0.6,
    "smile_slope": 0.35,
    "whale_persistence": 0.7,
    "event_alignment": 0.4,
    "temporal_motif": 0.5,
    "toxicity_penalty": -0.9,
    "regime_modifier": 0.3,
    "congress": 0.9,
    "shorts_squeeze": 0.7,
    "institutional": 0.5,
    "market_tide": 0.4,
    "calendar_catalyst": 0.45,
    "etf_flow": 0.3,
    "greeks_gamma": 0.4,
    "ftd_pressure": 0.3,
    "iv_rank": 0.2,
    "oi_change": 0.35,
    "squeeze_score": 0.2,
}
# FORMATS.md, "Default exit weights".
EXIT_WEIGHTS = {
    "entry_decay": 1.0,
    "adverse_flow": 1.2,
    "drawdown_velocity": 1.5,
    "time_decay": 0.8,
    "momentum_reversal": 1.3,
    "volume_exhaustion": 0.9,
    "support_break": 1.4,
}


@pytest.mark.parametrize(
    ("key", "canonical"),
    [*SHORT_KEYS.items(), *((name, name) for name in SAME_NAME), *LEGACY_KEYS.items()],
)
def test_logged_keys_map_to_their_canonical_names(key: str, canonical: str) -> None:
    """Every short, same-name and legacy key of the FORMATS.md table names its canonical component."""
    assert canonical_component(key) == canonical
    assert COMPONENT_ALIASES[key] == canonical


def test_canonical_names_are_exactly_the_table_and_each_names_itself() -> None:
    """The canonical components are the table's, in the default weights' order, and each maps to itself."""
    assert set(ENTRY_COMPONENTS) == set(SHORT_KEYS.values()) | set(SAME_NAME)
    assert tuple(BASE_WEIGHTS) == ENTRY_COMPONENTS
    assert all(canonical_component(name) == name for name in ENTRY_COMPONENTS)
    assert set(COMPONENT_ALIASES) == set(ENTRY_COMPONENTS) | set(SHORT_KEYS) | set(LEGACY_KEYS)


def test_default_base_weights_are_the_contract_s() -> None:
    """The bot's scoring weights before learning, as FORMATS.md lists them (toxicity_penalty the only negative)."""
    assert ENTRY_BASE_WEIGHTS == BASE_WEIGHTS
    assert [name for name, weight in ENTRY_BASE_WEIGHTS.items() if weight < 0] == ["toxicity_penalty"]


@pytest.mark.parametrize("key", ["freshness_factor", "toxicity_correlation_penalty"])
def test_metadata_keys_are_not_components(key: str) -> None:
    """freshness_factor and toxicity_correlation_penalty ride along in `components` but name no component."""
    assert key in COMPONENT_METADATA_KEYS
    assert canonical_component(key) is None


@pytest.mark.parametrize("key", ["net_premium", "volatility", "Flow", "options-flow", ""])
def test_unknown_keys_name_no_component(key: str) -> None:
    """A key outside the table (a helper's legacy name, another spelling) is unknown, for the caller to count."""
    assert canonical_component(key) is None


@pytest.mark.parametrize(
    ("reason", "tokens"),
    [
        ("time_exit(4h)", ["time_exit"]),
        ("trail_stop", ["trail_stop"]),
        ("trail_stop(-0.8%)", ["trail_stop"]),
        ("trail_stop+signal_decay(0.41)", ["trail_stop", "signal_decay"]),
        ("profit_target(5%)+drawdown(3.2%)", ["profit_target", "drawdown"]),
        ("stale_trade(90min,0.12%)", ["stale_trade"]),
        ("stale_alpha_cutoff(336min,-0.00%)+regime_bear", ["stale_alpha_cutoff", "regime_bear"]),
        ("displaced_by_NVDA+flow_reversal", ["displaced_by_nvda", "flow_reversal"]),
        ("momentum_reversal", ["momentum_reversal"]),
        ("offense_atr_trail_stop", ["offense_atr_trail_stop"]),
        ("risk", ["risk"]),
    ],
)
def test_exit_reason_tokens_of_the_contract_s_examples(reason: str, tokens: list[str]) -> None:
    """Tokens are split at `+`, their parenthesised arguments removed, lower-cased, in order."""
    assert exit_reason_tokens(reason) == tokens


@pytest.mark.parametrize(
    ("reason", "tokens"),
    [
        ("signal_decay(0.3+0.1)+trail_stop", ["signal_decay", "trail_stop"]),
        ("stale_trade(90min,(0.12%))+risk", ["stale_trade", "risk"]),
        ("drawdown(f(x)+1)+stop", ["drawdown", "stop"]),
        (" TRAIL_STOP + Risk ", ["trail_stop", "risk"]),
        ("trail_stop++risk+", ["trail_stop", "risk"]),
        ("(0.41)+stop", ["stop"]),
        ("", []),
    ],
)
def test_exit_reason_tokens_keep_arguments_whole(reason: str, tokens: list[str]) -> None:
    """A `+` inside an argument does not split it, a nested argument is removed whole, and blanks and empty
    tokens are dropped."""
    assert exit_reason_tokens(reason) == tokens


@pytest.mark.parametrize(
    ("token", "component"),
    [
        ("signal_decay", "entry_decay"),
        ("entry_decay", "entry_decay"),
        ("flow_reversal", "adverse_flow"),
        ("adverse_flow", "adverse_flow"),
        ("drawdown", "drawdown_velocity"),
        ("time_exit", "time_decay"),
        ("stale_position", "time_decay"),
        ("stale_trade", "time_decay"),
        ("stale_alpha_cutoff", "time_decay"),
        ("momentum_reversal", "momentum_reversal"),
        ("volume_climax", "volume_exhaustion"),
        ("support_lost", "support_break"),
        ("trail_stop", "trail_stop"),
        ("offense_atr_trail_stop", "trail_stop"),
        ("profit_target", "profit_target"),
        ("displaced_by_nvda", "displaced"),
        ("regime_bear", "regime"),
        ("risk", "risk"),
        ("stop", "stop"),
        ("hard_stop", "stop"),
        ("manual_close", "manual_close"),
    ],
)
def test_exit_component_follows_the_contract_s_table(token: str, component: str) -> None:
    """Each row of FORMATS.md's exit component table; a token matching no row keeps its own name."""
    assert exit_component(token) == component


@pytest.mark.parametrize(
    ("reason", "components"),
    [
        ("trail_stop+signal_decay(0.41)", ["trail_stop", "entry_decay"]),
        ("trail_stop(-0.8%)+signal_decay(0.41)+trail_stop", ["trail_stop", "entry_decay"]),
        ("stale_trade(90min,0.12%)+time_exit(4h)", ["time_decay"]),
        ("drawdown(3.2%)+flow_reversal+momentum_reversal", ["drawdown_velocity", "adverse_flow", "momentum_reversal"]),
        ("", []),
    ],
)
def test_exit_components_are_distinct_in_first_seen_order(reason: str, components: list[str]) -> None:
    """A composite reason names each exit component once, in the order its first token appears."""
    assert exit_components(reason) == components


def test_default_exit_weights_are_the_contract_s() -> None:
    """The seven exit components of the bot's own table, with FORMATS.md's default weights."""
    assert EXIT_BASE_WEIGHTS == EXIT_WEIGHTS
    assert all(exit_component(name) == name for name in EXIT_BASE_WEIGHTS)
