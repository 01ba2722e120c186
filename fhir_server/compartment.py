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
