"""What the authorization server needs to know about FHIR people, as an interface.

`smart_auth` never imports `fhir_server`; `fhir_server` implements `PatientDirectory` over its
storage (and its Consents) and passes it to `AuthServices.create(..., directory=...)`.

SMART launch context: https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

FHIR_USER_TYPES = ("Patient", "RelatedPerson", "Person", "Practitioner")


@dataclass(frozen=True)
class Party:
    """A Patient (or RelatedPerson) as the login and approval pages show it."""

    resource_type: str
    id: str
    display: str | None = None
    birth_date: str | None = None

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"

    @property
    def label(self) -> str:
        return self.display or self.reference


class PatientDirectory(Protocol):
    """FHIR facts the authorization flow needs; implemented by the FHIR side."""

    async def describe(self, reference: str) -> Party | None:
        """The resource `reference` ("Patient/x", "RelatedPerson/y") names, or None if unknown."""
        ...

    async def patients_for(self, fhir_user: str) -> list[Party]:
        """The patients `fhir_user` may act for: itself when a Patient; for a RelatedPerson or
        Person, the patients the FHIR side (Consents) says it acts for. Empty when none."""
        ...


def split_reference(reference: str) -> tuple[str, str] | None:
    """("Patient", "x") for "Patient/x"; None for anything that is not a local reference."""
    resource_type, slash, rid = reference.partition("/")
    if not slash or resource_type not in FHIR_USER_TYPES or not rid or "/" in rid:
        return None
    if not all(c.isalnum() or c in "-." for c in rid) or len(rid) > 64:
        return None
    return resource_type, rid


class SelfOnlyDirectory:
    """The fallback when no FHIR directory is wired: a Patient user acts for itself only.

    It knows no names and no relationships, so RelatedPerson users get no patient until the
    FHIR side supplies a real directory.
    """

    async def describe(self, reference: str) -> Party | None:
        parts = split_reference(reference)
        return Party(*parts) if parts else None

    async def patients_for(self, fhir_user: str) -> list[Party]:
        parts = split_reference(fhir_user)
        return [Party(*parts)] if parts and parts[0] == "Patient" else []
