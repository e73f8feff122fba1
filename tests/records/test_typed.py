"""records.typed: a plain signal line decoded straight into its record gives exactly what decode_line +
parse_record give; anything the typed path does not take, the general path still decides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learnd.devtools.simulate import simulate
from learnd.errors import RecordError
from learnd.records import typed as typed_module
from learnd.records.decode import BadLine, decode_line
from learnd.records.parse import SignalRecord, parse_record
from learnd.records.typed import signal_record

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
    """More distinct components texts than are remembered: the memory empties and starts again, and every line
    still gets the general path's record."""
    for index in range(typed_module._RECENT_COMPONENTS_MAX + 10):
        raw = _line(b'{"flow": %d.5, "gamma": 0.25}' % index)
        assert same_record(signal_record(raw), general(raw))
        assert len(typed_module._RECENT_COMPONENTS) <= typed_module._RECENT_COMPONENTS_MAX
