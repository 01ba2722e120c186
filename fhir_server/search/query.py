"""Parsing a FHIR search into predicates that drive an index range and test candidates exactly.

https://hl7.org/fhir/R4/search.html. Each predicate offers
- `ranges`: index ranges on the `k` array whose union holds every match (None: cannot drive), and
- `test(keys)`: the exact check on a candidate's keys (comma = OR inside one predicate).
Repeated parameters are separate predicates (AND). The most selective drivable predicate drives
the database query; all predicates are then tested on each candidate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.search.definitions import SearchParam
from fhir_server.search.index import indexed_params
from fhir_server.search.values import (
    PART,
    VALUE,
    date_range,
    decode_number,
    encode_number,
    normalise_string,
    strings,
)

# A key range [low, high); `high is None` means the single key `low`.
KeyRange = tuple[str, str | None]
Test = Callable[[frozenset[str]], bool]

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_sort",
        "_total",
        "_summary",
        "_elements",
        "_include",
        "_revinclude",
        "_contained",
        "_containedType",
        "_format",
        "_page",
        "_pretty",
    }
)
MODIFIERS = {
    "string": {"", "exact", "contains", "missing"},
    "token": {"", "not", "text", "missing"},
    "reference": {"", "identifier", "missing"},
    "date": {"", "missing"},
    "number": {"", "missing"},
    "quantity": {"", "missing"},
    "uri": {"", "below", "missing"},
}
# Higher drives first: exact keys beat ranges beat whole-parameter scans.
RANK_EXACT, RANK_RANGE, RANK_WIDE = 3, 2, 1


def after(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def prefix_range(prefix: str) -> KeyRange:
    return (prefix, after(prefix))


@dataclass
class Predicate:
    """One search parameter occurrence: an OR of values."""

    name: str
    ranges: list[KeyRange] | None
    test: Test
    rank: int
    ids: list[str] | None = None  # `_id`: served from the document key
    # Checks keys cannot answer (`:exact` needs the original text), run on the stored resource.
    resource_test: Callable[[dict[str, Any]], bool] | None = None
    kind: str = ""  # the parameter type (dates break ties between equally ranked drivers)

    def drivable(self) -> bool:
        return self.ranges is not None or self.ids is not None


@dataclass
class ParsedSearch:
    predicates: list[Predicate] = field(default_factory=list)
    result: dict[str, list[str]] = field(default_factory=dict)
    ignored: list[Issue] = field(default_factory=list)


def split_values(raw: str) -> list[str]:
    """Comma-separated OR values; `\\,` is a literal comma (search.html#escaping)."""
    out, current, escaped = [], "", False
    for ch in raw:
        if escaped:
            current += ch if ch in ",$|\\" else "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            out.append(current)
            current = ""
        else:
            current += ch
    out.append(current + ("\\" if escaped else ""))
    return out


def split_token(value: str) -> tuple[str | None, str]:
    """`system|code`, `|code` or `code` -> (system or None for any, code)."""
    if "|" in value:
        system, code = value.split("|", 1)
        return system, code
    return None, value


def _any_key(candidates: frozenset[str], low: str, high: str | None) -> bool:
    if high is None:
        return low in candidates
    return any(low <= k < high for k in candidates)


def _keys_test(ranges: list[KeyRange]) -> Test:
    return lambda keys: any(_any_key(keys, low, high) for low, high in ranges)


def _wide(code: str) -> KeyRange:
    return prefix_range(f"{code}{VALUE}")


def _missing(param: SearchParam, value: str) -> Predicate:
    if value not in {"true", "false"}:
        raise bad_request(f"{param.code}:missing must be true or false, not {value!r}")
    # A value can have only a modifier's keys: a Reference only an identifier, a
    # CodeableConcept only a text.
    extra = {"reference": ":identifier", "token": ":text"}.get(param.type)
    ranges = [_wide(param.code)] + ([_wide(param.code + extra)] if extra else [])
    has = _keys_test(ranges)
    if value == "false":
        return Predicate(param.code, ranges, has, RANK_WIDE)
    return Predicate(param.code, None, lambda keys: not has(keys), 0)


# -- per type ------------------------------------------------------------------------------


def _system_test(prefix: str, suffix: str) -> Test:
    """`system|`: any code of the system (keys end with the system)."""
    return lambda keys: any(k.startswith(prefix) and k.endswith(suffix) for k in keys)


def _token(param: SearchParam, modifier: str, values: list[str]) -> Predicate:
    code = param.code
    if modifier == "text":
        texts = [prefix_range(f"{code}:text{VALUE}{normalise_string(v)}") for v in values]
        return Predicate(code, texts, _keys_test(texts), RANK_RANGE)
    ranges: list[KeyRange] = []
    exact = True
    suffix_tests: list[Test] = []
    for value in values:
        system, token = split_token(value)
        if system is None:
            ranges.append(prefix_range(f"{code}{VALUE}{token}{PART}"))
            exact = False
        elif token == "":
            wanted = f"{PART}{system}"
            prefix = f"{code}{VALUE}"
            suffix_tests.append(_system_test(prefix, wanted))
            exact = False
        else:
            ranges.append((f"{code}{VALUE}{token}{PART}{system}", None))
    match = _keys_test(ranges)

    def test(keys: frozenset[str]) -> bool:
        return match(keys) or any(t(keys) for t in suffix_tests)

    if modifier == "not":
        return Predicate(code, None, lambda keys: not test(keys), 0)
    drive = [_wide(code)] if suffix_tests else ranges
    rank = RANK_WIDE if suffix_tests else (RANK_EXACT if exact else RANK_RANGE)
    return Predicate(code, drive, test, rank)


def reference_targets(param: SearchParam, value: str, type_modifier: str | None) -> list[str]:
    """The literal reference keys a reference search value means."""
    value = value.split("/_history/", 1)[0]
    if value.startswith(("http://", "https://", "urn:")):
        return [value]
    if "/" in value:
        if type_modifier and not value.startswith(type_modifier + "/"):
            return []
        return [value]
    if type_modifier:
        return [f"{type_modifier}/{value}"]
    # A bare id names every target type, except that a parameter called `patient` means a Patient
    # (its official targets also list Group, but a patient-scoped search is about a Patient).
    types = ["Patient"] if param.code == "patient" and "Patient" in param.targets else param.targets
    return [f"{t}/{value}" for t in types]


def _reference(param: SearchParam, modifier: str, values: list[str], base: str) -> Predicate:
    code = param.code
    if modifier == "identifier":
        ranges: list[KeyRange] = []
        for value in values:
            system, token = split_token(value)
            key = f"{code}:identifier{VALUE}{token}{PART}"
            ranges.append((key + system, None) if system is not None else prefix_range(key))
        return Predicate(code, ranges, _keys_test(ranges), RANK_EXACT)
    type_modifier = modifier or None
    if type_modifier and type_modifier not in param.targets:
        raise bad_request(f"{code}:{type_modifier} is not a target type of {code}")
    ranges = []
    for value in values:
        if value.startswith(base + "/"):
            value = value[len(base) + 1 :]
        for target in reference_targets(param, value, type_modifier):
            ranges.append((f"{code}{VALUE}{target}", None))
    return Predicate(code, ranges, _keys_test(ranges), RANK_EXACT)


def _string(param: SearchParam, modifier: str, values: list[str]) -> Predicate:
    code = param.code
    normals = [normalise_string(v) for v in values]
    if modifier == "contains":
        prefix = f"{code}{VALUE}"
        return Predicate(
            code,
            [_wide(code)],
            lambda keys: any(
                k.startswith(prefix) and n in k[len(prefix) :] for k in keys for n in normals
            ),
            RANK_WIDE,
        )
    ranges = [prefix_range(f"{code}{VALUE}{n}") if n else _wide(code) for n in normals]
    if modifier == "exact":
        # Keys are normalised; `exact` also needs the original text (checked on the resource).
        exact_ranges: list[KeyRange] = [(f"{code}{VALUE}{n}", None) for n in normals]
        wanted = set(values)

        def exact(resource: dict[str, Any]) -> bool:
            return any(s in wanted for v in param.values(resource) for s in strings(v))

        return Predicate(code, exact_ranges, _keys_test(exact_ranges), RANK_EXACT, None, exact)
    return Predicate(code, ranges, _keys_test(ranges), RANK_RANGE)


def _split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


def _date_pairs(code: str, keys: frozenset[str]) -> list[tuple[str, str]]:
    prefix = f"{code}{VALUE}<"
    pairs = []
    for k in keys:
        if k.startswith(prefix):
            low, _, high = k[len(prefix) :].partition(PART)
            pairs.append((low, high))
    return pairs


def _date_condition(op: str, plo: str, phi: str, rlo: str, rhi: str, slack: timedelta) -> bool:
    eq = rlo >= plo and rhi <= phi
    if op == "eq":
        return eq
    if op == "ne":
        return not eq
    if op == "gt":
        return rhi > phi
    if op == "lt":
        return rlo < plo
    if op == "ge":
        return rhi > phi or eq
    if op == "le":
        return rlo < plo or eq
    if op == "sa":
        return rlo > phi
    if op == "eb":
        return rhi < plo
    low = (_parse(plo) - slack).strftime("%Y-%m-%dT%H:%M:%S.%f")
    high = (_parse(phi) + slack).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return rlo <= high and rhi >= low


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


def _date(param: SearchParam, values: list[str]) -> Predicate:
    code = param.code
    lo_key, hi_key = f"{code}{VALUE}<", f"{code}{VALUE}>"
    conditions = []
    ranges: list[KeyRange] | None = []
    for value in values:
        op, text = _split_prefix(value)
        found = date_range(text)
        if found is None:
            raise bad_request(f"{code}={value} is not a valid date search value")
        plo, phi = found
        slack = max(abs(datetime.now(UTC) - _parse(plo)) / 10, timedelta(days=1))
        conditions.append((op, plo, phi, slack))
        if ranges is None or op == "ne":
            ranges = None
            continue
        ranges.append(
            {
                "eq": (lo_key + plo, after(lo_key + phi)),
                "gt": (hi_key + phi + "\x00", after(hi_key)),
                "ge": (hi_key + plo, after(hi_key)),
                "lt": (lo_key, lo_key + plo),
                "le": (lo_key, after(lo_key + phi)),
                "sa": (lo_key + phi + "\x00", after(lo_key)),
                "eb": (hi_key, hi_key + plo),
                "ap": (lo_key, after(lo_key)),
            }[op]
        )

    def test(keys: frozenset[str]) -> bool:
        pairs = _date_pairs(code, keys)
        return any(
            _date_condition(op, plo, phi, rlo, rhi, slack)
            for op, plo, phi, slack in conditions
            for rlo, rhi in pairs
        )

    return Predicate(code, ranges, test, RANK_RANGE, kind="date")


def _number_test(op: str, number: Decimal, low: Decimal, high: Decimal, x: Decimal) -> bool:
    """FHIR number/quantity prefixes; [low, high) is the value's implicit precision range."""
    return {
        "eq": low <= x < high,
        "ap": low <= x < high,
        "ne": not (low <= x < high),
        "gt": x > number,
        "sa": x > number,
        "ge": x >= number,
        "lt": x < number,
        "eb": x < number,
        "le": x <= number,
    }[op]


def _quantity(param: SearchParam, values: list[str]) -> Predicate:
    code = param.code
    ranges: list[KeyRange] | None = []
    conditions: list[tuple[str, str, Decimal, Decimal, Decimal]] = []
    for value in values:
        op, text = _split_prefix(value)
        number_text, _, unit = text.partition("|")
        try:
            number = Decimal(number_text)
        except InvalidOperation:
            raise bad_request(f"{code}={value}: {number_text!r} is not a number") from None
        if not number.is_finite():
            raise bad_request(f"{code}={value}: {number_text!r} is not a number")
        prefix = f"{code}{VALUE}"
        if unit:
            system, _, unit_code = unit.partition("|")
            prefix += f"#{system}|{unit_code}{PART}"
        exponent = number.as_tuple().exponent
        assert isinstance(exponent, int)
        half = Decimal(5).scaleb(exponent - 1)  # "100" means [99.5, 100.5)
        if op == "ap":
            half = max(abs(number) / 10, half)
        low, high = number - half, number + half
        conditions.append((op, prefix, number, low, high))
        if ranges is None or op == "ne":
            ranges = None
            continue
        enc = encode_number
        ranges.append(
            {
                "eq": (prefix + enc(low), after(prefix + enc(high))),
                "ap": (prefix + enc(low), after(prefix + enc(high))),
                "gt": (prefix + enc(number), after(prefix)),
                "sa": (prefix + enc(number), after(prefix)),
                "ge": (prefix + enc(number), after(prefix)),
                "lt": (prefix, after(prefix + enc(number))),
                "eb": (prefix, after(prefix + enc(number))),
                "le": (prefix, after(prefix + enc(number))),
            }[op]
        )

    def test(keys: frozenset[str]) -> bool:
        for op, prefix, number, low, high in conditions:
            for k in keys:
                if not k.startswith(prefix):
                    continue
                rest = k[len(prefix) :]
                if rest.startswith("#"):
                    continue  # a unit-qualified key; plain searches use the plain keys
                if _number_test(op, number, low, high, decode_number(rest)):
                    return True
        return False

    return Predicate(code, ranges, test, RANK_RANGE)


def _uri(param: SearchParam, modifier: str, values: list[str]) -> Predicate:
    code = param.code
    if modifier == "below":
        ranges = [prefix_range(f"{code}{VALUE}{v}") for v in values]
        return Predicate(code, ranges, _keys_test(ranges), RANK_RANGE)
    ranges = [(f"{code}{VALUE}{v}", None) for v in values]
    return Predicate(code, ranges, _keys_test(ranges), RANK_EXACT)


def predicate(param: SearchParam, modifier: str, raw: str, base: str) -> Predicate:
    """The predicate for `param[:modifier]=raw`."""
    allowed = MODIFIERS.get(param.type, {""})
    if modifier not in allowed and not (param.type == "reference" and modifier in param.targets):
        raise bad_request(f"Modifier :{modifier} is not supported on {param.code}", "not-supported")
    if modifier == "missing":
        return _missing(param, raw)
    values = split_values(raw)
    if param.type == "token":
        return _token(param, modifier, values)
    if param.type == "reference":
        return _reference(param, modifier, values, base)
    if param.type == "string":
        return _string(param, modifier, values)
    if param.type == "date":
        return _date(param, values)
    if param.type in {"number", "quantity"}:
        return _quantity(param, values)
    return _uri(param, modifier, values)


def id_predicate(raw: str) -> Predicate:
    ids = [v for v in split_values(raw) if v]
    wanted = frozenset(ids)
    return Predicate("_id", None, lambda keys: True, 4, ids=sorted(wanted))


def params_by_code(resource_type: str) -> dict[str, SearchParam]:
    return {p.code: p for p in indexed_params(resource_type)}


def unknown(name: str, strict: bool, ignored: list[Issue], why: str) -> None:
    if strict:
        raise FhirError(f"{why}: {name}", 400, "not-supported")
    ignored.append(Issue("not-supported", f"{why}; ignored: {name}", severity="warning"))


__all__ = ["KeyRange", "ParsedSearch", "Predicate", "id_predicate", "predicate", "unknown"]
