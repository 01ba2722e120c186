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


def param_keys(param: SearchParam, resource: dict[str, Any], base: str) -> tuple[list[str], Any]:
    """(keys without patient prefix, sort key or None) for one parameter."""
    code = param.code
    keys: list[str] = []
    sort: list[Any] = []
    for value in param.values(resource):
        if param.type == "string":
            found = string_keys(value)
            keys += [f"{code}{VALUE}{s}" for s in found]
            sort += found
        elif param.type == "token":
            tokens, texts = token_keys(value)
            keys += [f"{code}{VALUE}{t}" for t in tokens]
            keys += [f"{code}:text{VALUE}{t}" for t in texts]
            sort += tokens
        elif param.type == "reference":
            refs, identifiers = reference_keys(value, base)
            keys += [f"{code}{VALUE}{r}" for r in refs]
            keys += [f"{code}:identifier{VALUE}{i}" for i in identifiers]
            sort += refs
        elif param.type == "date":
            for low, high in date_keys(value):
                keys += [f"{code}{VALUE}<{low}{PART}{high}", f"{code}{VALUE}>{high}"]
                sort.append(low)
        elif param.type in {"number", "quantity"}:
            found = quantity_keys(value)
            keys += [f"{code}{VALUE}{q}" for q in found]
            sort += [q for q in found if not q.startswith("#")]
        elif param.type == "uri" and isinstance(value, str):
            keys.append(f"{code}{VALUE}{value}")
            sort.append(value)
    return keys, (min(sort) if sort else None)


def index_fields(
    resource_type: str, resource: dict[str, Any], patients: list[str], base: str
) -> dict[str, Any]:
    """The `k` and `o` fields stored with a resource."""
    keys: list[str] = []
    order: dict[str, Any] = {}
    for param in indexed_params(resource_type):
        found, sort = param_keys(param, resource, base)
        keys += found
        if sort is not None:
            order[param.code] = sort
    unique = list(dict.fromkeys(keys))
    prefixed = [f"{p}{PATIENT}{k}" for p in patients for k in unique]
    return {"k": unique + prefixed, "o": order}
