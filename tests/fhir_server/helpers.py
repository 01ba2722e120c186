"""Small helpers shared by the FHIR HTTP tests."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import orjson

FHIR = "application/fhir+json"
PATCH = "application/json-patch+json"


def create(client: httpx.Client, resource: dict, **headers: str) -> dict:
    """POST the resource and return the stored representation (asserting 201)."""
    r = client.post(
        f"/{resource['resourceType']}",
        content=orjson.dumps(resource),
        headers={"Content-Type": FHIR, **headers},
    )
    assert r.status_code == 201, r.text
    return r.json()


def put(client: httpx.Client, resource: dict, **headers: str) -> httpx.Response:
    return client.put(
        f"/{resource['resourceType']}/{resource['id']}",
        content=orjson.dumps(resource),
        headers={"Content-Type": FHIR, **headers},
    )


def assert_outcome(
    r: httpx.Response, status: int, *fragments: str, code: str | None = None
) -> dict:
    """`r` is an OperationOutcome error with `status` whose diagnostics mention every fragment."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/fhir+json"), r.headers
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"], body
    text = " ".join(i.get("diagnostics", "") for i in body["issue"]).lower()
    for fragment in fragments:
        assert fragment.lower() in text, (fragment, body)
    if code is not None:
        assert body["issue"][0]["code"] == code, body
    return body


def instant_now() -> str:
    """The current instant at millisecond precision, as `_since` takes it."""
    now = datetime.now(UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def history_count(client: httpx.Client, path: str) -> int:
    """Number of versions an instance history lists (0 when the resource is unknown)."""
    r = client.get(f"{path}/_history", params={"_count": "1000"})
    if r.status_code == 404:
        return 0
    assert r.status_code == 200, r.text
    return len(r.json().get("entry", []))


def last_write(client: httpx.Client) -> str | None:
    """`fullUrl` and ETag of the newest version anywhere: unchanged means nothing was written."""
    r = client.get("/_history", params={"_count": "1"})
    assert r.status_code == 200, r.text
    newest = r.json().get("entry", [])
    return f"{newest[0]['fullUrl']} {newest[0]['response']['etag']}" if newest else None
