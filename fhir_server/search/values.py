"""Search values normalised into index keys, one function per SearchParameter type.

https://hl7.org/fhir/R4/search.html#ptypes. Every value of a parameter becomes a string key
`<code>\x1e<value>` in the resource's `k` array (one multikey index serves every parameter):

- string: `name\x1e<casefolded, accent-free text>` (prefix search is a key range)
- token: `code\x1e<code>\x1f<system>`; display texts as `code:text\x1e<text>`
- reference: `subject\x1e<Type/id or absolute URL>`; identifiers as `subject:identifier\x1e...`
- date: `date\x1e<<low>` and `date\x1e><high>` (ISO UTC instants; a value is a range)
- number/quantity: `\x1e` + an order-preserving encoding of the decimal (unit-qualified variants
  carry `#<system>|<code>\x1f` before it)
- uri: `url\x1e<uri>`

Keys of resources in a patient's compartment are stored twice: as above and prefixed with
`<patient id>\x1d`, so a patient-scoped search is one index range.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

VALUE = "\x1e"
PART = "\x1f"
PATIENT = "\x1d"
MAX_STRING = 120

_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
LOWEST = "0000-01-01T00:00:00.000000"
HIGHEST = "9999-12-31T23:59:59.999999"


@lru_cache(maxsize=16384)
def normalise_string(value: str) -> str:
    """Case- and accent-insensitive form used for string search."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())[:MAX_STRING]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


@lru_cache(maxsize=16384)
def date_range(value: str) -> tuple[str, str] | None:
    """The [low, high] instants (ISO UTC, microseconds) a date/dateTime/instant covers."""
    m = _DATE.match(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    tz = UTC
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = UTC if zone in {"+00:00", "-00:00"} else _offset(sign, zone[1:])
    try:
        if month is None:
            low = datetime(int(year), 1, 1, tzinfo=tz)
            high = datetime(int(year) + 1, 1, 1, tzinfo=tz) if int(year) < 9999 else None
        elif day is None:
            low = datetime(int(year), int(month), 1, tzinfo=tz)
            nxt = (int(year) + (int(month) == 12), int(month) % 12 + 1)
            high = datetime(nxt[0], nxt[1], 1, tzinfo=tz) if nxt[0] <= 9999 else None
        elif hour is None:
            low = datetime(int(year), int(month), int(day), tzinfo=tz)
            high = low + timedelta(days=1)
        else:
            low = datetime(
                int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=tz
            )
            if fraction:
                micro = int((fraction[1:] + "000000")[:6])
                low = low.replace(microsecond=micro)
                high = low + timedelta(microseconds=1)
            else:
                high = low + timedelta(seconds=1 if second is not None else 60)
    except (ValueError, OverflowError):
        return None
    high_text = HIGHEST if high is None else _iso(high - timedelta(microseconds=1))
    return _iso(low), high_text


def _offset(sign: int, hhmm: str) -> Any:
    from datetime import timezone

    hours, minutes = hhmm.split(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))


def encode_number(value: Decimal) -> str:
    """An encoding whose string order is numeric order (for index ranges)."""
    if value.is_zero():
        return "5"
    sign, digits, exponent = value.normalize().as_tuple()
    assert isinstance(exponent, int)
    adjusted = max(-499, min(499, len(digits) + exponent)) + 500
    mantissa = "".join(map(str, digits))
    if sign == 0:
        return f"6{adjusted:03d}{mantissa}"
    inverted = "".join(str(9 - int(c)) for c in mantissa)
    return f"4{999 - adjusted:03d}{inverted}~"


def decode_number(encoded: str) -> Decimal:
    """The inverse of `encode_number`."""
    if encoded == "5":
        return Decimal(0)
    adjusted = int(encoded[1:4])
    if encoded[0] == "6":
        return Decimal("0." + encoded[4:]).scaleb(adjusted - 500)
    digits = "".join(str(9 - int(c)) for c in encoded[4:].rstrip("~"))
    return -Decimal("0." + digits).scaleb(999 - adjusted - 500)


def to_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, (float, str)):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    out: list[str] = []
    for key in ("text", "family", "city", "district", "state", "postalCode", "country"):
        if isinstance(value.get(key), str):
            out.append(value[key])
    for key in ("given", "prefix", "suffix", "line"):
        items = value.get(key)
        if isinstance(items, list):
            out.extend(i for i in items if isinstance(i, str))
    return out


def string_keys(value: Any) -> list[str]:
    return [normalise_string(s) for s in strings(value) if s.strip()]


def _coding_keys(coding: dict[str, Any]) -> list[str]:
    code = coding.get("code")
    if not isinstance(code, str):
        return []
    system = coding.get("system")
    return [f"{code}{PART}{system if isinstance(system, str) else ''}"]


def token_keys(value: Any) -> tuple[list[str], list[str]]:
    """(token keys, :text keys) of a code, Coding, CodeableConcept, Identifier, ContactPoint."""
    if isinstance(value, bool):
        return [f"{'true' if value else 'false'}{PART}"], []
    if isinstance(value, str):
        return [f"{value}{PART}"], []
    if not isinstance(value, dict):
        return [], []
    keys: list[str] = []
    texts: list[str] = []
    if isinstance(value.get("coding"), list) or "text" in value:  # CodeableConcept
        for coding in value.get("coding") or []:
            if isinstance(coding, dict):
                keys += _coding_keys(coding)
                if isinstance(coding.get("display"), str):
                    texts.append(normalise_string(coding["display"]))
        if isinstance(value.get("text"), str):
            texts.append(normalise_string(value["text"]))
        return keys, texts
    if "code" in value:  # Coding
        if isinstance(value.get("display"), str):
            texts.append(normalise_string(value["display"]))
        return _coding_keys(value), texts
    if isinstance(value.get("value"), str):  # Identifier, ContactPoint
        system = value.get("system")
        keys.append(f"{value['value']}{PART}{system if isinstance(system, str) else ''}")
        kind = value.get("type")
        if isinstance(kind, dict) and isinstance(kind.get("text"), str):
            texts.append(normalise_string(kind["text"]))
    return keys, texts


def reference_keys(value: Any, base: str) -> tuple[list[str], list[str]]:
    """(literal reference keys, :identifier keys) of a Reference, canonical or uri."""
    if isinstance(value, str):
        return [value], []
    if not isinstance(value, dict):
        return [], []
    refs: list[str] = []
    identifiers: list[str] = []
    reference = value.get("reference")
    if isinstance(reference, str):
        if reference.startswith(base + "/"):
            reference = reference[len(base) + 1 :]
        refs.append(reference.split("/_history/", 1)[0])
    identifier = value.get("identifier")
    if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
        system = identifier.get("system")
        identifiers.append(
            f"{identifier['value']}{PART}{system if isinstance(system, str) else ''}"
        )
    return refs, identifiers


def date_keys(value: Any) -> list[tuple[str, str]]:
    """[low, high] ranges of a date, dateTime, instant, Period or Timing."""
    if isinstance(value, str):
        found = date_range(value)
        return [found] if found else []
    if not isinstance(value, dict):
        return []
    if "start" in value or "end" in value:  # Period
        start = date_range(value["start"]) if isinstance(value.get("start"), str) else None
        end = date_range(value["end"]) if isinstance(value.get("end"), str) else None
        if start is None and end is None:
            return []
        return [(start[0] if start else LOWEST, end[1] if end else HIGHEST)]
    out: list[tuple[str, str]] = []
    for event in value.get("event") or []:  # Timing
        if isinstance(event, str) and (found := date_range(event)):
            out.append(found)
    bounds = (value.get("repeat") or {}).get("boundsPeriod")
    if isinstance(bounds, dict):
        out += date_keys(bounds)
    return out


def quantity_keys(value: Any) -> list[str]:
    """Plain and unit-qualified number keys of a Quantity (or a bare number)."""
    number = to_decimal(value.get("value")) if isinstance(value, dict) else to_decimal(value)
    if number is None:
        return []
    encoded = encode_number(number)
    keys = [encoded]
    if isinstance(value, dict):
        system = value.get("system") if isinstance(value.get("system"), str) else ""
        for unit in {value.get("code"), value.get("unit")}:
            if isinstance(unit, str):
                keys.append(f"#{system}|{unit}{PART}{encoded}")
                if system:
                    keys.append(f"#|{unit}{PART}{encoded}")
    return keys
