"""Patient/$everything: https://hl7.org/fhir/R4/patient-operation-everything.html."""

from __future__ import annotations

import uuid

from tests.fhir_server.helpers import create, put


def test_everything_returns_the_compartment_and_pages(client):
    pid = f"ev-{uuid.uuid4().hex[:8]}"
    other = f"ev-other-{uuid.uuid4().hex[:8]}"
    put(client, {"resourceType": "Patient", "id": pid})
    put(client, {"resourceType": "Patient", "id": other})
    mine = {("Patient", pid)}
    for i in range(4):
        o = create(
            client,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": f"o{i}"},
                "subject": {"reference": f"Patient/{pid}"},
            },
        )
        mine.add(("Observation", o["id"]))
    c = create(client, {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"}})
    mine.add(("Condition", c["id"]))
    create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "theirs"},
            "subject": {"reference": f"Patient/{other}"},
        },
    )
    # performed by the patient but about someone else: not in the compartment for access
    create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "performed"},
            "subject": {"reference": f"Patient/{other}"},
            "performer": [{"reference": f"Patient/{pid}"}],
        },
    )

    whole = client.get(f"/Patient/{pid}/$everything").json()
    assert {(e["resource"]["resourceType"], e["resource"]["id"]) for e in whole["entry"]} == mine
    assert whole["total"] == len(mine)

    seen = []
    url = f"/Patient/{pid}/$everything?_count=2"
    while url:
        page = client.get(url).json()
        seen += [
            (e["resource"]["resourceType"], e["resource"]["id"]) for e in page.get("entry", [])
        ]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert len(seen) == len(set(seen)) and set(seen) == mine

    only = client.get(f"/Patient/{pid}/$everything?_type=Condition").json()
    assert [e["resource"]["id"] for e in only["entry"]] == [c["id"]]
    assert client.get(f"/Patient/{pid}/$everything?_since=2999-01-01").json().get("entry") is None


def test_everything_errors(client):
    assert client.get("/Patient/nobody-at-all/$everything").status_code == 404
    assert client.get("/Observation/x/$everything").status_code == 400
    pid = f"ev-{uuid.uuid4().hex[:8]}"
    put(client, {"resourceType": "Patient", "id": pid})
    for query in ("_type=Nonsense", "_count=abc", "_page=garbage", "_since=yesterday"):
        r = client.get(f"/Patient/{pid}/$everything?{query}")
        assert r.status_code == 400, (query, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
