"""Structural validation of resources: the only module that imports `fhir.resources`.

R4B models match R4 field for field on the PHR resource types (ARCHITECTURE.md, item 1). The 18 R4
types missing from R4B are checked for shape only; the 13 types R4B added are not R4 and are
refused as unknown.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_server.errors import FhirError, Issue, bad_request, not_found
from fhir_server.search.definitions import resource_types

_MAX_ISSUES = 20


def check_type(resource_type: str) -> None:
    """404 for anything that is not an R4 resource type."""
    if resource_type not in resource_types():
        raise not_found(f"Unknown resource type '{resource_type}'")


def _model(resource_type: str) -> Any | None:
    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None


def _location(loc: tuple[Any, ...], resource_type: str) -> str:
    path = resource_type
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validate_resource(resource: Any, resource_type: str | None = None) -> dict[str, Any]:
    """Check a parsed body is a structurally valid R4 resource (of `resource_type`, if given)."""
    if not isinstance(resource, dict):
        raise bad_request("The body must be a JSON object holding a FHIR resource", "structure")
    actual = resource.get("resourceType")
    if not isinstance(actual, str):
        raise bad_request("The resource has no resourceType", "required")
    if resource_type is not None and actual != resource_type:
        raise bad_request(
            f"resourceType '{actual}' does not match the URL's type '{resource_type}'"
        )
    if actual not in resource_types():
        raise bad_request(f"'{actual}' is not an R4 resource type", "not-supported")
    model = _model(actual)
    if model is None:
        return resource
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        issues = [
            Issue(
                "structure" if err["type"] == "extra_forbidden" else "value",
                f"{_location(err['loc'], actual)}: {err['msg']}",
                expression=(_location(err["loc"], actual),),
            )
            for err in exc.errors()[:_MAX_ISSUES]
        ]
        raise FhirError(
            f"The {actual} resource is not valid R4", 400, "invalid", issues
        ) from None
    except (ValueError, TypeError) as exc:
        raise bad_request(f"The {actual} resource is not valid R4: {exc}") from None
    return resource
