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


OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
# SMART configuration field -> the oauth-uris extension's sub-extension (SMART App Launch 2.2,
# conformance.html#declaring-support-for-oauth2-endpoints; the Python `fhirclient` reads only this)
_OAUTH_URI_NAMES = {
    "authorization_endpoint": "authorize",
    "token_endpoint": "token",
    "introspection_endpoint": "introspect",
    "revocation_endpoint": "revoke",
    "registration_endpoint": "register",
    "management_endpoint": "manage",
}


def security(smart: dict[str, Any]) -> dict[str, Any]:
    """`rest.security`: SMART-on-FHIR with the endpoints the discovery document lists."""
    uris = [
        {"url": name, "valueUri": smart[field]}
        for field, name in _OAUTH_URI_NAMES.items()
        if isinstance(smart.get(field), str)
    ]
    return {
        "cors": True,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
            }
        ],
        "extension": [{"url": OAUTH_URIS, "extension": uris}],
    }


def capability_statement(
    base: str, interactions: list[tuple[str, str]], smart: dict[str, Any] | None = None
) -> bytes:
    """`interactions` is (code, level) for every implemented interaction; `smart` is the SMART
    discovery document, whose endpoints `rest.security` repeats."""
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
                **({"security": security(smart)} if smart else {}),
                "resource": resources,
                "interaction": [{"code": c} for c in system_codes],
            }
        ],
    }
    return dumps(statement)
