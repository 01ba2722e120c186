"""Patient compartment membership, recorded with every stored resource.

Membership follows the official Patient CompartmentDefinition, restricted by `consent` to the
parameters that say a resource is about the patient (ARCHITECTURE.md, item 7).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from consent.compartment import about_params
from fhir_server.references import parse_reference
from fhir_server.search.definitions import SearchParam, compartment_params, search_params
from fhir_server.search.index import KEY_FIELD, stored_ranges
from fhir_server.search.values import VALUE


@cache
def _compartment_search_params(resource_type: str) -> tuple[SearchParam, ...]:
    codes = about_params(resource_type, compartment_params().get(resource_type, []))
    available = search_params(resource_type)
    return tuple(available[c] for c in codes if c in available)


def compartment_patients(resource_type: str, resource: dict[str, Any], base: str) -> list[str]:
    """Ids of the patients this resource is about (a Patient is in its own compartment)."""
    if resource_type == "Patient":
        return [resource["id"]] if isinstance(resource.get("id"), str) else []  # not yet created
    found: list[str] = []
    for param in _compartment_search_params(resource_type):
        for value in param.values(resource):
            if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
                continue
            parsed = parse_reference(value["reference"], base)
            if parsed and parsed[0] == "Patient" and parsed[1] not in found:
                found.append(parsed[1])
    return found


def compartment_query(resource_type: str, patient: str) -> dict[str, Any] | None:
    """A query reading, through the `k.v` index, every resource of `resource_type` in
    `patient`'s compartment (None: the type has none). A resource is in it when one of the
    parameters above refers to the patient, and those references are search keys. The keys
    also match a reference that `compartment_patients` does not count (`Patient/<not an id>`),
    so callers keep only the documents whose `pat` holds the patient."""
    if resource_type == "Patient":
        return {"_id": patient}
    keys = [
        key
        for param in _compartment_search_params(resource_type)
        for key, _ in stored_ranges(resource_type, f"{param.code}{VALUE}Patient/{patient}", None)
    ]
    return {KEY_FIELD: {"$in": keys}} if keys else None
