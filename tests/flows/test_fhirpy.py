"""fhirpy (beda.software's FHIR client) with a patient token from a real standalone launch:
fhirpy does not run OAuth flows, it sends the `Authorization` header it is given.

https://github.com/beda-software/fhir-py
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fhirpy import AsyncFHIRClient, SyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError, ResourceNotFound

from smart_auth.services import AuthServices
from tests.flows.journey import Person, create_observation, standalone_launch

pytestmark = pytest.mark.slow


@pytest.fixture
def launched(public_base: str, auth_services: AuthServices, person: Person) -> dict[str, Any]:
    """The token response of `person`'s standalone launch (patient/Patient.rs, Observation.rs)."""
    token = standalone_launch(public_base, auth_services, person)
    assert token["patient"] == person.patient_id
    assert {"patient/Patient.rs", "patient/Observation.rs"} <= set(token["scope"].split())
    return token


def test_fhirpy_sees_only_the_token_patient(
    public_base: str,
    client: httpx.Client,
    person: Person,
    other: Person,
    launched: dict[str, Any],
) -> None:
    mine = {create_observation(client, person.patient_id, "29463-7", 60 + i) for i in range(3)}
    theirs = create_observation(client, other.patient_id, "29463-7", 90)
    fhir = SyncFHIRClient(public_base + "/fhir", authorization=f"Bearer {launched['access_token']}")

    patient = fhir.reference("Patient", person.patient_id).to_resource()
    assert patient["name"][0]["family"] == person.family

    # The search is narrowed to the token's patient; `_count=2` makes fhirpy follow `next`.
    search = fhir.resources("Observation").search(patient=person.patient_id).limit(2)
    assert len(search.fetch()) == 2  # one page
    assert {o.id for o in search.fetch_all()} == mine
    everything = fhir.resources("Observation").limit(2).fetch_all()
    assert {o.id for o in everything} == mine
    assert {o["subject"]["reference"] for o in everything} == {f"Patient/{person.patient_id}"}

    # Another patient: a search naming them is 403, their resources read as not found.
    with pytest.raises(ForbiddenError):
        fhir.resources("Observation").search(patient=other.patient_id).fetch()
    with pytest.raises(ResourceNotFound):
        fhir.reference("Patient", other.patient_id).to_resource()
    with pytest.raises(ResourceNotFound):
        fhir.get("Observation", theirs)

    # Read and search scopes only: a write is refused.
    note = fhir.resource(
        "Observation",
        status="final",
        code={"text": "note"},
        subject={"reference": f"Patient/{person.patient_id}"},
    )
    with pytest.raises(ForbiddenError):
        note.save()


async def test_async_fhirpy_with_the_same_token(
    public_base: str, person: Person, other: Person, launched: dict[str, Any]
) -> None:
    fhir = AsyncFHIRClient(
        public_base + "/fhir", authorization=f"Bearer {launched['access_token']}"
    )
    patient = await fhir.reference("Patient", person.patient_id).to_resource()
    assert patient["id"] == person.patient_id
    patients = await fhir.resources("Patient").fetch_all()
    assert [p.id for p in patients] == [person.patient_id]
    with pytest.raises(ResourceNotFound):
        await fhir.reference("Patient", other.patient_id).to_resource()
