"""The contract's vocabulary: canonical entry components, exit components and their default weights.

Pure tables and lookups used by record parsing and the learners (FORMATS.md is the source).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

ENTRY_BASE_WEIGHTS: Final[dict[str, float]] = {
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

ENTRY_COMPONENTS: Final[tuple[str, ...]] = tuple(ENTRY_BASE_WEIGHTS)

_SHORT_KEYS: Final[dict[str, str]] = {
    "flow": "options_flow",
    "iv_skew": "iv_term_skew",
    "smile": "smile_slope",
    "whale": "whale_persistence",
    "event": "event_alignment",
    "motif_bonus": "temporal_motif",
    "regime": "regime_modifier",
    "calendar": "calendar_catalyst",
    # Legacy keys seen in old logs.
    "flow_count": "options_flow",
    "flow_premium": "options_flow",
    "darkpool": "dark_pool",
    "gamma": "greeks_gamma",
}

COMPONENT_ALIASES: Final[dict[str, str]] = {**{name: name for name in ENTRY_COMPONENTS}, **_SHORT_KEYS}

# Keys that ride along in `components` but are not score components.
COMPONENT_METADATA_KEYS: Final[frozenset[str]] = frozenset({"freshness_factor", "toxicity_correlation_penalty"})

EXIT_BASE_WEIGHTS: Final[dict[str, float]] = {
    "entry_decay": 1.0,
    "adverse_flow": 1.2,
    "drawdown_velocity": 1.5,
    "time_decay": 0.8,
    "momentum_reversal": 1.3,
    "volume_exhaustion": 0.9,
    "support_break": 1.4,
}

# Order matters: the first substring that matches names the exit component.
_EXIT_TOKEN_RULES: Final[tuple[tuple[tuple[str, ...], str], ...]] = (
    (("signal_decay", "entry_decay"), "entry_decay"),
    (("flow_reversal", "adverse_flow"), "adverse_flow"),
    (("drawdown",), "drawdown_velocity"),
    (("momentum",), "momentum_reversal"),
    (("volume",), "volume_exhaustion"),
    (("support",), "support_break"),
    (("trail_stop",), "trail_stop"),
    (("profit_target",), "profit_target"),
    (("displaced",), "displaced"),
    (("regime",), "regime"),
    (("time", "stale"), "time_decay"),
    (("risk",), "risk"),
    (("stop",), "stop"),
)

# An innermost argument; removed until none is left, so a nested one goes whole (the split below is depth-aware too).
_ARGUMENT = re.compile(r"\([^()]*\)")


def canonical_component(key: str) -> str | None:
    """The canonical name of a logged component key, or None when the key is not a known component."""
    return COMPONENT_ALIASES.get(key)


def exit_reason_tokens(reason: str) -> list[str]:
    """Split a composite exit reason (`a(x)+b`) into its bare tokens, arguments removed, order kept."""
    tokens: list[str] = []
    for part in _split_outside_parens(reason):
        token = _without_arguments(part).strip().lower()
        if token:
            tokens.append(token)
    return tokens


def _without_arguments(token: str) -> str:
    """`token` with every parenthesized argument removed, nested ones whole; an unclosed parenthesis and what
    follows it stay, as logged (so does a stray closing one)."""
    if "(" not in token:
        return token
    bare = _ARGUMENT.sub("", token)
    if "(" not in bare:
        return bare  # the usual: arguments one level deep
    # Nested or unclosed: one pass, matching each ")" with the last "(" still open (removing the innermost
    # arguments again and again took time in the square of the depth: seconds for one long line).
    kept: list[str] = []
    opened: list[int] = []
    for char in bare:
        if char == "(":
            opened.append(len(kept))
            kept.append(char)
        elif char == ")" and opened:
            del kept[opened.pop() :]
        else:
            kept.append(char)
    return "".join(kept)


def exit_component(token: str) -> str:
    """The exit component a bare reason token maps to; tokens outside the table keep their own name."""
    for needles, component in _EXIT_TOKEN_RULES:
        if any(needle in token for needle in needles):
            return component
    return token


def exit_components(reason: str) -> list[str]:
    """Distinct exit components named by a composite reason, in first-seen order."""
    seen: dict[str, None] = {}
    for token in exit_reason_tokens(reason):
        seen.setdefault(exit_component(token), None)
    return list(seen)


def exit_components_of(reason: str) -> tuple[str, ...]:
    """`exit_components(reason)` as a tuple, remembered for the reasons of usual length: an exit source repeats a few
    hundred reasons, and splitting one costs more than the rest of its line's record."""
    if len(reason) > _REMEMBERED_REASON_CHARS:
        return tuple(exit_components(reason))
    return _remembered_exit_components(reason)


# Reasons beyond this are computed each time, so that what is remembered stays small whatever a log holds.
_REMEMBERED_REASON_CHARS: Final = 200


@lru_cache(maxsize=4096)
def _remembered_exit_components(reason: str) -> tuple[str, ...]:
    return tuple(exit_components(reason))


def _split_outside_parens(reason: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    start = 0
    for index, char in enumerate(reason):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == "+" and depth == 0:
            parts.append(reason[start:index])
            start = index + 1
    parts.append(reason[start:])
    return parts
