"""Concurrent writers on one resource: https://hl7.org/fhir/R4/http.html#concurrency.

Each writer has its own connection and they start together behind a barrier.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

import httpx
import orjson
import pytest

from tests.fhir_server.helpers import FHIR, PATCH, assert_outcome, create, history_count
from tests.support import TLS

WRITERS = 10
ROUNDS = 1  # raise to shake out rarer interleavings


def together(server, request) -> list[httpx.Response]:
    """Run `request(client, n)` from WRITERS threads at once; the responses in writer order."""
    barrier = threading.Barrier(WRITERS)
    clients = [
        httpx.Client(base_url=server.url + "/fhir", verify=TLS, timeout=60, auth=server.auth())
        for _ in range(WRITERS)
    ]
    for c in clients:  # connect first so the barrier releases requests, not handshakes
        assert c.get("/metadata", params={"_summary": "true"}).status_code == 200

    def run(n: int) -> httpx.Response:
        barrier.wait(timeout=30)
        return request(clients[n], n)

    try:
        with ThreadPoolExecutor(WRITERS) as pool:
            return list(pool.map(run, range(WRITERS)))
    finally:
        for c in clients:
            c.close()


def put_body(resource: dict, n: int) -> bytes:
    return orjson.dumps({**resource, "birthDate": f"19{n:02d}-01-01"})


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_if_match_lets_exactly_one_writer_win(client, server, round_):
    resource = create(client, {"resourceType": "Patient", "active": True})
    url = f"/Patient/{resource['id']}"

    def update(c: httpx.Client, n: int) -> httpx.Response:
        headers = {"Content-Type": FHIR, "If-Match": 'W/"1"'}
        return c.put(url, content=put_body(resource, n), headers=headers)

    responses = together(server, update)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 412: WRITERS - 1}, [r.text for r in responses]
    for r in responses:
        if r.status_code == 412:
            body = assert_outcome(r, 412, "If-Match version 1", code="conflict")
            assert "current version 1 " not in body["issue"][0]["diagnostics"], body
    winner = next(r for r in responses if r.status_code == 200)
    final = client.get(url)
    assert final.headers["etag"] == 'W/"2"'
    assert final.json() == winner.json(), "the winner's body is what is stored"
    assert history_count(client, url) == 2


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_patch_with_if_match_lets_exactly_one_writer_win(client, server, round_):
    resource = create(client, {"resourceType": "Patient", "active": True})
    url = f"/Patient/{resource['id']}"

    def patch(c: httpx.Client, n: int) -> httpx.Response:
        ops = [{"op": "add", "path": "/birthDate", "value": f"19{n:02d}-01-01"}]
        headers = {"Content-Type": PATCH, "If-Match": 'W/"1"'}
        return c.patch(url, content=orjson.dumps(ops), headers=headers)

    responses = together(server, patch)
    assert Counter(r.status_code for r in responses) == {200: 1, 412: WRITERS - 1}
    assert client.get(url).json()["meta"]["versionId"] == "2"
    assert history_count(client, url) == 2


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_updates_without_if_match_are_serialised(client, server, round_):
    resource = create(client, {"resourceType": "Patient", "active": True})
    url = f"/Patient/{resource['id']}"

    def update(c: httpx.Client, n: int) -> httpx.Response:
        return c.put(url, content=put_body(resource, n), headers={"Content-Type": FHIR})

    responses = together(server, update)
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 409}, [r.text for r in responses]
    assert statuses[200] >= 1
    for r in responses:
        if r.status_code == 409:
            assert_outcome(r, 409, code="conflict")
    versions = sorted(int(r.json()["meta"]["versionId"]) for r in responses if r.status_code == 200)
    assert versions == list(range(2, 2 + statuses[200])), "each success made its own version"
    final = client.get(url)
    assert final.json()["meta"]["versionId"] == str(1 + statuses[200])
    assert history_count(client, url) == 1 + statuses[200]
    newest = max(
        (r for r in responses if r.status_code == 200),
        key=lambda r: int(r.json()["meta"]["versionId"]),
    )
    assert final.json() == newest.json(), "the last version written is the one stored"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_concurrent_creates_under_one_id_make_one_version_each(client, server, round_):
    rid = f"race-{uuid4().hex}"
    url = f"/Patient/{rid}"

    def update(c: httpx.Client, n: int) -> httpx.Response:
        body = put_body({"resourceType": "Patient", "id": rid}, n)
        return c.put(url, content=body, headers={"Content-Type": FHIR})

    responses = together(server, update)
    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] == 1, statuses
    assert set(statuses) <= {200, 201, 409}, [r.text for r in responses]
    made = statuses[200] + statuses[201]
    assert client.get(url).json()["meta"]["versionId"] == str(made)
    assert history_count(client, url) == made


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_concurrent_deletes_make_one_tombstone(client, server, round_):
    url = f"/Patient/{create(client, {'resourceType': 'Patient'})['id']}"
    responses = together(server, lambda c, n: c.delete(url))
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {204, 409}, [r.text for r in responses]
    assert statuses[204] >= 1
    assert {r.headers["etag"] for r in responses if r.status_code == 204} == {'W/"2"'}
    assert client.get(url).status_code == 410
    assert history_count(client, url) == 2
