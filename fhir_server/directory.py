"""The FHIR facts the authorization server's pages need (`smart_auth.directory.PatientDirectory`).

Who a login's `fhirUser` is, and which patients it may act for: itself when it is a Patient; for a
RelatedPerson, the patients whose Consents let it read their record today (the same Consents and
the same `consent.delegation` rules the FHIR API enforces).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from consent.delegation import Request, decide_delegation
from fhir_server.access import Delegations
from fhir_server.jsonbody import loads
from fhir_server.search.engine import Executor
from fhir_server.services import Services
from smart_auth.directory import Party, split_reference


def display_name(resource: dict[str, Any]) -> str | None:
    """A HumanName as people write it: `text`, else given names and family name."""
    for name in resource.get("name") or []:
        if not isinstance(name, dict):
            continue
        if isinstance(name.get("text"), str) and name["text"].strip():
            return str(name["text"]).strip()
        given = [g for g in name.get("given") or [] if isinstance(g, str)]
        family = name.get("family") if isinstance(name.get("family"), str) else None
        parts = [*given, *([family] if family else [])]
        if parts:
            return " ".join(parts)
    return None


class FhirDirectory:
    def __init__(self, services: Callable[[], Services], self_consent_age: int) -> None:
        self.services = services
        self.self_consent_age = self_consent_age
        self.delegations = Delegations()

    async def _resource(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        version = await self.services().repository.read(resource_type, resource_id)
        if version is None or version.json is None:
            return None
        found: dict[str, Any] = loads(version.json)
        return found

    async def describe(self, reference: str) -> Party | None:
        parts = split_reference(reference)
        if parts is None:
            return None
        resource = await self._resource(*parts)
        if resource is None:
            return None
        birth = resource.get("birthDate")
        return Party(*parts, display_name(resource), birth if isinstance(birth, str) else None)

    async def patients_for(self, fhir_user: str) -> list[Party]:
        parts = split_reference(fhir_user)
        if parts is None:
            return []
        if parts[0] == "Patient":
            me = await self.describe(fhir_user)
            return [me] if me else []
        if parts[0] != "RelatedPerson":
            return []
        svc = self.services()
        executor = Executor(svc.repository.db, svc.base, svc.settings.search_max_candidates)
        now = datetime.now(UTC)
        found = []
        for patient, delegation in sorted(
            (await self.delegations.load(executor, fhir_user)).items()
        ):
            request = Request(fhir_user, patient, "r", "Patient")
            decision = decide_delegation(
                request, delegation.consents, now, delegation.birth_date, self.self_consent_age
            )
            if decision.permitted and (party := await self.describe(f"Patient/{patient}")):
                found.append(party)
        return found
