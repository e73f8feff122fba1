"""records.typed: a plain signal, attribution or exit line decoded straight into its record gives exactly what
decode_line + parse_record give; anything the typed path does not take, the general path still decides."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnd.config import SourceKind
from learnd.devtools.simulate import simulate
from learnd.errors import RecordError
from learnd.records import typed as typed_module
from learnd.records.decode import BadLine, decode_line
from learnd.records.parse import ExitOutcome, Ignored, SignalRecord, TradeEntry, TradeOutcome, parse_record
from learnd.records.typed import attribution_record, exit_record, signal_record

COMPONENT_KEYS = [
    "flow",
    "flow_premium",
    "flow_count",
    "darkpool",
    "dark_pool",
    "iv_skew",
    "gamma",
    "freshness_factor",
    "mystery",
    "toxicity_penalty",
]


def general(raw: bytes) -> object:
    """What the general path makes of a line: a record, or the reason it is refused."""
    decoded = decode_line(raw)
    if isinstance(decoded, BadLine):
        return ("bad", decoded.reason)
    try:
        return parse_record("signals", decoded)
    except RecordError as error:
        return ("refused", error.reason)


def typed(raw: bytes) -> object:
    try:
        return signal_record(raw)
    except RecordError as error:
        return ("refused", error.reason)


def same_record(left: object, right: object) -> bool:
    """Equal records, floats bit for bit (repr tells -0.0 from 0.0)."""
    return left == right and repr(left) == repr(right)


numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-50, max_value=50),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from([0.0, -0.0, 1e9, -1e9, 1e9 + 1, 0.1, 1 / 3, 5e-324, 2.2250738585072014e-308]),
)
odd_values = st.one_of(
    numbers, st.none(), st.booleans(), st.text(max_size=3), st.lists(st.integers(-1000, 1000), max_size=2)
)
number_texts = st.one_of(
    numbers.map(lambda value: orjson.dumps(value).decode()),
    st.sampled_from(
        ["1e400", "-1e400", "1E5", "0.1000000000000000055511151231257827", "123456789012345678901234", "-0"]
    ),
    st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
)


@st.composite
def signal_lines(draw: st.DrawFn) -> bytes:
    """Signal rows, mostly well formed, with odd values, number spellings, keys and layouts mixed in."""
    components = draw(st.dictionaries(st.sampled_from(COMPONENT_KEYS), odd_values, max_size=6))
    cluster: dict[str, Any] = {
        "ticker": draw(st.one_of(st.sampled_from(["AMD", "MSFT", ""]), odd_values)),
        "direction": draw(st.one_of(st.sampled_from(["bullish", "bearish"]), odd_values)),
        "composite_score": draw(st.one_of(numbers, odd_values)),
        "composite_meta": draw(
            st.one_of(st.just({"score": 1.0, "components": components}), st.just(components), odd_values)
        ),
        "gate_passed": draw(st.one_of(st.booleans(), odd_values)),
        "source": draw(st.one_of(st.just("composite_v3"), odd_values)),
        "count": 1,
    }
    for key in draw(st.sets(st.sampled_from(list(cluster)), max_size=2)):
        del cluster[key]
    row: dict[str, Any] = {
        "ts": draw(
            st.one_of(
                st.sampled_from(
                    ["2026-03-02T14:32:30.551+00:00", "2026-03-02T14:32:30.1234567+00:00", "2026-03-02T14:32:30"]
                ),
                odd_values,
            )
        ),
        "type": draw(st.sampled_from(["signal", "other", None])),
        "cluster": cluster,
        "strategy_id": draw(st.one_of(st.sampled_from(["equity", " momentum ", ""]), odd_values)),
    }
    for key in draw(st.sets(st.sampled_from(list(row)), max_size=1)):
        del row[key]
    raw = orjson.dumps(row)
    # Number spellings orjson never writes (exponents, long fractions, huge values) in the score's place.
    if b'"composite_score":' in raw and draw(st.booleans()):
        raw = raw.replace(b'"composite_score":', b'"composite_score":' + draw(number_texts).encode() + b',"was":', 1)
    return draw(
        st.sampled_from(
            [
                raw,
                raw + b"\r",
                b"\xef\xbb\xbf" + raw,
                raw.replace(b'"AMD"', b'"AM\xc3\xa9"'),
                raw.replace(b'"count":1', b'"count":1,"note":"\xff"'),
                raw.replace(b'"count":1', b'"count":1e400'),
                raw.replace(b'"ticker"', b'"ticker":"X","ticker"', 1),
                raw[: len(raw) // 2],
            ]
        )
    )


@st.composite
def plain_signal_lines(draw: st.DrawFn) -> bytes:
    """Signal rows of the right types, the case the typed path exists for: numbers spelled every way JSON allows
    (long fractions, exponents, huge and tiny values, ints), aliases that sum, metadata and unknown keys, nulls."""
    keys = draw(st.lists(st.sampled_from(COMPONENT_KEYS), max_size=8))
    spelled = [draw(st.one_of(number_texts, st.just("null"))) for _ in keys]
    components = ",".join(f'"{key}":{value}' for key, value in zip(keys, spelled, strict=True))
    score = draw(number_texts)
    ts = draw(
        st.sampled_from(
            ["2026-03-02T14:32:30.551+00:00", "2026-03-02T14:32:30.1234567+00:00", "2026-03-02T09:32:30-05:00"]
        )
    )
    strategy = draw(st.sampled_from(['"equity"', '" momentum "', '""', "null"]))
    return (
        f'{{"ts":"{ts}","type":"signal","cluster":{{"ticker":"AMD","direction":"bullish","composite_score":{score},'
        f'"composite_meta":{{"score":1.0,"components":{{{components}}}}},"gate_passed":true,"source":"composite_v3",'
        f'"count":3}},"strategy_id":{strategy}}}'
    ).encode()


@settings(max_examples=3000)
@given(st.one_of(plain_signal_lines(), signal_lines()))
def test_the_typed_path_makes_exactly_the_general_paths_record_or_steps_aside(raw: bytes) -> None:
    """Whenever the typed path takes a line, its record (or refusal) is the general path's, bit for bit."""
    fast = typed(raw)
    if fast is None:
        return
    assert same_record(fast, general(raw)), (raw, fast, general(raw))


@settings(max_examples=500)
@given(plain_signal_lines())
def test_plain_lines_with_numbers_in_range_take_the_typed_path(raw: bytes) -> None:
    """The typed path is not a path nobody takes: a plain line whose general record exists is taken."""
    if isinstance(general(raw), SignalRecord):
        assert typed(raw) is not None


def test_it_takes_the_lines_the_bot_writes(tmp_path: Path) -> None:
    """Every well-formed signal line of a simulated home goes the typed way, with the general path's record."""
    simulate(tmp_path, trades=200, seed=5)
    taken = 0
    for raw in (tmp_path / "logs" / "signals.jsonl").read_bytes().splitlines():
        expected = general(raw)
        fast = typed(raw)
        if isinstance(expected, SignalRecord):
            assert same_record(fast, expected)
            taken += 1
        else:
            assert fast is None or same_record(fast, expected)
    assert taken > 1000


@pytest.mark.parametrize(
    "components",
    [b'"flow":1.5,"whale":null', b'"flow":1000000001.0,"whale":0.5,"flow":2', b'"flow":1,"smile":-0.0'],
    ids=["null", "out-of-range-then-repeated", "int-and-negative-zero"],
)
def test_contributions_it_cannot_take_unchecked_are_checked_as_the_general_path_checks_them(components: bytes) -> None:
    """A null, or an out-of-range number a repeated key then replaces, fails the range-checked decoding; the line
    is still taken, with the general path's components."""
    raw = (
        b'{"ts":"2026-03-02T14:32:30+00:00","cluster":{"ticker":"AMD","composite_meta":{"components":{'
        + components
        + b"}}}}"
    )
    expected = general(raw)
    assert isinstance(expected, SignalRecord)
    assert same_record(typed(raw), expected)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b'{"ts": "2026-03-02T14:32:30+00:00"}',
        b'{"ts": 5, "cluster": {"ticker": "A"}}',
        b"\xff\xfe",
        b"nul",
        b"[" * 100_000,
        b'{"ts": "2026-03-02T14:32:30+00:00", "cluster": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
    ],
    ids=["empty", "array", "no-cluster", "numeric-ts", "not-utf8", "not-json", "deep-array", "deep-object"],
)
def test_lines_it_does_not_take_are_left_to_the_general_path(raw: bytes) -> None:
    assert typed(raw) is None


def _line(components: bytes) -> bytes:
    return (
        b'{"ts":"2026-03-02T15:10:04.090+00:00","type":"signal","cluster":{"ticker":"AMD","composite_score":2.5,'
        b'"composite_meta":{"components":%s},"gate_passed":true},"strategy_id":"equity"}' % components
    )


def test_a_repeated_components_text_gives_each_line_its_own_record() -> None:
    """Lines repeating a components text (remembered by their exact bytes) still get the general path's record:
    a zero keeps its sign, an equal number spelled otherwise is its own text, a refused text is refused again."""
    texts = [
        b'{"flow": 1.5, "whale": -0.0}',
        b'{"flow": 1.5, "whale": 0.0}',
        b'{"flow": 1.50, "whale": -0}',
        b'{"flow": 1e10}',
        b'{"flow": null, "whale": 2}',
        b"null",
        b'{"flow": "x"}',
    ]
    for text in texts * 3:
        raw = _line(text)
        result = typed(raw)
        if text == b'{"flow": "x"}':
            assert result is None  # left to the general path, which names it
        else:
            assert same_record(result, general(raw))


def test_the_remembered_components_texts_stay_bounded() -> None:
    """More distinct components texts than are remembered: the oldest texts go (the newest are kept), and every
    line still gets the general path's record."""
    for index in range(typed_module._RECENT_COMPONENTS_MAX + 10):
        raw = _line(b'{"flow": %d.5, "gamma": 0.25}' % index)
        assert same_record(signal_record(raw), general(raw))
        assert len(typed_module._RECENT_COMPONENTS) <= typed_module._RECENT_COMPONENTS_MAX
    assert len(typed_module._RECENT_COMPONENTS) == typed_module._RECENT_COMPONENTS_MAX
    assert b'{"flow": 0.5, "gamma": 0.25}' not in typed_module._RECENT_COMPONENTS
    last = typed_module._RECENT_COMPONENTS_MAX + 9
    assert b'{"flow": %d.5, "gamma": 0.25}' % last in typed_module._RECENT_COMPONENTS


# Attribution and exit rows ---------------------------------------------------------------------------------------


def general_of(kind: SourceKind, raw: bytes) -> object:
    """What the general path makes of a line of a source of `kind`: a record, or the reason it is refused."""
    decoded = decode_line(raw)
    if isinstance(decoded, BadLine):
        return ("bad", decoded.reason)
    try:
        return parse_record(kind, decoded)
    except RecordError as error:
        return ("refused", error.reason)


TRADE_IDS = ["open_AMD_2026-03-02T14:30:00+00:00", "close_AMD_1", "scale_AMD_1", "note_AMD_1", "close", ""]
TIMESTAMPS = ["2026-03-02T14:32:30.551+00:00", "2026-03-02T14:32:30.1234567+00:00", "2026-03-02T14:32:30", "x"]
in_range = st.one_of(
    st.floats(min_value=-1e9, max_value=1e9), st.integers(-(10**9), 10**9), st.sampled_from([0.0, -0.0, 1e9, -1e9])
)


@st.composite
def near_plain(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]], more: dict[str, Any]) -> dict[str, Any]:
    """An object of the fields the bot writes, a few of them odd or left out, with `more` fields as they are."""
    row = {name: draw(strategy) for name, strategy in fields.items()} | more
    for name in draw(st.sets(st.sampled_from(sorted(row)), max_size=2)):
        row[name] = draw(odd_values)
    for name in draw(st.sets(st.sampled_from(sorted(row)), max_size=3)):
        del row[name]
    return row


@st.composite
def attribution_lines(draw: st.DrawFn) -> bytes:
    """Attribution rows (open, close, scale and others), mostly well formed, with odd values, number spellings,
    fields the bot does not write, repeated keys and broken bytes mixed in."""
    components = draw(
        st.dictionaries(st.sampled_from(COMPONENT_KEYS), st.one_of(in_range, in_range, odd_values), max_size=6)
    )
    fields = {
        "direction": st.sampled_from(["bullish", "bearish"]),
        "market_regime": st.sampled_from(["RISK_ON", " Bull ", ""]),
        "entry_score": in_range,
        "entry_ts": st.sampled_from(TIMESTAMPS),
        "close_reason": st.just("drawdown(1.7%)+stop"),
        "position_side": st.just("short"),
        "fraction": st.sampled_from([0.5, 1.0, 0.0, 1.5, -0.5]),
        "pnl_pct": in_range,
    }
    context = draw(near_plain(fields, {"components": components, "entry_price": 81.5, "qty": 3, "time_of_day": "x"}))
    fields = {
        "ts": st.sampled_from(TIMESTAMPS),
        "trade_id": st.sampled_from(TRADE_IDS),
        "symbol": st.sampled_from(["AMD", ""]),
        "entry_score": in_range,
        "pnl_usd": in_range,
        "pnl_pct": in_range,
        "hold_minutes": in_range,
        "market_regime": st.sampled_from(["RISK_ON", ""]),
        "strategy_id": st.sampled_from(["equity", " momentum ", ""]),
    }
    row = draw(near_plain(fields, {"type": "attribution", "context": context}))
    return draw(broken(orjson.dumps(row), b'"pnl_pct":', b'"symbol"', draw(number_texts)))


@st.composite
def exit_lines(draw: st.DrawFn) -> bytes:
    """Exit rows: the two outcome messages and other events, with the same mix of odd values as above."""
    fields = {
        "ts": st.sampled_from(TIMESTAMPS),
        "msg": st.sampled_from(["attribution_logged", "scale_out_attribution_logged", "exit_cycle"]),
        "symbol": st.sampled_from(["AMD", ""]),
        "pnl_usd": in_range,
        "pnl_pct": in_range,
        "hold_min": in_range,
        "reason": st.sampled_from(["signal_decay(0.37)", "trail_stop+risk", ""]),
        "fraction": st.sampled_from([0.5, 1.0, 0.0, 1.5]),
        "market_regime": st.sampled_from(["BULL", ""]),
        "strategy_id": st.sampled_from(["equity", " momentum ", ""]),
    }
    more = {"positions": 3} | ({"exit_reason": "stop"} if draw(st.integers(0, 9)) == 0 else {})
    return draw(broken(orjson.dumps(draw(near_plain(fields, more))), b'"pnl_pct":', b'"symbol"', draw(number_texts)))


@st.composite
def broken(draw: st.DrawFn, raw: bytes, number_field: bytes, string_field: bytes, number: str) -> bytes:
    """The row as written, or with a number spelled otherwise, a field repeated or added, or its bytes damaged."""
    if number_field in raw and draw(st.booleans()):
        raw = raw.replace(number_field, number_field + number.encode() + b',"was":', 1)
    return draw(
        st.sampled_from(
            [
                raw,
                raw,
                raw,
                raw + b"\r",
                b"\xef\xbb\xbf" + raw,
                raw.replace(b'"AMD"', b'"AM\xc3\xa9"'),
                raw.replace(b'"ts"', b'"note":"\xff","ts"', 1),
                raw.replace(string_field, string_field + b':"X",' + string_field, 1),
                raw.replace(b'"ts"', b'"extra":1e400,"ts"', 1),
                raw.replace(b'"qty":3', b'"qty":2' + b"0" * 308).replace(
                    b'"positions":3', b'"positions":-2' + b"0" * 308
                ),
                raw[: len(raw) // 2],
            ]
        )
    )


TYPED_ROWS: dict[SourceKind, Callable[[bytes], object]] = {"attribution": attribution_record, "exit": exit_record}


@settings(max_examples=3000)
@given(
    st.one_of(attribution_lines().map(lambda raw: ("attribution", raw)), exit_lines().map(lambda raw: ("exit", raw)))
)
def test_a_typed_attribution_or_exit_row_is_exactly_the_general_paths_record(line: tuple[SourceKind, bytes]) -> None:
    """Whenever the typed path takes an attribution or exit line, its record is the general path's, bit for bit;
    anything the general path refuses it leaves to the general path."""
    kind, raw = line
    fast = TYPED_ROWS[kind](raw)
    if fast is None:
        return
    assert same_record(fast, general_of(kind, raw)), (raw, fast, general_of(kind, raw))


@pytest.mark.parametrize("kind", ["attribution", "exit"])
def test_it_takes_the_attribution_and_exit_rows_the_bot_writes(tmp_path: Path, kind: SourceKind) -> None:
    """Every well-formed attribution and exit line of a simulated home goes the typed way, with the general path's
    record (its garbage lines are left to the general path)."""
    simulate(tmp_path, trades=200, seed=5)
    taken = 0
    for raw in (tmp_path / "logs" / f"{kind}.jsonl").read_bytes().splitlines():
        expected = general_of(kind, raw)
        fast = TYPED_ROWS[kind](raw)
        if isinstance(fast, tuple) or fast is None:
            assert not isinstance(expected, (TradeEntry, TradeOutcome, ExitOutcome, Ignored)), raw
        else:
            assert same_record(fast, expected)
            taken += 1
    assert taken > 200


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (
            "attribution",
            b'{"ts":"2026-03-02T14:32:30+00:00","trade_id":"close_A_1","symbol":"A","pnl_pct":1,"x":1e400}',
        ),
        ("attribution", b'{"ts":"2026-03-02T14:32:30+00:00","trade_id":"close_A_1","symbol":"A","pnl_pct":1,"y":2}'),
        ("attribution", b'{"ts":"2026-03-02T14:32:30+00:00","trade_id":"close_A_1","symbol":"A","pnl_pct":1e10}'),
        (
            "attribution",
            b'{"ts":"2026-03-02T14:32:30+00:00","trade_id":"scale_A_1","symbol":"A","pnl_pct":1,'
            b'"context":{"fraction":0.5}}',
        ),
        (
            "attribution",
            b'{"ts":"2026-03-02T14:32:30+00:00","trade_id":"open_A_1","symbol":"A",'
            b'"context":{"components":{"flow":1e400}}}',
        ),
        (
            "attribution",
            b'{"ts":"2026-03-02T14:32:30+00:00","trade_id":"open_A_1","symbol":"A",'
            b'"context":{"components":{"flow":true}}}',
        ),
        ("attribution", b'{"ts":5,"trade_id":"open_A_1","symbol":"A"}'),
        ("exit", b'{"ts":"2026-03-02T14:32:30+00:00","msg":"attribution_logged","symbol":"A","pnl_pct":1,"q":1}'),
        ("exit", b'{"ts":"2026-03-02T14:32:30+00:00","msg":"exit_cycle","ms":1e400}'),
        ("exit", b'{"ts":"2026-03-02T14:32:30+00:00","exit_reason":"stop","symbol":"A","pnl_pct":1}'),
        ("exit", b'{"ts":"bad","msg":"attribution_logged","symbol":"A","pnl_pct":1}'),
    ],
    ids=[
        "overflowing-unread-field",
        "field-the-bot-does-not-write",
        "pnl-out-of-range",
        "scale-without-its-own-pnl",
        "overflowing-component",
        "boolean-component",
        "numeric-ts",
        "exit-field-the-bot-does-not-write",
        "exit-event-overflowing-field",
        "rich-exit",
        "exit-bad-ts",
    ],
)
def test_attribution_and_exit_lines_it_does_not_take_are_left_to_the_general_path(kind: SourceKind, raw: bytes) -> None:
    """Lines the general path refuses, unscales or reads in another shape: the typed path steps aside."""
    assert TYPED_ROWS[kind](raw) is None


BEYOND_A_DOUBLE = [
    b"1e400",
    b"-1.8e308",
    b"1E+0309",
    b"2" + b"0" * 308,
    b"[-2" + b"0" * 308 + b"]",
    b'{"a":1' + b"0" * 400 + b"}",
]


@pytest.mark.parametrize(
    ("kind", "line"),
    [
        ("signals", b'{"ts":"2026-03-02T14:32:30+00:00","cluster":{"ticker":"A","count":%s},"note":%s}'),
        (
            "attribution",
            b'{"ts":"2026-03-02T14:32:30+00:00","trade_id":"close_A_1","symbol":"A","pnl_pct":1,"type":%s}',
        ),
        ("attribution", b'{"ts":"2026-03-02T14:32:30+00:00","trade_id":"open_A_1","symbol":"A","context":{"qty":%s}}'),
        ("exit", b'{"ts":"2026-03-02T14:32:30+00:00","msg":"attribution_logged","symbol":"A","pnl_pct":1,"ms":%s}'),
        ("exit", b'{"ts":"2026-03-02T14:32:30+00:00","msg":"exit_cycle","positions":%s}'),
    ],
    ids=["signal-skipped-fields", "attribution-type", "attribution-context-qty", "exit-outcome-ms", "exit-event"],
)
@pytest.mark.parametrize(
    "number", BEYOND_A_DOUBLE, ids=["exponent", "mantissa", "signed-exponent", "integer", "in-array", "in-object"]
)
def test_a_number_beyond_a_double_where_nothing_reads_it_leaves_the_line_to_the_general_path(
    kind: SourceKind, line: bytes, number: bytes
) -> None:
    """orjson refuses a number beyond a double's range wherever it is, and the general path quarantines the line;
    msgspec takes one in a field it skips, and an integer in a field decoded as anything (exactly, as an int)."""
    raw = line.replace(b"%s", number)
    assert general_of(kind, raw) == ("bad", "invalid_json")
    assert {"signals": signal_record, **TYPED_ROWS}[kind](raw) is None


@pytest.mark.parametrize(
    "number",
    [b"1e+100", b"-0e999", b"1" + b"0" * 199, b"0." + b"0" * 300 + b"1", b"1.5E-400"],
    ids=["exponent", "zero-exponent", "long-integer", "long-fraction", "underflow"],
)
def test_a_number_that_only_looks_beyond_a_double_keeps_the_typed_path(number: bytes) -> None:
    """A spelling that may lie beyond a double's range is asked of orjson: in range, the line is still taken."""
    lines: list[tuple[SourceKind, bytes]] = [
        ("signals", b'{"ts":"2026-03-02T14:32:30+00:00","cluster":{"ticker":"A","count":%s}}'),
        (
            "attribution",
            b'{"ts":"2026-03-02T14:32:30+00:00","trade_id":"close_A_1","symbol":"A","pnl_pct":1,"type":%s}',
        ),
        ("exit", b'{"ts":"2026-03-02T14:32:30+00:00","msg":"attribution_logged","symbol":"A","pnl_pct":1,"ms":%s}'),
    ]
    for kind, line in lines:
        raw = line.replace(b"%s", number)
        fast = {"signals": signal_record, **TYPED_ROWS}[kind](raw)
        assert fast is not None
        assert same_record(fast, general_of(kind, raw))


@st.composite
def spelled_rows(draw: st.DrawFn) -> tuple[SourceKind, bytes]:
    """Attribution and exit rows of the fields the bot writes, every number they read spelled some way JSON allows
    (exponents, long fractions, huge and tiny values, ints, -0)."""

    def number() -> str:
        return draw(st.one_of(number_texts, st.sampled_from(["0.5", "1", "-0", "-0.0", "1e-400", "null"])))

    if draw(st.booleans()):
        prefix = draw(st.sampled_from(["open", "close", "scale"]))
        return "attribution", (
            f'{{"ts":"2026-03-02T14:32:30.5+00:00","type":"attribution","trade_id":"{prefix}_A_1","symbol":"A",'
            f'"pnl_pct":{number()},"pnl_usd":{number()},"entry_score":{number()},"hold_minutes":{number()},'
            f'"context":{{"fraction":{number()},"pnl_pct":{number()},"entry_score":{number()},'
            f'"components":{{"flow":{number()},"darkpool":{number()}}},"qty":{number()}}}}}'
        ).encode()
    message = draw(st.sampled_from(["attribution_logged", "scale_out_attribution_logged"]))
    return "exit", (
        f'{{"ts":"2026-03-02T14:32:30.5+00:00","msg":"{message}","symbol":"A","pnl_pct":{number()},'
        f'"pnl_usd":{number()},"hold_min":{number()},"fraction":{number()},"ms":{number()}}}'
    ).encode()


@settings(max_examples=2000)
@given(spelled_rows())
def test_numbers_spelled_every_way_read_exactly_as_the_general_path_reads_them(line: tuple[SourceKind, bytes]) -> None:
    """A number the typed path reads is the general path's bit for bit (msgspec's float parsing against orjson's)."""
    kind, raw = line
    fast = TYPED_ROWS[kind](raw)
    if fast is not None:
        assert same_record(fast, general_of(kind, raw)), (raw, fast, general_of(kind, raw))


def test_a_trades_repeated_components_text_gives_each_row_its_own_record() -> None:
    """An open row and its close share a components text (remembered by its exact bytes): each row still gets
    the general path's record, and the memory of texts stays bounded."""
    for index in range(typed_module._TRADE_COMPONENTS_MAX + 10):
        components = b'{"flow_premium": %d.5, "darkpool": -0.0, "flow": 1, "mystery": 2}' % index
        for prefix in (b"open", b"close"):
            raw = (
                b'{"ts":"2026-03-02T14:32:30+00:00","trade_id":"%s_A_%d","symbol":"A","pnl_pct":0.5,'
                b'"context":{"components":%s,"market_regime":"BULL"}}' % (prefix, index, components)
            )
            assert same_record(attribution_record(raw), general_of("attribution", raw))
        assert len(typed_module._TRADE_COMPONENTS) <= typed_module._TRADE_COMPONENTS_MAX
