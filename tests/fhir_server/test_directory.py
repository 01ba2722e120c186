"""The FHIR side of the login pages: who a fhirUser is and whom it may act for (Consents)."""

from __future__ import annotations

import uuid

import httpx

from fhir_server.app import create_app
from fhir_server.settings import Settings
from tests.fhir_server.test_access import consent
from tests.support import mint_token


async def test_directory_names_people_and_follows_consents(database):
    settings = Settings(mongodb_uri=database.uri, db_name=f"dir_{uuid.uuid4().hex[:6]}")
    app = create_app(settings)
    token = mint_token(database.uri, settings.db_name, settings.port, "system/*.cruds")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test/fhir",
            headers={"Authorization": f"Bearer {token}"},
        ) as client,
    ):
        child = {
            "resourceType": "Patient",
            "id": "kid",
            "name": [{"given": ["Ruby"], "family": "Marsh"}],
            "birthDate": "2014-06-09",
        }
        older = {
            **child,
            "id": "teen",
            "name": [{"text": "Oliver Marsh"}],
            "birthDate": "2000-01-01",
        }
        for resource in (
            child,
            older,
            {"resourceType": "RelatedPerson", "id": "mum", "patient": {"reference": "Patient/kid"}},
            consent("c-kid", "kid", "RelatedPerson/mum"),
            consent("c-teen", "teen", "RelatedPerson/mum"),  # lapsed: he is over 16
            consent("c-old", "kid", "RelatedPerson/dad", status="inactive"),
        ):
            url = f"/{resource['resourceType']}/{resource['id']}"
            assert (await client.put(url, json=resource)).status_code == 201
        directory = app.state.auth.directory
        kid = await directory.describe("Patient/kid")
        assert (kid.display, kid.birth_date) == ("Ruby Marsh", "2014-06-09")
        assert (await directory.describe("Patient/teen")).display == "Oliver Marsh"
        assert await directory.describe("Patient/nobody") is None
        assert await directory.describe("Observation/kid") is None
        assert [p.id for p in await directory.patients_for("Patient/kid")] == ["kid"]
        assert [p.id for p in await directory.patients_for("RelatedPerson/mum")] == ["kid"]
        assert await directory.patients_for("RelatedPerson/dad") == []
        assert await directory.patients_for("Practitioner/x") == []
