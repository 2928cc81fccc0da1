"""The ledger's transcoder writes exactly the bytes the library's JSON transcoder writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.transcoder import KNOWN_VALUES, LedgerTranscoder


def library() -> JSONTranscoder:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


def ours() -> LedgerTranscoder:
    transcoder = LedgerTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),  # infinities too: the library writes them as Infinity
    st.text(),  # NUL, control characters, non-ASCII, surrogates excluded by hypothesis' default
    st.uuids(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))])),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
)


@settings(max_examples=400)
@given(st.dictionaries(st.text(), values, max_size=8))
def test_the_same_bytes_as_the_library_for_any_state(state: dict[str, Any]) -> None:
    expected = library().encode(state)
    assert ours().encode(state) == expected
    assert ours().decode(expected) == library().decode(expected)


def test_a_redemption_state_round_trips() -> None:
    state = {
        "timestamp": datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
        "retailer_id": UUID(int=7),
        "code": "STRASSE-Ü",
        "original_subtotal": Decimal("150.00"),
        "order_id": None,
        "free_shipping": False,
    }
    encoded = ours().encode(state)
    assert encoded == library().encode(state)
    assert ours().decode(encoded) == state


def test_anything_but_a_dict_is_left_to_the_library() -> None:
    for value in ([UUID(int=1), Decimal("1.5")], "text", 3, None):
        assert ours().encode(value) == library().encode(value)


def test_values_orjson_would_write_otherwise_take_the_library_path() -> None:
    # NaN (orjson writes null), an integer past 64 bits (orjson refuses it), a str subclass.
    class Label(str):
        pass

    for state in ({"x": float("nan")}, {"n": 2**70, "id": UUID(int=3)}, {"label": Label("a")}, {"t": (UUID(int=1),)}):
        assert ours().encode(state) == library().encode(state)


@settings(max_examples=100)
@given(st.lists(st.dictionaries(st.text(), values, max_size=4), min_size=1, max_size=6), st.data())
def test_one_transcoder_writes_the_library_bytes_for_states_that_share_a_timestamp(
    states: list[dict[str, Any]], data: st.DataObject
) -> None:
    # A batch's events share their decision's time (one datetime object); the transcoder converts
    # it once. Every state, in any order and among other timestamps, still reads as the library's.
    moments = [
        datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC),
        datetime(2026, 12, 6, 3, 2, 3, tzinfo=timezone(timedelta(hours=-5))),
    ]
    transcoder = ours()
    for state in states:
        state["timestamp"] = data.draw(st.sampled_from(moments))
        assert transcoder.encode(state) == library().encode(state)


def test_an_equal_instant_in_another_zone_is_written_as_its_own_value() -> None:
    transcoder = ours()
    utc = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    same_instant = utc.astimezone(timezone(timedelta(hours=1)))
    for state in ({"timestamp": utc}, {"timestamp": same_instant}, {"timestamp": utc}):
        assert transcoder.encode(state) == library().encode(state)
    assert b"13:00:00+01:00" in transcoder.encode({"timestamp": same_instant})


def exactly(value: Any) -> Any:
    """A value with every type and representation spelled out: Decimal("1.0") is not Decimal("1.00"),
    nor is an instant in one zone the same instant in another."""
    if isinstance(value, dict):
        return {key: exactly(item) for key, item in value.items()}
    if isinstance(value, list):
        return [exactly(item) for item in value]
    return (type(value).__name__, repr(value))


@settings(max_examples=200)
@given(st.lists(st.dictionaries(st.text(), values, max_size=6), min_size=1, max_size=8))
def test_one_transcoder_reads_back_the_librarys_values_state_after_state(states: list[dict[str, Any]]) -> None:
    """Forms decoded before are answered from memory: what is read is still exactly the library's."""
    transcoder, reference = ours(), library()
    stored = [reference.encode(state) for state in states]
    for data in [*stored, *reversed(stored)]:
        assert exactly(transcoder.decode(data)) == exactly(reference.decode(data))


def test_equal_values_written_differently_are_read_as_written() -> None:
    transcoder = ours()
    utc = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    states = [
        {"amount": Decimal("1.0"), "at": utc},
        {"amount": Decimal("1.00"), "at": utc.astimezone(timezone(timedelta(hours=1)))},
        {"amount": Decimal("1.0"), "at": utc},
    ]
    for state in states:
        read = transcoder.decode(library().encode(state))
        assert exactly(read) == exactly(state)


def test_the_values_remembered_are_bounded() -> None:
    transcoder = ours()
    for n in range(KNOWN_VALUES * 2 + 5):
        uuid = UUID(int=n)
        assert transcoder.decode(library().encode({"id": uuid})) == {"id": uuid}
        assert len(transcoder._known) <= KNOWN_VALUES


def test_forms_it_does_not_remember_are_the_librarys_own() -> None:
    transcoder = ours()
    for data in (b'{"x":{"_type_":"no_such","_data_":"1"}}', b'{"x":{"_type_":"uuid_hex","_data_":5}}'):
        try:
            library().decode(data)
        except Exception as error:
            expected: Any = type(error)
        else:
            expected = library().decode(data)
        try:
            got: Any = transcoder.decode(data)
        except Exception as error:
            got = type(error)
        assert got == expected
    assert transcoder.decode(b'{"x":{"_type_":"uuid_hex","_data_":"a","more":1}}') == library().decode(
        b'{"x":{"_type_":"uuid_hex","_data_":"a","more":1}}'
    )
