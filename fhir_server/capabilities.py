"""The CapabilityStatement, generated from the interaction table: https://hl7.org/fhir/R4/capabilitystatement.html."""

from __future__ import annotations

from typing import Any

from fhir_server.jsonbody import dumps
from fhir_server.search.definitions import resource_types
from fhir_server.storage.versions import format_instant, now

SOFTWARE = {"name": "phr-server", "version": "0.1.0"}


def capability_statement(base: str, interactions: list[tuple[str, str]]) -> bytes:
    """`interactions` is (code, level) for every implemented interaction."""
    type_codes = [c for c, level in interactions if level in {"type", "instance"}]
    system_codes = [c for c, level in interactions if level == "system" and c != "capabilities"]
    resources: list[dict[str, Any]] = [
        {
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "interaction": [{"code": c} for c in type_codes],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": False,
            "conditionalRead": "not-supported",
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
        }
        for rtype in sorted(resource_types())
    ]
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(now()),
        "publisher": "phr-server",
        "kind": "instance",
        "software": SOFTWARE,
        "implementation": {"description": "Personal health record FHIR server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "resource": resources,
                "interaction": [{"code": c} for c in system_codes],
            }
        ],
    }
    return dumps(statement)
