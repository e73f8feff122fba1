"""records.components: the contract's vocabulary, checked against the tables, defaults and examples of
FORMATS.md ("Components" and "Composite exit reasons"), whose text is pasted here and read row by row."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnd.records.components import (
    COMPONENT_ALIASES,
    COMPONENT_METADATA_KEYS,
    ENTRY_BASE_WEIGHTS,
    ENTRY_COMPONENTS,
    EXIT_BASE_WEIGHTS,
    _split_outside_parens,  # the split is not what this file's property tests
    canonical_component,
    exit_component,
    exit_components,
    exit_components_of,
    exit_reason_tokens,
)

# FORMATS.md's text, pasted as it stands there and read by the helpers below.
COMPONENT_TABLE = """
| flow | options_flow |
| iv_skew | iv_term_skew |
| smile | smile_slope |
| whale | whale_persistence |
| event | event_alignment |
| motif_bonus | temporal_motif |
| regime | regime_modifier |
| calendar | calendar_catalyst |
| dark_pool, insider, toxicity_penalty, congress, shorts_squeeze, institutional, market_tide, etf_flow, greeks_gamma, ftd_pressure, iv_rank, oi_change, squeeze_score | same name |
"""  # noqa: E501 - one table row, as in FORMATS.md
# "Legacy keys also appear in old logs: `flow_count`, `flow_premium` (-> options_flow), `darkpool` (-> dark_pool),
# `gamma` (-> greeks_gamma)", as a table.
LEGACY_TABLE = """
| flow_count, flow_premium | options_flow |
| darkpool | dark_pool |
| gamma | greeks_gamma |
"""
BASE_WEIGHTS_TEXT = """
options_flow 2.4, dark_pool 1.3, insider 0.5, iv_term_skew 0.6, smile_slope 0.35,
whale_persistence 0.7, event_alignment 0.4, temporal_motif 0.5,
toxicity_penalty -0.9, regime_modifier 0.3, congress 0.9, shorts_squeeze 0.7,
institutional 0.5, market_tide 0.4, calendar_catalyst 0.45, etf_flow 0.3,
greeks_gamma 0.4, ftd_pressure 0.3, iv_rank 0.2, oi_change 0.35, squeeze_score 0.2.
"""
EXIT_TABLE = """
| signal_decay, entry_decay | entry_decay |
| flow_reversal, adverse_flow | adverse_flow |
| drawdown | drawdown_velocity |
| time, stale | time_decay |
| momentum | momentum_reversal |
| volume | volume_exhaustion |
| support | support_break |
| trail_stop, profit_target, displaced, regime, risk, stop | their own token (learn them too) |
"""
EXIT_WEIGHTS_TEXT = """
entry_decay 1.0, adverse_flow 1.2, drawdown_velocity 1.5,
time_decay 0.8, momentum_reversal 1.3, volume_exhaustion 0.9, support_break 1.4.
"""


def table_rows(table: str) -> list[tuple[str, str]]:
    """(left cell item, right cell) for each item of each row of a two-column Markdown table body."""
    rows = []
    for line in table.strip().splitlines():
        left, right = (cell.strip() for cell in line.strip("| ").split(" | "))
        rows += [(item.strip(), right) for item in left.split(",")]
    return rows


def weights(text: str) -> dict[str, float]:
    """`name 1.0, other -0.5.` as a mapping, in the text's order."""
    pairs = (item.split() for item in text.strip().rstrip(".").replace("\n", " ").split(","))
    return {name: float(value) for name, value in pairs}


SHORT_KEYS = {key: key if canonical == "same name" else canonical for key, canonical in table_rows(COMPONENT_TABLE)}
LEGACY_KEYS = dict(table_rows(LEGACY_TABLE))
BASE_WEIGHTS = weights(BASE_WEIGHTS_TEXT)
EXIT_WEIGHTS = weights(EXIT_WEIGHTS_TEXT)


def test_the_transcribed_tables_read_as_expected() -> None:
    """The helpers read FORMATS.md's text whole: 21 canonical keys, 8 short ones, 4 legacy, 7 exit weights."""
    assert len(SHORT_KEYS) == 21 and sum(key != name for key, name in SHORT_KEYS.items()) == 8
    assert list(LEGACY_KEYS) == ["flow_count", "flow_premium", "darkpool", "gamma"]
    assert (len(BASE_WEIGHTS), BASE_WEIGHTS["toxicity_penalty"], len(EXIT_WEIGHTS)) == (21, -0.9, 7)


@pytest.mark.parametrize(
    ("key", "canonical"),
    [*SHORT_KEYS.items(), *LEGACY_KEYS.items()],
)
def test_logged_keys_map_to_their_canonical_names(key: str, canonical: str) -> None:
    """Every short, same-name and legacy key of the FORMATS.md table names its canonical component."""
    assert canonical_component(key) == canonical
    assert COMPONENT_ALIASES[key] == canonical


def test_canonical_names_are_exactly_the_table_and_each_names_itself() -> None:
    """The canonical components are the table's, in the default weights' order, and each maps to itself."""
    assert set(ENTRY_COMPONENTS) == set(SHORT_KEYS.values())
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


def removed_innermost_again_and_again(token: str) -> str:
    """The earlier rule, as the reference: remove the innermost arguments until none is left or none can go."""
    while "(" in token:
        bare = re.sub(r"\([^()]*\)", "", token)
        if bare == token:
            break
        token = bare
    return token


@given(st.text(alphabet="ab()+ ", max_size=40))
@settings(max_examples=2000, deadline=None)
def test_exit_reason_tokens_are_those_of_the_innermost_first_rule(reason: str) -> None:
    """Unclosed and stray parentheses, nesting, `+` anywhere: the same tokens as removing the innermost arguments
    again and again."""
    expected = [
        token
        for token in (removed_innermost_again_and_again(part).strip().lower() for part in _split_outside_parens(reason))
        if token
    ]
    assert exit_reason_tokens(reason) == expected


def test_a_deeply_nested_exit_reason_takes_time_in_its_length() -> None:
    """An argument nested 100,000 deep (a line of 200 kB) is removed in one pass: a fraction of a second (removing
    the innermost one again and again took time in the square of the depth, hours for a line near the limit)."""
    depth = 100_000
    reason = "drawdown" + "(" * depth + ")" * depth + "+stop"
    started = time.process_time()
    assert exit_reason_tokens(reason) == ["drawdown", "stop"]
    assert time.process_time() - started < 5.0


@pytest.mark.parametrize(("needle", "component"), table_rows(EXIT_TABLE))
def test_each_needle_of_the_exit_table_names_its_component(needle: str, component: str) -> None:
    """A token that is exactly a "token contains" entry of FORMATS.md's exit table maps to that row's component
    (the last row's tokens to themselves)."""
    expected = needle if component.startswith("their own token") else component
    assert exit_component(needle) == expected


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


@pytest.mark.parametrize(
    "reason",
    ["trail_stop+signal_decay(0.41)", "drawdown(3.2%)+flow_reversal", "", "x" * 199 + "+stop", "stop+" + "y" * 400],
)
def test_remembered_exit_components_are_the_computed_ones(reason: str) -> None:
    """Asked twice (the second answer remembered, for a reason of usual length) or once for a long reason, the
    components are exit_components' as a tuple."""
    assert exit_components_of(reason) == exit_components_of(reason) == tuple(exit_components(reason))


def test_default_exit_weights_are_the_contract_s() -> None:
    """The seven exit components of the bot's own table, with FORMATS.md's default weights."""
    assert EXIT_BASE_WEIGHTS == EXIT_WEIGHTS
    assert all(exit_component(name) == name for name in EXIT_BASE_WEIGHTS)
