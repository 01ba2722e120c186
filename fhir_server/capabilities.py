"""The CapabilityStatement, generated from the interaction table: https://hl7.org/fhir/R4/capabilitystatement.html."""

from __future__ import annotations

from typing import Any

from fhir_server.jsonbody import dumps
from fhir_server.search.definitions import resource_types
from fhir_server.search.index import indexed_params
from fhir_server.storage.versions import format_instant, now

SOFTWARE = {"name": "phr-server", "version": "0.1.0"}
OPERATIONS_ON = {"Patient": {"everything"}}
OPERATION_DEFINITIONS = {
    "everything": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
}


def _search_params(resource_type: str) -> list[dict[str, str]]:
    """Exactly the parameters the search engine indexes for the type, plus `_id`."""
    params = [
        {
            "name": "_id",
            "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
            "type": "token",
        }
    ]
    params += [
        {"name": p.code, "definition": p.url, "type": p.type} for p in indexed_params(resource_type)
    ]
    return params


def capability_statement(base: str, interactions: list[tuple[str, str]]) -> bytes:
    """`interactions` is (code, level) for every implemented interaction."""
    type_codes = list(
        dict.fromkeys(
            c for c, level in interactions if level in {"type", "instance"} and c[0] != "$"
        )
    )
    operations = {c[1:] for c, _ in interactions if c[0] == "$"}
    system_codes = [c for c, level in interactions if level == "system" and c != "capabilities"]
    resources: list[dict[str, Any]] = [
        {
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "interaction": [{"code": c} for c in type_codes],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "searchInclude": ["*"],
            "searchRevInclude": ["*"],
            "searchParam": _search_params(rtype),
        }
        for rtype in sorted(resource_types())
    ]
    for resource in resources:
        if resource["type"] in OPERATIONS_ON and OPERATIONS_ON[resource["type"]] & operations:
            resource["operation"] = [
                {"name": name, "definition": OPERATION_DEFINITIONS[name]}
                for name in sorted(OPERATIONS_ON[resource["type"]] & operations)
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
