"""Write-time extraction: every supported search parameter's values as keys in one indexed array.

See `values.py` for the key shapes. `k` holds the keys (global, plus patient-prefixed copies for
resources in a patient's compartment); `o` holds one sort key per parameter for `_sort`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

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


def index_fields(
    resource_type: str, resource: dict[str, Any], patients: list[str], base: str
) -> dict[str, Any]:
    """The `k` and `o` fields stored with a resource."""
    keys: list[str] = []
    order: dict[str, Any] = {}
    memo: dict[Any, Found] = {}
    present = resource.keys()
    for param, first_keys in _with_first_keys(resource_type):
        if first_keys is not None and first_keys.isdisjoint(present):
            continue  # none of the elements it reads is there: no value, nothing to evaluate
        found, sort = param_keys(param, resource, base, memo)
        keys += found
        if sort is not None:
            order[param.code] = sort
    unique = list(dict.fromkeys(keys))
    prefixed = [f"{p}{PATIENT}{k}" for p in patients for k in unique]
    return {"k": unique + prefixed, "o": order}
