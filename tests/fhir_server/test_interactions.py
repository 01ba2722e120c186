"""read, vread, create, update, patch, delete over real HTTP: https://hl7.org/fhir/R4/http.html."""

from __future__ import annotations

import httpx
import orjson
import pytest

FHIR = "application/fhir+json"
PATCH = "application/json-patch+json"


def patient(**extra):
    return {"resourceType": "Patient", "name": [{"family": "Tester", "given": ["Ada"]}], **extra}


def create(client: httpx.Client, resource: dict, **headers) -> httpx.Response:
    r = client.post(
        f"/{resource['resourceType']}",
        content=orjson.dumps(resource),
        headers={"Content-Type": FHIR, **headers},
    )
    assert r.status_code == 201, r.text
    return r


def test_create_assigns_id_meta_and_headers(client, fhir_base):
    r = create(
        client, patient(id="client-chosen", meta={"versionId": "99", "tag": [{"code": "t"}]})
    )
    body = r.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["tag"] == [{"code": "t"}]
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"{fhir_base}/Patient/{body['id']}/_history/1"
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert "GMT" in r.headers["last-modified"]


def test_read_returns_stored_json_exactly(client):
    body = b'{"resourceType":"Patient","extension":[{"url":"http://e","valueDecimal":1.50}]}'
    r = client.post("/Patient", content=body, headers={"Content-Type": FHIR})
    raw = r.content
    assert b'"valueDecimal":1.50' in raw, "decimal precision is kept"
    read = client.get(f"/Patient/{r.json()['id']}")
    assert read.status_code == 200
    assert read.content == raw
    assert read.headers["etag"] == 'W/"1"'
    assert read.headers["last-modified"] == r.headers["last-modified"]


def test_if_none_match_gives_304(client):
    pid = create(client, patient()).json()["id"]
    r = client.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304
    assert client.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"7"'}).status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/Patient/does-not-exist", "/Patient/does-not-exist/_history/1", "/Patient/x/_history/abc"],
)
def test_missing_is_404_operation_outcome(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["code"] == "not-found"


def test_unknown_type_is_404(client):
    for r in (client.get("/Foo/1"), client.post("/Foo", json={"resourceType": "Foo"})):
        assert r.status_code == 404
        assert "Unknown resource type" in r.json()["issue"][0]["diagnostics"]


def test_r4b_only_type_is_not_r4(client):
    r = client.post("/Citation", json={"resourceType": "Citation", "status": "active"})
    assert r.status_code == 404


def test_r4_type_missing_from_r4b_is_accepted(client):
    r = create(client, {"resourceType": "MedicinalProduct", "name": [{"productName": "X"}]})
    assert client.get(f"/MedicinalProduct/{r.json()['id']}").status_code == 200


def test_update_versions_and_vread(client):
    created = create(client, patient()).json()
    pid = created["id"]
    updated = client.put(
        f"/Patient/{pid}",
        json={**created, "gender": "female"},
        headers={"If-Match": 'W/"1"'},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == "2"
    assert updated.headers["etag"] == 'W/"2"'
    v1 = client.get(f"/Patient/{pid}/_history/1")
    assert v1.status_code == 200 and "gender" not in v1.json()
    assert v1.headers["etag"] == 'W/"1"'
    assert client.get(f"/Patient/{pid}/_history/2").json()["gender"] == "female"
    assert client.get(f"/Patient/{pid}/_history/3").status_code == 404


def test_update_as_create_with_client_id(client):
    r = client.put("/Patient/client-id-1", json=patient(id="client-id-1"))
    assert r.status_code == 201
    assert r.headers["location"].endswith("/Patient/client-id-1/_history/1")
    assert client.get("/Patient/client-id-1").json()["id"] == "client-id-1"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (patient(), 400, "must have an id"),
        (patient(id="other"), 400, "does not match the URL id"),
        ({"resourceType": "Observation", "id": "u1"}, 400, "does not match the URL's type"),
    ],
)
def test_update_body_must_match_url(client, body, status, fragment):
    r = client.put("/Patient/u1", json=body)
    assert r.status_code == status
    assert fragment in r.text


def test_if_match_mismatch_is_412(client):
    created = create(client, patient()).json()
    r = client.put(f"/Patient/{created['id']}", json=created, headers={"If-Match": 'W/"5"'})
    assert r.status_code == 412
    assert r.json()["issue"][0]["code"] == "conflict"
    r = client.put(f"/Patient/{created['id']}", json=created, headers={"If-Match": "garbage"})
    assert r.status_code == 400


def test_prefer_return(client):
    minimal = create(client, patient(), Prefer="return=minimal")
    assert minimal.content == b""
    assert minimal.headers["location"]
    outcome = create(client, patient(), Prefer="return=OperationOutcome")
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert outcome.json()["issue"][0]["severity"] == "information"
    full = create(client, patient(), Prefer="return=representation")
    assert full.json()["resourceType"] == "Patient"


def test_patch_json_patch(client):
    pid = create(client, patient(active=True)).json()["id"]
    ops = [
        {"op": "replace", "path": "/active", "value": False},
        {"op": "add", "path": "/name/0/given/-", "value": "Beth"},
        {"op": "test", "path": "/name/0/family", "value": "Tester"},
    ]
    r = client.patch(
        f"/Patient/{pid}",
        content=orjson.dumps(ops),
        headers={"Content-Type": PATCH, "If-Match": 'W/"1"'},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["active"] is False
    assert body["name"][0]["given"] == ["Ada", "Beth"]
    assert body["meta"]["versionId"] == "2"


@pytest.mark.parametrize(
    ("ops", "status"),
    [
        ([{"op": "test", "path": "/active", "value": False}], 422),
        ([{"op": "replace", "path": "/id", "value": "other"}], 400),
        ([{"op": "replace", "path": "/resourceType", "value": "Observation"}], 400),
        ([{"op": "add", "path": "/bogusElement", "value": 1}], 400),
        ([{"op": "remove", "path": "/nope"}], 400),
        ([{"op": "frobnicate", "path": "/active"}], 400),
        ({"op": "add"}, 400),
    ],
)
def test_patch_failures_change_nothing(client, ops, status):
    pid = create(client, patient(active=True)).json()["id"]
    r = client.patch(f"/Patient/{pid}", content=orjson.dumps(ops), headers={"Content-Type": PATCH})
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient/{pid}").json()["meta"]["versionId"] == "1"


def test_patch_needs_json_patch_content_type(client):
    pid = create(client, patient()).json()["id"]
    r = client.patch(f"/Patient/{pid}", json=[], headers={"Content-Type": FHIR})
    assert r.status_code == 415


def test_patch_missing_resource_is_404(client):
    r = client.patch("/Patient/nobody-here", content=b"[]", headers={"Content-Type": PATCH})
    assert r.status_code == 404


def test_delete_is_logical(client):
    pid = create(client, patient()).json()["id"]
    r = client.delete(f"/Patient/{pid}")
    assert r.status_code == 204
    assert r.headers["etag"] == 'W/"2"'
    gone = client.get(f"/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert client.get(f"/Patient/{pid}/_history/1").status_code == 200
    assert client.get(f"/Patient/{pid}/_history/2").status_code == 410
    assert client.delete(f"/Patient/{pid}").status_code == 204, "deleting again is a no-op"
    assert client.get(f"/Patient/{pid}/_history").json()["total"] == 2
    assert client.delete("/Patient/never-existed").status_code == 404


def test_update_after_delete_recreates(client):
    pid = create(client, patient()).json()["id"]
    client.delete(f"/Patient/{pid}")
    r = client.put(f"/Patient/{pid}", json=patient(id=pid))
    assert r.status_code == 201
    assert r.json()["meta"]["versionId"] == "3"
