"""Batch and transaction Bundles: https://hl7.org/fhir/R4/http.html#transaction."""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest

SYNTHEA = Path(__file__).resolve().parent.parent / "data" / "synthea"


def tx(entries, kind="transaction"):
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def post(resource, full_url=None, **request):
    e = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        e["fullUrl"] = full_url
    return e


def count(client, query):
    return client.get(query).json()["total"]


def test_transaction_rewrites_urn_references(client, fhir_base):
    tag = uuid.uuid4().hex[:8]
    p_url, e_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    bundle = tx(
        [
            post(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": tag},
                    "subject": {"reference": p_url},
                    "encounter": {"reference": e_url},
                    "extension": [{"url": "http://x/ext", "valueReference": {"reference": p_url}}],
                }
            ),
            post(
                {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"code": "AMB"},
                    "subject": {"reference": p_url},
                },
                e_url,
            ),
            post(
                {
                    "resourceType": "Patient",
                    "name": [{"family": f"Tx{tag}"}],
                    "text": {
                        "status": "generated",
                        "div": '<div xmlns="http://www.w3.org/1999/xhtml">'
                        f'<a href="{p_url}">me</a></div>',
                    },
                },
                p_url,
            ),
        ]
    )
    r = client.post("", json=bundle)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == ["201 Created"] * 3
    locations = [e["response"]["location"] for e in out["entry"]]
    assert all(loc.startswith(fhir_base) and "/_history/1" in loc for loc in locations)
    pid = locations[2].split("/")[-3]
    obs = client.get(locations[0].split(fhir_base)[1].split("/_history")[0]).json()
    assert obs["subject"]["reference"] == f"Patient/{pid}"
    assert obs["extension"][0]["valueReference"]["reference"] == f"Patient/{pid}"
    assert obs["encounter"]["reference"].startswith("Encounter/")
    patient = client.get(f"/Patient/{pid}").json()
    assert f'href="Patient/{pid}"' in patient["text"]["div"]
    assert count(client, f"/Observation?patient={pid}") == 1


def test_transaction_is_all_or_nothing(client):
    tag = uuid.uuid4().hex[:8]
    good = post({"resourceType": "Patient", "name": [{"family": f"Atomic{tag}"}]})
    cases = [
        post({"resourceType": "Observation", "status": "final"}),  # missing code: invalid
        {"request": {"method": "PUT", "url": "Patient/x"}},  # no resource
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Nope"}},
        {"request": {"method": "DELETE", "url": f"Patient?identifier=none-{tag}"}},  # no match: 404
        post(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": f"Patient?identifier=http://none|{tag}"},
            }
        ),
        {
            "resource": {"resourceType": "Patient", "id": "other"},
            "request": {"method": "PUT", "url": "Patient/mismatch"},
        },
    ]
    for bad in cases:
        r = client.post("", json=tx([good, bad]))
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["resourceType"] == "OperationOutcome"
        assert "Bundle.entry[1]" in r.text
    assert count(client, f"/Patient?family=Atomic{tag}") == 0


def test_transaction_conditional_semantics(client):
    tag = uuid.uuid4().hex[:8]
    system = f"http://hospital/{tag}"
    org = {
        "resourceType": "Organization",
        "identifier": [{"system": system, "value": "org-1"}],
        "name": "Clinic",
    }
    cond = f"identifier={system}|org-1"
    # zero matches: created; the conditional reference resolves to the entry in this bundle
    first = client.post(
        "",
        json=tx(
            [
                post(org, f"urn:uuid:{uuid.uuid4()}", ifNoneExist=cond),
                post(
                    {
                        "resourceType": "Patient",
                        "managingOrganization": {"reference": f"Organization?{cond}"},
                    }
                ),
            ]
        ),
    )
    assert first.status_code == 200, first.text
    assert first.json()["entry"][0]["response"]["status"] == "201 Created"
    org_id = first.json()["entry"][0]["response"]["location"].split("/")[-3]
    pid = first.json()["entry"][1]["response"]["location"].split("/")[-3]
    assert (
        client.get(f"/Patient/{pid}").json()["managingOrganization"]["reference"]
        == f"Organization/{org_id}"
    )
    # one match: not created again, reported 200 with its location
    again = client.post("", json=tx([post(org, ifNoneExist=cond)]))
    assert again.json()["entry"][0]["response"]["status"] == "200 OK"
    assert org_id in again.json()["entry"][0]["response"]["location"]
    assert count(client, f"/Organization?identifier={system}|org-1") == 1
    # several matches: 412 and nothing written
    client.post("/Organization", json=org)
    r = client.post(
        "",
        json=tx(
            [
                post(org, ifNoneExist=cond),
                post({"resourceType": "Patient", "name": [{"family": f"Never{tag}"}]}),
            ]
        ),
    )
    assert r.status_code == 412
    assert count(client, f"/Patient?family=Never{tag}") == 0


def test_transaction_update_delete_patch_and_get(client):
    tag = uuid.uuid4().hex[:8]
    a = client.post(
        "/Patient", json={"resourceType": "Patient", "name": [{"family": f"A{tag}"}]}
    ).json()
    b = client.post(
        "/Patient", json={"resourceType": "Patient", "name": [{"family": f"B{tag}"}]}
    ).json()
    patch = base64.b64encode(
        orjson.dumps([{"op": "add", "path": "/gender", "value": "other"}])
    ).decode()
    r = client.post(
        "",
        json=tx(
            [
                {"request": {"method": "GET", "url": f"Patient/{a['id']}"}},
                {
                    "resource": {**a, "active": True},
                    "request": {"method": "PUT", "url": f"Patient/{a['id']}", "ifMatch": 'W/"1"'},
                },
                {"request": {"method": "DELETE", "url": f"Patient/{b['id']}"}},
                {
                    "resource": {
                        "resourceType": "Binary",
                        "contentType": "application/json-patch+json",
                        "data": patch,
                    },
                    "request": {"method": "PATCH", "url": f"Patient/{a['id']}-missing"},
                },
            ]
        ),
    )
    assert r.status_code == 404  # the PATCH target does not exist: nothing happened
    assert client.get(f"/Patient/{b['id']}").status_code == 200
    r = client.post(
        "",
        json=tx(
            [
                {"request": {"method": "GET", "url": f"Patient/{a['id']}"}},
                {
                    "resource": {**a, "active": True},
                    "request": {"method": "PUT", "url": f"Patient/{a['id']}", "ifMatch": 'W/"1"'},
                },
                {"request": {"method": "DELETE", "url": f"Patient/{b['id']}"}},
            ]
        ),
    )
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "200", "204"]
    assert entries[0]["resource"]["active"] is True, "GET runs after the writes"
    assert client.get(f"/Patient/{b['id']}").status_code == 410
    stale = client.post(
        "",
        json=tx(
            [
                {
                    "resource": {**a, "active": False},
                    "request": {"method": "PUT", "url": f"Patient/{a['id']}", "ifMatch": 'W/"1"'},
                },
            ]
        ),
    )
    assert stale.status_code == 412
    r = client.post(
        "",
        json=tx(
            [
                {
                    "resource": {
                        "resourceType": "Binary",
                        "contentType": "application/json-patch+json",
                        "data": patch,
                    },
                    "request": {"method": "PATCH", "url": f"Patient/{a['id']}"},
                },
            ]
        ),
    )
    assert r.status_code == 200
    assert client.get(f"/Patient/{a['id']}").json()["gender"] == "other"


def test_batch_entries_are_independent(client):
    tag = uuid.uuid4().hex[:8]
    r = client.post(
        "",
        json=tx(
            [
                post({"resourceType": "Patient", "name": [{"family": f"Batch{tag}"}]}),
                post({"resourceType": "Observation", "status": "final"}),
                {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
                {"request": {"method": "GET", "url": f"Patient?family=Batch{tag}"}},
                {"bogus": True},
            ],
            kind="batch",
        ),
    )
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert r.json()["type"] == "batch-response"
    assert [e["response"]["status"] for e in entries] == ["201", "400", "404", "200", "400"]
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[3]["resource"]["total"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Bundle", "type": "collection", "entry": []},
        {"resourceType": "Patient"},
        {"resourceType": "Bundle", "type": "transaction", "entry": {"not": "a list"}},
        [1, 2],
    ],
)
def test_bad_bundles(client, body):
    r = client.post("", json=body)
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"


def test_synthea_bundle_loads_end_to_end(client):
    path = next(SYNTHEA.glob("*.json"))
    bundle = json.loads(path.read_text())
    expected = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    r = client.post(
        "", content=path.read_bytes(), headers={"Content-Type": "application/fhir+json"}
    )
    assert r.status_code == 200, r.text[:500]
    locations = [e["response"]["location"] for e in r.json()["entry"]]
    assert len(locations) == sum(expected.values())
    pid = next(loc for loc in locations if "/Patient/" in loc).split("/")[-3]
    everything = client.get(f"/Patient/{pid}/$everything").json()
    got = Counter(e["resource"]["resourceType"] for e in everything["entry"])
    # every clinical resource points at the patient; Organizations and Practitioners do not
    for rtype, n in expected.items():
        if rtype not in {"Organization", "Practitioner"}:
            assert got[rtype] == n, rtype
    obs = client.get(f"/Observation?patient={pid}&_count=1").json()
    assert obs["total"] == expected["Observation"]
    assert obs["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{pid}"


def test_unchanged_put_in_a_transaction_says_no_change(client):
    made = client.post("/Patient", json={"resourceType": "Patient", "gender": "other"}).json()
    entry = {"resource": made, "request": {"method": "PUT", "url": f"Patient/{made['id']}"}}
    r = client.post("", json=tx([entry]))
    response = r.json()["entry"][0]["response"]
    assert response["status"] == "200 OK" and response["etag"] == 'W/"1"'
    assert (
        response["outcome"]["issue"][0]["details"]["coding"][0]["code"]
        == "SUCCESSFUL_UPDATE_NO_CHANGE"
    )
