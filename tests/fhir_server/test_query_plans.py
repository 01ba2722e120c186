"""Every query the server sends uses an index (ARCHITECTURE.md, item 4).

The app runs in-process with a command listener on its MongoDB client, a tour of reads,
searches and history runs against it, and each `find` it issued is explained: no COLLSCAN.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient, MongoClient, monitoring

import fhir_server.app as app_module
from fhir_server.settings import Settings
from tests.fhir_server.test_access import consent as permit
from tests.support import mint_token


class Recorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.finds: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            cmd = event.command
            self.finds.append(
                {
                    "db": event.database_name,
                    "coll": cmd["find"],
                    "filter": cmd.get("filter", {}),
                    "sort": cmd.get("sort"),
                }
            )

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


TOUR = [
    "/Observation?patient={pid}&code=http://loinc.org|29463-7",
    "/Observation?patient={pid}&category=vital-signs&date=ge2019",
    "/Observation?patient={pid}&date=lt2030&_sort=-date",
    "/Observation?patient={pid}&value-quantity=gt10",
    "/Observation?code=29463-7&value-quantity=le100",
    "/Observation?patient={pid}&code:not=1",
    "/Observation?subject:Patient.name=tour&_include=Observation:subject",
    "/Patient?_has:Observation:patient:code=29463-7",
    "/Patient?name=tour&_revinclude=Observation:subject",
    "/Patient?family:contains=our",
    "/Patient?_id={pid}",
    "/Patient?_lastUpdated=ge2020",
    "/Patient",
    "/Patient/{pid}",
    "/Patient/{pid}/_history/1",
    "/Patient/{pid}/_history",
    "/Observation/_history?_count=2",
    "/_history?_count=2",
    "/Patient/{pid}/$everything?_count=1",
    "/Patient/{pid}/$everything?_page=Observation/0",
    "/Patient?identifier=none&_revinclude:iterate=Observation:subject",
]


@pytest.fixture
def tour(database, monkeypatch):
    recorder = Recorder()

    def connect(settings: Settings) -> AsyncMongoClient:
        return AsyncMongoClient(settings.mongodb_uri, event_listeners=[recorder], tz_aware=True)

    monkeypatch.setattr(app_module, "connect", connect)
    settings = Settings(mongodb_uri=database.uri, db_name=f"plans_{uuid.uuid4().hex[:6]}")
    app = app_module.create_app(settings)
    token = mint_token(database.uri, settings.db_name, settings.port, "system/*.cruds")
    return app, recorder, token, (settings.db_name, settings.port)


async def test_every_query_uses_an_index(tour, database):
    app, recorder, token, (db_name, port) = tour
    pid = f"tour-{uuid.uuid4().hex[:6]}"
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test/fhir",
            headers={"Authorization": f"Bearer {token}"},
        ) as client,
    ):
        assert (
            await client.put(
                f"/Patient/{pid}",
                json={"resourceType": "Patient", "id": pid, "name": [{"family": "Tour"}]},
            )
        ).status_code == 201
        for i in range(3):
            r = await client.post(
                "/Observation",
                json={
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [{"coding": [{"code": "vital-signs"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "effectiveDateTime": f"202{i}-01-01",
                    "valueQuantity": {"value": 50 + i},
                },
            )
            assert r.status_code == 201
        consent = permit(f"c-{pid}", pid, f"RelatedPerson/r-{pid}")
        related = {
            "resourceType": "RelatedPerson",
            "id": f"r-{pid}",
            "patient": {"reference": f"Patient/{pid}"},
        }
        for resource in (consent, related):
            url = f"/{resource['resourceType']}/{resource['id']}"
            assert (await client.put(url, json=resource)).status_code == 201
        recorder.finds.clear()
        for path in TOUR:
            r = await client.get(path.format(pid=pid))
            assert r.status_code == 200, (path, r.text)
        # the same tour narrowed to a patient, and as a RelatedPerson (Consents looked up)
        for context in ({"patient": pid}, {"fhir_user": f"RelatedPerson/r-{pid}", "patient": pid}):
            narrowed = mint_token(database.uri, db_name, port, "patient/*.rs", **context)
            headers = {"Authorization": f"Bearer {narrowed}"}
            for path in TOUR:
                if path.startswith("/_history"):
                    continue  # system history needs a system scope
                r = await client.get(path.format(pid=pid), headers=headers)
                assert r.status_code == 200, (path, context, r.text)
    assert recorder.finds, "the tour issued no find commands"
    sync = MongoClient(database.uri)
    try:
        for find in recorder.finds:
            cursor = sync[find["db"]][find["coll"]].find(find["filter"])
            if find["sort"]:
                cursor = cursor.sort(list(find["sort"].items()))
            plan = cursor.explain()
            text = str(plan["queryPlanner"]["winningPlan"])
            assert "COLLSCAN" not in text, (find, text)
    finally:
        sync.close()
