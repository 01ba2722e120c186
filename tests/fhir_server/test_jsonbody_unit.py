"""Strict JSON parsing and exact decimals, without a server (https://hl7.org/fhir/R4/json.html)."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from fhir_server.errors import FhirError
from fhir_server.jsonbody import dumps, loads, parse_json

DEPTH = 64


@pytest.mark.parametrize(
    "number",
    [
        "1.50",
        "1.5",
        "0.10",
        "1E+3",
        "1.0E+5",
        "2.5E-7",
        "-0.0",
        "0.000",
        "-12.3400",
        "3.141592653589793238462643383279502884197",
        "1E+400",
        "0",
        "-1",
        "42",
        "9007199254740993",  # 2**53 + 1: a float would lose it
        "9223372036854775807",  # int64 max
        "9223372036854775808",  # 2**63
        "18446744073709551616",  # 2**64
        "-9223372036854775809",  # below int64
        "123456789012345678901234567890123456789012345678901234567890",
    ],
)
def test_numbers_are_written_back_exactly(number):
    body = f'{{"v":{number},"list":[{number}]}}'.encode()
    parsed = parse_json(body, DEPTH)
    assert dumps(parsed) == body
    assert loads(dumps(parsed)) == parsed
    assert dumps(loads(dumps(parsed))) == body, "stored JSON reads back the same"


@pytest.mark.parametrize(
    ("written", "kept"),
    [("1e3", "1E+3"), ("1E3", "1E+3"), ("1.0e-3", "0.0010"), ("0.0000001", "1E-7"), ("5e+0", "5")],
)
def test_other_spellings_keep_value_and_precision(written, kept):
    """Decimal spells some exponents its own way; the value and its digits are unchanged."""
    out = dumps(parse_json(f'{{"v":{written}}}'.encode(), DEPTH))
    assert out == f'{{"v":{kept}}}'.encode()
    assert Decimal(kept).as_tuple() == Decimal(written).as_tuple()


def test_decimals_are_decimal_and_integers_int():
    parsed = parse_json(b'{"d":1.50,"i":7,"b":true,"n":null,"s":"1.50"}', DEPTH)
    assert parsed == {"d": Decimal("1.50"), "i": 7, "b": True, "n": None, "s": "1.50"}
    assert type(parsed["d"]) is Decimal
    assert type(parsed["i"]) is int


def test_strings_round_trip():
    text = 'ümlaut, 漢字, emoji 😀, quote ", backslash \\, newline \n, nul \u0000'
    body = orjson.dumps({"s": text})
    assert parse_json(body, DEPTH) == {"s": text}
    assert dumps(parse_json(body, DEPTH)) == body
    assert parse_json(rb'{"s":"\ud83d\ude00"}', DEPTH) == {"s": "😀"}, "paired escapes are fine"


def test_non_finite_decimals_are_not_written():
    with pytest.raises(TypeError):
        dumps({"v": Decimal("NaN")})
    with pytest.raises(TypeError):
        dumps({"v": Decimal("Infinity")})


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


REFUSED = [
    ("empty", b"", "empty"),
    ("blank", b"  \n ", "empty"),
    ("invalid", b'{"a":', "Invalid JSON at line 1"),
    ("trailing data", b"{} []", "Invalid JSON"),
    ("single quotes", b"{'a':1}", "Invalid JSON"),
    ("trailing comma", b'{"a":1,}', "Invalid JSON"),
    ("bare word", b"{a:1}", "Invalid JSON"),
    ("duplicate key", b'{"a":1,"a":1}', "Duplicate JSON property 'a'"),
    ("nested duplicate key", b'{"x":[{"b":1,"c":2,"b":3}]}', "Duplicate JSON property 'b'"),
    ("duplicate among colons", b'{"u:v":"http://a","x":["b:c"],"u:v":1}', "property 'u:v'"),
    ("NaN", b'{"a":NaN}', "NaN"),
    ("Infinity", b'{"a":Infinity}', "Infinity"),
    ("-Infinity", b"[-Infinity]", "Infinity"),
    ("invalid UTF-8", b'{"a":"\xff"}', "UTF-8"),
    ("truncated UTF-8", b'{"a":"\xe2\x82"}', "UTF-8"),
    ("UTF-16", '{"a":1}'.encode("utf-16"), "UTF-8"),
    ("byte order mark", b'\xef\xbb\xbf{"a":1}', "BOM"),
    ("lone high surrogate", rb'{"a":"\ud800"}', "surrogate"),
    ("lone low surrogate", rb'["x\udc00y"]', "surrogate"),
    ("lone surrogate in a key", rb'{"\udfff":1}', "surrogate"),
    ("reversed surrogate pair", rb'["\ude00\ud83d"]', "surrogate"),
    ("5000-digit integer", b"[" + b"9" * 5000 + b"]", "Invalid JSON"),
    ("depth limit + 1", nested(DEPTH + 1), f"deeper than {DEPTH}"),
    ("array bomb", nested(100_000), f"deeper than {DEPTH}"),
    ("object bomb", b'{"a":' * 100_000 + b"0" + b"}" * 100_000, f"deeper than {DEPTH}"),
    ("control character in a string", b'{"a":"x\x01y"}', "Invalid JSON"),
]


@pytest.mark.parametrize(
    ("body", "fragment"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_bad_json_is_refused_with_a_400_naming_it(body, fragment):
    with pytest.raises(FhirError) as caught:
        parse_json(body, DEPTH)
    assert caught.value.status == 400
    assert fragment in caught.value.diagnostics
    outcome = orjson.loads(caught.value.outcome())
    assert outcome["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "body",
    [
        nested(DEPTH),
        b'{"a":' * (DEPTH - 1) + b"{}" + b"}" * (DEPTH - 1),
        b'[{"a":[{"b":1}]}]',
        b'{"u:v":"http://a:b","x":[":",{"y:":"::"}]}',
        rb'{"a":"\\ud800"}',  # an escaped backslash, not a surrogate
        b"[]",
        b'"text"',
        b"null",
    ],
    ids=[
        "depth limit",
        "object depth limit",
        "mixed",
        "colons",
        "escaped backslash",
        "array",
        "str",
        "null",
    ],
)
def test_good_json_is_accepted(body):
    assert dumps(parse_json(body, DEPTH)) == orjson.dumps(orjson.loads(body))
