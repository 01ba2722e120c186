"""Write-time extraction: every supported search parameter's values as keys in one indexed array.

See `values.py` for the key shapes. Searches test *logical* keys (`index_fields`: every
parameter's); the database stores fewer (`stored_fields`), because each stored key is an index
entry and index entries are most of what a write costs the database. What is left out, and how
it comes back, is in docs/storage.md ("Stored search keys"):

- `logical_keys` turns a stored `k` (and `lu`) back into the logical keys;
- `stored_ranges` turns a logical key range into the stored ranges holding every match (a
  superset: candidates are then tested), `last_updated_range` into a range of `lu`;
- `confined_ranges` turns it into the ranges of one patient's copies of the keys;
- `sort_value` computes a `_sort` value from the logical keys.

Databases written in an earlier layout are re-indexed at start-up (`Repository.upgrade_layout`,
`KEY_INDEX`), so only this layout is ever read.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any, NamedTuple

from fhir_server.search.definitions import SearchParam, search_params
from fhir_server.search.values import (
    PART,
    PATIENT,
    VALUE,
    date_keys,
    quantity_keys,
    reference_keys,
    string_keys,
    token_keys,
)

# Stored keys are subdocuments, `k: [{v: key}, ...]`, indexed as `k.v`: SecantusDB gives an array
# of strings an index entry for the whole array besides one per key (and encodes every key twice
# more for it), where a path through subdocuments gets only the per-key entries: ~8% of its CPU
# per written resource (docs/storage.md, "Stored search keys").
KEY_FIELD = "k.v"
# The index on KEY_FIELD is named after the layout of the keys, so that a database written in an
# earlier layout is found and re-indexed at start-up (`Repository.upgrade_layout`).
KEY_INDEX = "search_keys_2"


def stored_document(keys: Iterable[str]) -> list[dict[str, str]]:
    """The `k` field holding `keys`."""
    return [{"v": key} for key in keys]


def document_keys(doc: dict[str, Any]) -> list[str]:
    """The keys of a stored document's `k` field."""
    return [entry["v"] for entry in doc.get("k", ())]


SUPPORTED_TYPES = frozenset({"string", "token", "reference", "date", "number", "quantity", "uri"})
# Served from the document itself rather than from keys. Parameters defined on extensions
# (genomics, the `*-extensions-*` definitions) are not indexed.
DOCUMENT_PARAMS = frozenset({"_id"})


@cache
def indexed_params(resource_type: str) -> tuple[SearchParam, ...]:
    """The parameters this server indexes (and so supports) for a resource type."""
    return tuple(
        p
        for code, p in sorted(search_params(resource_type).items())
        if p.type in SUPPORTED_TYPES
        and code not in DOCUMENT_PARAMS
        and not any("extension(" in part.expression for part in p.parts)
    )


# Value keys of one expression branch, without the parameter code: (suffix, key) pairs where the
# suffix ("", ":text", ":identifier") goes after the code, plus sort candidates.
Found = tuple[list[tuple[str, str]], list[Any]]


def _value_keys(kind: str, values: list[Any], base: str) -> Found:
    keys: list[tuple[str, str]] = []
    sort: list[Any] = []
    for value in values:
        if kind == "string":
            found = string_keys(value)
            keys += [("", s) for s in found]
            sort += found
        elif kind == "token":
            tokens, texts = token_keys(value)
            keys += [("", t) for t in tokens] + [(":text", t) for t in texts]
            sort += tokens
        elif kind == "reference":
            refs, identifiers = reference_keys(value, base)
            keys += [("", r) for r in refs] + [(":identifier", i) for i in identifiers]
            sort += refs
        elif kind == "date":
            for low, high in date_keys(value):
                keys += [("", f"<{low}{PART}{high}"), ("", f">{high}")]
                sort.append(low)
        elif kind in {"number", "quantity"}:
            found = quantity_keys(value)
            keys += [("", q) for q in found]
            sort += [q for q in found if not q.startswith("#")]
        elif kind == "uri" and isinstance(value, str):
            keys.append(("", value))
            sort.append(value)
    return keys, sort


@cache
def _with_first_keys(resource_type: str) -> tuple[tuple[SearchParam, frozenset[str] | None], ...]:
    """Each indexed parameter with the top-level elements its expression can start from (None
    when some branch is evaluated by the general FHIRPath engine and may yield values anyway)."""
    out = []
    for param in indexed_params(resource_type):
        union: frozenset[str] | None = frozenset()
        for part in param.parts:
            union = None if union is None or part.first_keys is None else union | part.first_keys
        out.append((param, union))
    return tuple(out)


def param_keys(
    param: SearchParam, resource: dict[str, Any], base: str, memo: dict[Any, Found] | None = None
) -> tuple[list[str], Any]:
    """(keys without patient prefix, sort key or None) for one parameter. `memo` shares the work
    of branches several parameters have in common (`code` and `combo-code`, `subject` and
    `patient`) within one resource."""
    keys: list[str] = []
    sort: list[Any] = []
    for part in param.parts:
        memo_key = (param.type, part.expression, part.target_type)
        found = memo.get(memo_key) if memo is not None else None
        if found is None:
            found = _value_keys(param.type, part.values(resource), base)
            if memo is not None:
                memo[memo_key] = found
        keys += [f"{param.code}{suffix}{VALUE}{key}" for suffix, key in found[0]]
        sort += found[1]
    return keys, (min(sort) if sort else None)


def _logical(
    resource_type: str, resource: dict[str, Any], base: str, stored_only: bool = False
) -> tuple[list[tuple[SearchParam, list[str]]], dict[str, Any]]:
    """Every indexed parameter's keys (without patient prefix, in parameter order) and sort keys;
    `stored_only`: only the parameters `stored_fields` keeps keys of."""
    found_keys: list[tuple[SearchParam, list[str]]] = []
    order: dict[str, Any] = {}
    memo: dict[Any, Found] = {}
    present = resource.keys()
    params = _stored_params(resource_type) if stored_only else _with_first_keys(resource_type)
    for param, first_keys in params:
        if first_keys is not None and first_keys.isdisjoint(present):
            continue  # none of the elements it reads is there: no value, nothing to evaluate
        found, sort = param_keys(param, resource, base, memo)
        if found:
            found_keys.append((param, found))
        if sort is not None:
            order[param.code] = sort
    return found_keys, order


def index_fields(
    resource_type: str, resource: dict[str, Any], patients: list[str], base: str
) -> dict[str, Any]:
    """Every logical key (`k`, with patient-prefixed copies) and sort key (`o`) of a resource:
    what a search predicate tests. The database stores `stored_fields`."""
    found_keys, order = _logical(resource_type, resource, base)
    unique = list(dict.fromkeys(k for _, keys in found_keys for k in keys))
    prefixed = [f"{p}{PATIENT}{k}" for p in patients for k in unique]
    return {"k": unique + prefixed, "o": order}


def stored_fields(
    resource_type: str, resource: dict[str, Any], patients: list[str], base: str
) -> dict[str, Any]:
    """The `k` field stored with a resource: its keys that cannot be derived from others, with
    patient-prefixed copies of the `patient_prefixed` ones for each patient in `patients`."""
    found_keys, _ = _logical(resource_type, resource, base, stored_only=True)
    keys: list[str] = []
    prefixable: list[str] = []
    infixed: list[str] = []
    filtered = filtered_params(resource_type)
    for param, found in found_keys:
        plain = _plain(param.code)
        if param.type in _QUANTITIES:
            found = _merged_quantities(found)
        elif param.type == "date":
            found = _without_narrow_ends(param.code, found)
        elif param.code in filtered:
            target = filtered[param.code][1]
            found = [k for k in found if not (k.startswith(plain) and _refers_to(k, target))]
        if not _prefixable(param):
            keys += found
        elif patients and param.code in _patient_tokens(resource_type):
            infixed += [k for k in found if k.startswith(plain)]
            keys += [k for k in found if not k.startswith(plain)]
        else:
            keys += found
            prefixable += [k for k in found if k.startswith(plain)]
    unique = list(dict.fromkeys(keys))
    if patients:
        prefixable = list(dict.fromkeys(prefixable))
        unique += [f"{p}{PATIENT}{k}" for p in patients for k in prefixable]
        unique += [_with_patient(k, p) for p in patients for k in dict.fromkeys(infixed)]
    return {"k": unique}


# -- patient copies ---------------------------------------------------------------------------
# A key of a resource in a patient's compartment has a copy for each of its patients, so that a
# search confined to one patient reads one index range (`confined_ranges`): `<patient>␝<key>`
# beside the key itself, or for a token (whose searches are exact or a prefix up to the system),
# the key alone as `code␞<code>␝<patient>␟<system>`. That one key also serves the searches of
# every patient (`stored_ranges` reads all of a code's keys, any patient and system), one index
# entry less per token than a copy beside it.


def _with_patient(key: str, patient: str) -> str:
    """`code␞<code>␟<system>` as `code␞<code>␝<patient>␟<system>`."""
    before, _, system = key.partition(PART)
    return f"{before}{PATIENT}{patient}{PART}{system}"


def _without_patient(key: str) -> str:
    """The logical key of a stored key holding a patient after its value's first part."""
    before, _, rest = key.partition(PATIENT)
    return before + PART + rest.partition(PART)[2]


@cache
def _patient_tokens(resource_type: str) -> frozenset[str]:
    """Codes of the stored token parameters whose keys hold their patients (`_with_patient`)."""
    derived = derived_params(resource_type)
    return frozenset(
        p.code
        for p in indexed_params(resource_type)
        if p.type == "token" and _prefixable(p) and p.code not in derived
    )


def _any_patient(resource_type: str, low: str, high: str | None) -> tuple[str, str | None]:
    """A stored range as the range that also holds the keys with patients of the same values:
    for a token's range from `code␞<code>␟...`, every key of that code from `code␞<code>␝`."""
    head, _, value = low.partition(VALUE)
    token, separator, _ = value.partition(PART)
    if not separator or head not in _patient_tokens(resource_type):
        return low, high  # a range over whole values holds those keys too
    start = f"{head}{VALUE}{token}"
    end = start + _AFTER_PART
    return start + PATIENT, end if high is None or high < end else high


def confined_ranges(
    resource_type: str, low: str, high: str | None, patient: str
) -> list[tuple[str, str | None]] | None:
    """The stored ranges holding a logical key range's matches among the resources in
    `patient`'s compartment: their patient copies (None when the keys have none)."""
    out: list[tuple[str, str | None]] = []
    for lo, hi in _stored_ranges(resource_type, low, high):
        head, _, value = lo.partition(VALUE)
        if head in _patient_tokens(resource_type):
            token, separator, rest = value.partition(PART)
            plain = f"{head}{VALUE}{token}{PART}"
            start = f"{head}{VALUE}{token}{PATIENT}{patient}{PART}"
            if not separator:
                return None  # a range over whole values: every patient's keys
            if hi is None:
                out.append((start + rest, None))
            elif hi == _after(lo):
                out.append((start + rest, _after(start + rest)))
            elif hi.startswith(plain):
                out.append((start + rest, start + hi[len(plain) :]))
            else:
                return None
        elif _patient_prefixed(resource_type, lo):
            prefix = f"{patient}{PATIENT}"
            out.append((prefix + lo, None if hi is None else prefix + hi))
        else:
            return None
    return out


@cache
def _stored_params(resource_type: str) -> tuple[tuple[SearchParam, frozenset[str] | None], ...]:
    derived = derived_params(resource_type)
    return tuple(
        (param, first_keys)
        for param, first_keys in _with_first_keys(resource_type)
        if param.code not in derived and param.code != LAST_UPDATED
    )


# -- derived parameters ---------------------------------------------------------------------


def _parts(param: SearchParam) -> frozenset[tuple[str, str | None]]:
    return frozenset((part.expression, part.target_type) for part in param.parts)


@cache
def derived_params(resource_type: str) -> dict[str, tuple[str, ...]]:
    """Parameters not stored, by code -> the stored parameters whose keys together are exactly
    theirs (same type, and every branch of its expression is a branch of one of them)."""
    params = indexed_params(resource_type)
    out: dict[str, tuple[str, ...]] = {}
    first_with: dict[tuple[str, frozenset[tuple[str, str | None]]], str] = {}
    for param in params:  # identical duplicates: the first code (in code order) is stored
        key = (param.type, _parts(param))
        if key in first_with:
            out[param.code] = (first_with[key],)
        else:
            first_with[key] = param.code
    kept_for_duplicates = {source for (source,) in out.values()}
    for param in params:  # unions (`combo-code` = `code` | `component-code`)
        parts = _parts(param)
        if param.code in out or param.code in kept_for_duplicates or len(parts) < 2:
            continue
        sources = [
            q
            for q in params
            if q is not param and q.code not in out and q.type == param.type and _parts(q) < parts
        ]
        if sources and frozenset().union(*(_parts(q) for q in sources)) == parts:
            out[param.code] = tuple(q.code for q in sources)
    return out


@cache
def _derived_from(resource_type: str) -> dict[str, tuple[str, ...]]:
    """Stored parameter code -> the derived parameters it contributes keys to."""
    out: dict[str, list[str]] = {}
    for code, sources in derived_params(resource_type).items():
        for source in sources:
            out.setdefault(source, []).append(code)
    return {source: tuple(codes) for source, codes in out.items()}


@cache
def filtered_params(resource_type: str) -> dict[str, tuple[str, str]]:
    """Reference parameters whose expression is another's restricted to one target type, by
    code -> (that other parameter, the type): Observation `patient` is `subject.where(resolve()
    is Patient)`. Their literal reference keys to that type are not stored, the other
    parameter's keys hold them; their other keys (to other types, `:identifier`) are."""
    derived = derived_params(resource_type)
    sources = _derived_from(resource_type)
    params = [
        p for p in indexed_params(resource_type) if p.type == "reference" and p.code not in derived
    ]
    out: dict[str, tuple[str, str]] = {}
    for param in params:
        (target, *more) = {part.target_type for part in param.parts}
        if param.code in sources or more or target is None:
            continue
        unfiltered = frozenset((expression, None) for expression, _ in _parts(param))
        for other in params:
            if other is not param and _parts(other) == unfiltered:
                out[param.code] = (other.code, target)
                break
    return out


def _refers_to(key: str, target: str) -> bool:
    """True when a reference key's value passes `where(resolve() is <target>)`: the value is
    the reference less this server's base and any `/_history/` (`values.reference_keys`), so
    it passes exactly when the reference did (`PathPart.values`), but for a reference that
    only its `type` element says is to `target`."""
    value = key.partition(VALUE)[2]
    return value.startswith(f"{target}/") or f"/{target}/" in value


def logical_keys(
    resource_type: str,
    stored: Iterable[str],
    last_updated: datetime | None = None,
    codes: frozenset[str] | None = None,
) -> frozenset[str]:
    """A stored `k` array (and, when a predicate needs `_lastUpdated`, the stored `lu`) as the
    keys predicates test: no patient-prefixed copies, and the keys `stored_fields` leaves out
    added back - except the `>high` keys of narrow dates, which no predicate tests (a date
    predicate tests `<low␟high`). `codes`: only the keys of these parameters need to be whole
    (None: every parameter's)."""
    plan = _expansions(resource_type) if codes is None else _expansions_for(resource_type, codes)
    if not plan:
        keys = frozenset(_logical_key(k) for k in stored if not _patient_copy(k))
    else:
        out: set[str] = set()
        for key in stored:
            if _patient_copy(key):
                continue
            key = _logical_key(key)
            head, _, value = key.partition(VALUE)
            expansion = plan.get(head)
            if expansion is None:
                out.add(key)
                continue
            targets, quantity, filtered = expansion
            values = _quantity_values(value) if quantity else [value]
            out.update(f"{code}{VALUE}{v}" for code in (head, *targets) for v in values)
            out.update(f"{code}{VALUE}{value}" for code, to in filtered if _refers_to(key, to))
        keys = frozenset(out)
    if last_updated is not None and LAST_UPDATED in _date_codes(resource_type):
        keys = keys | {_last_updated_key(last_updated)}
    return keys


class _Expansion(NamedTuple):
    targets: tuple[str, ...]  # the heads of the derived parameters its keys also are
    quantity: bool  # its keys are stored quantity keys (`_merged_quantities`)
    filtered: tuple[tuple[str, str], ...]  # (code, type) of its `filtered_params`


def _patient_copy(key: str) -> bool:
    """True for `<patient>␝<key>`, whose key is stored as well."""
    position = key.find(PATIENT)
    return position != -1 and position < key.find(VALUE)


def _logical_key(key: str) -> str:
    return _without_patient(key) if PATIENT in key else key


@lru_cache(maxsize=4096)
def _expansions_for(resource_type: str, codes: frozenset[str]) -> dict[str, _Expansion]:
    """`_expansions` limited to what the keys of `codes` need."""
    out: dict[str, _Expansion] = {}
    for head, (targets, quantity, filtered) in _expansions(resource_type).items():
        wanted = tuple(t for t in targets if t.partition(":")[0] in codes)
        quantity = quantity and (head in codes or bool(wanted))
        narrowed = tuple(f for f in filtered if f[0] in codes)
        if wanted or quantity or narrowed:
            out[head] = _Expansion(wanted, quantity, narrowed)
    return out


@cache
def _expansions(resource_type: str) -> dict[str, _Expansion]:
    """Key head (`code` or `code:modifier`) -> how its stored keys expand into logical ones."""
    quantities = _quantity_codes(resource_type)
    derived_from = _derived_from(resource_type)
    filtered: dict[str, list[tuple[str, str]]] = {}
    for code, (source, target) in filtered_params(resource_type).items():
        filtered.setdefault(source, []).append((code, target))
    out: dict[str, _Expansion] = {}
    for code in quantities | set(derived_from) | set(filtered):
        for modifier in ("", ":text", ":identifier"):
            out[code + modifier] = _Expansion(
                tuple(t + modifier for t in derived_from.get(code, ())),
                code in quantities and not modifier,
                () if modifier else tuple(filtered.get(code, ())),
            )
    return out


def sort_value(resource_type: str, keys: frozenset[str], code: str) -> Any:
    """A parameter's `_sort` value (the least of its values) from a resource's logical keys:
    what `index_fields` puts in `o`, so it need not be stored."""
    plain = f"{code}{VALUE}"
    values = [k[len(plain) :] for k in keys if k.startswith(plain)]
    if code in _date_codes(resource_type):
        values = [v[1:].partition(PART)[0] for v in values if v[:1] == "<"]
    elif code in _quantity_codes(resource_type):
        values = [v for v in values if v[:1] != "#"]
    return min(values) if values else None


class SortValues:
    """A candidate's sort values by parameter code, computed when a `_sort` asks for them."""

    def __init__(self, resource_type: str, keys: frozenset[str]) -> None:
        self.resource_type = resource_type
        self.keys = keys
        self.values: dict[str, Any] = {}

    def get(self, code: str) -> Any:
        if code not in self.values:
            self.values[code] = sort_value(self.resource_type, self.keys, code)
        return self.values[code]


def stored_ranges(resource_type: str, low: str, high: str | None) -> list[tuple[str, str | None]]:
    """A logical key range `[low, high)` (`high` None: the key `low`) as ranges of stored keys
    whose documents include every match (the candidates' logical keys are then tested).
    Not for `_lastUpdated`, which is not stored as keys (`last_updated_range`)."""
    return [
        _any_patient(resource_type, lo, hi) for lo, hi in _stored_ranges(resource_type, low, high)
    ]


def _stored_ranges(resource_type: str, low: str, high: str | None) -> list[tuple[str, str | None]]:
    """`stored_ranges` for the keys without patients."""
    head = low.partition(VALUE)[0]
    code = head.partition(":")[0]
    sources = derived_params(resource_type).get(code)
    if sources is None:
        ranges = [(low, high)]
        if head in (filtered := filtered_params(resource_type)):
            ranges.append(_renamed(low, high, code, filtered[head][0]))
    else:
        ranges = [_renamed(low, high, code, source) for source in sources]
    if code in _quantity_codes(resource_type):
        ranges = [_plain_quantity_range(lo, hi) for lo, hi in ranges]
    elif code in _date_codes(resource_type):
        ranges += [r for lo, hi in ranges if (r := _narrow_range(lo, hi)) is not None]
    return ranges


def _renamed(low: str, high: str | None, code: str, source: str) -> tuple[str, str | None]:
    """A key range of `code` as the same range of `source`'s keys."""
    assert high is None or high.startswith(code), (low, high)
    return source + low[len(code) :], None if high is None else source + high[len(code) :]


def _plain_quantity_range(low: str, high: str | None) -> tuple[str, str | None]:
    """A range of quantity keys as the range of stored keys holding the same numbers: stored
    keys start with the number (`_merged_quantities`), so a unit-qualified range reads every
    unit's (the candidates are then tested), and a single number reads it with any units."""
    head, _, value = low.partition(VALUE)
    plain = f"{head}{VALUE}"
    if not value.startswith("#"):
        return (low, low + _AFTER_PART) if high is None else (low, high)
    unit, separator, number = value.partition(PART)
    if not separator:
        return plain, _after(plain)
    if high is None:
        return plain + number, plain + number + _AFTER_PART
    prefix = f"{plain}{unit}{PART}"
    if high.startswith(prefix) and len(high) > len(prefix):
        return plain + number, plain + high[len(prefix) :]
    return plain + number, _after(plain)


# A stored quantity key is `<number>` or `<number>␟#<system>|<unit>`, and numbers are digits and
# `~`: every key of one number sorts in [number, number + _AFTER_PART).
_AFTER_PART = chr(ord(PART) + 1)


def _merged_quantities(found: list[str]) -> list[str]:
    """A quantity parameter's stored keys: one per unit key `code␞#<system>|<unit>␟<number>`
    (not the `#|<unit>` twins of `_any_system_twin`), as `code␞<number>␟#<system>|<unit>`, and
    the plain `code␞<number>` only for a number without units. A number range then reads every
    unit's keys of those numbers, and the logical keys all come back (`_quantity_values`)."""
    twins = {t for k in found if (t := _any_system_twin(k)) is not None}
    merged: list[str] = []
    with_units: set[str] = set()
    for key in found:
        head, _, value = key.partition(VALUE)
        if value.startswith("#") and key not in twins:
            unit, _, number = value.partition(PART)
            merged.append(f"{head}{VALUE}{number}{PART}{unit}")
            with_units.add(f"{head}{VALUE}{number}")
    plain = [k for k in found if k.partition(VALUE)[2][:1] != "#" and k not in with_units]
    return plain + merged


def _quantity_values(value: str) -> list[str]:
    """The logical key values of one stored quantity key's value (`_merged_quantities`)."""
    number, separator, unit = value.partition(PART)
    if not separator:
        return [value]
    unit_key = f"{unit}{PART}{number}"
    twin = _any_system_value(unit_key)
    return [number, unit_key] if twin is None else [number, unit_key, twin]


_QUANTITIES = frozenset({"quantity", "number"})
_ANY_SYSTEM = "#|"


def _any_system_twin(key: str) -> str | None:
    """For a unit key `code␞#<system>|<unit>␟<number>` (a system, no other `|`), the key
    `code␞#|<unit>␟<number>` that the same value also has (`values.quantity_keys`)."""
    head, _, value = key.partition(VALUE)
    twin = _any_system_value(value)
    return None if twin is None else f"{head}{VALUE}{twin}"


def _any_system_value(value: str) -> str | None:
    if not value.startswith("#") or value.startswith(_ANY_SYSTEM):
        return None
    if value.partition(PART)[0].count("|") != 1:
        return None
    return "#|" + value.split("|", 1)[1]


@cache
def _quantity_codes(resource_type: str) -> frozenset[str]:
    return frozenset(p.code for p in indexed_params(resource_type) if p.type in _QUANTITIES)


# -- dates ------------------------------------------------------------------------------------
# A date value is a range [low, high], stored as `<low␟high` (ranges over low) and `>high`
# (ranges over high, for `gt`/`ge`/`eb`). Most values are narrow (a dateTime, a day), and for
# those the `>high` key is left out: a range over high is also read as the range over low that
# holds every narrow value ending in it (low > high - 1 day), and candidates are then tested on
# their logical keys, which have `>high` again.

LAST_UPDATED = "_lastUpdated"
_NARROW = timedelta(days=1)
_INSTANT = "%Y-%m-%dT%H:%M:%S.%f"


@cache
def _date_codes(resource_type: str) -> frozenset[str]:
    return frozenset(p.code for p in indexed_params(resource_type) if p.type == "date")


def _instant(text: str) -> datetime | None:
    """The instant a key's 26-character ISO UTC time stands for (None: not such a time)."""
    if len(text) < 26:
        return None
    try:
        return datetime.strptime(text[:26], _INSTANT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _iso_utc(t: datetime) -> str:
    return t.strftime(_INSTANT)


@lru_cache(maxsize=16384)
def _narrow(low: str, high: str) -> bool:
    start = _instant(low)
    return start is not None and start.year < 9999 and high < _iso_utc(start + _NARROW)


def _without_narrow_ends(code: str, found: list[str]) -> list[str]:
    lows = f"{code}{VALUE}<"
    wide_ends = set()
    for key in found:
        if key.startswith(lows):
            low, _, high = key[len(lows) :].partition(PART)
            if not _narrow(low, high):
                wide_ends.add(high)
    ends = f"{code}{VALUE}>"
    return [k for k in found if not k.startswith(ends) or k[len(ends) :] in wide_ends]


def _narrow_range(low: str, high: str | None) -> tuple[str, str | None] | None:
    """For a range over `>high` keys, the range over `<low` keys holding the narrow values
    (whose `>high` key is not stored) that end in it; None for other ranges."""
    head, _, value = low.partition(VALUE)
    if not value.startswith(">"):
        return None
    ends, starts = f"{head}{VALUE}>", f"{head}{VALUE}<"
    earliest = _instant(low[len(ends) :])
    start = starts if earliest is None else starts + _iso_utc(earliest - _NARROW)
    if high is None:
        return start, starts + low[len(ends) :] + "\x00"
    if high.startswith(ends) and len(high) > len(ends):
        return start, starts + high[len(ends) :]
    return start, _after(starts)


def _last_updated_key(last_updated: datetime) -> str:
    """The logical `_lastUpdated` key (`<low␟high`) of a version stored at `last_updated`: an
    instant at millisecond precision, so low = high (`values.date_range`)."""
    t = last_updated.astimezone(UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}000"
    return f"{LAST_UPDATED}{VALUE}<{text}{PART}{text}"


def last_updated_range(low: str, high: str | None) -> dict[str, datetime]:
    """A logical `_lastUpdated` key range as a condition on the stored `lu` (a superset: the
    candidates' logical keys are then tested). A version stored at t (millisecond precision)
    has the keys `<t␟t` and `>t`."""
    head, _, value = low.partition(VALUE)
    family = value[:1]
    if family not in {"<", ">"}:
        return {}  # every key of the parameter
    prefix = f"{head}{VALUE}{family}"
    condition: dict[str, datetime] = {}
    earliest = _instant(low[len(prefix) :])
    if earliest is not None:
        condition["$gte"] = earliest
    if high is None:
        latest = earliest
    elif high.startswith(prefix):
        rest = high[len(prefix) :]
        latest = _instant(rest)
        if latest is None and rest:
            latest = _instant(rest[:-1] + chr(ord(rest[-1]) - 1))  # `after(...)`: one char up
    else:
        latest = None
    if latest is not None:
        condition["$lte"] = latest
    return condition


def _after(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _plain(code: str) -> str:
    return f"{code}{VALUE}"


# Parameters whose values most of a patient's resources of a type share (a status from a small
# required value set; meta tags, profiles and labels applied wholesale): confined to one patient
# they select about what the compartment itself holds, so they get no patient-prefixed copies.
_UNSELECTIVE = frozenset({"status", "_tag", "_profile", "_security", "_source"})


def _prefixable(param: SearchParam) -> bool:
    return param.type != "reference" and param.code not in _UNSELECTIVE | {LAST_UPDATED}


def _patient_prefixed(resource_type: str, key: str) -> bool:
    """True when a logical key (or range bound) has `<patient>␝<key>` copies (`stored_fields`;
    the tokens of `_patient_tokens` hold their patient instead)."""
    head = key.partition(VALUE)[0]
    if ":" in head:
        return False  # `:text` keys
    param = _by_code(resource_type).get(head)
    return param is not None and _prefixable(param)


def is_reference(resource_type: str, code: str) -> bool:
    param = _by_code(resource_type).get(code)
    return param is not None and param.type == "reference"


@cache
def _by_code(resource_type: str) -> dict[str, SearchParam]:
    return {p.code: p for p in indexed_params(resource_type)}
