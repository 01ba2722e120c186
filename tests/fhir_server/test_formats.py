"""Formats: Accept and `_format` negotiation, request Content-Type.

https://hl7.org/fhir/R4/http.html#mime-type. This server speaks JSON only.
"""

from __future__ import annotations

from uuid import uuid4

import httpx
import orjson
import pytest

from tests.fhir_server.helpers import (
    FHIR,
    PATCH,
    assert_outcome,
    create,
    history_count,
    last_write,
)
from tests.support import TLS

FHIR_UTF8 = "application/fhir+json; charset=utf-8"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.fixture(scope="module")
def shared_patient(server) -> str:
    """One Patient for the read-only negotiation tests."""
    with httpx.Client(
        base_url=server.url + "/fhir", verify=TLS, timeout=30, auth=server.auth()
    ) as c:
        return f"/Patient/{create(c, {'resourceType': 'Patient', 'active': True})['id']}"


@pytest.fixture
def patient_url(client) -> str:
    """A Patient of the test's own (it may be changed)."""
    return f"/Patient/{create(client, {'resourceType': 'Patient', 'active': True})['id']}"


@pytest.mark.parametrize(
    ("accept", "fmt", "expected"),
    [
        (None, None, FHIR_UTF8),
        ("application/fhir+json", None, FHIR_UTF8),
        ("application/fhir+json; fhirVersion=4.0", None, FHIR_UTF8),
        ("application/json", None, "application/json"),
        ("*/*", None, FHIR_UTF8),
        ("application/*", None, FHIR_UTF8),
        (BROWSER, None, FHIR_UTF8),
        ("application/fhir+xml;q=0.9, application/fhir+json", None, FHIR_UTF8),
        (None, "json", FHIR_UTF8),
        (None, "application/fhir+json", FHIR_UTF8),
        (None, "application/json", "application/json"),
        ("application/fhir+xml", "json", FHIR_UTF8),  # _format overrides Accept
    ],
)
@pytest.mark.parametrize("path", ["/metadata", "patient"])
def test_json_is_negotiated(client, shared_patient, path, accept, fmt, expected):
    url = shared_patient if path == "patient" else path
    r = client.get(
        url,
        params={"_format": fmt} if fmt else None,
        headers={"Accept": accept} if accept else None,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == expected
    assert r.json()["resourceType"] in {"CapabilityStatement", "Patient"}


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        ("application/fhir+xml", None),
        ("application/xml", None),
        ("text/xml", None),
        ("text/html", None),
        ("text/turtle", None),
        ("application/fhir+json;q=0, application/fhir+xml", None),
        (None, "xml"),
        (None, "application/fhir+xml"),
        (None, "text/xml"),
        (None, "html"),
        (None, "ttl"),
        ("application/fhir+json", "xml"),  # _format overrides Accept
    ],
)
@pytest.mark.parametrize("path", ["/metadata", "patient", "/Patient/does-not-exist"])
def test_other_formats_are_406_json_only(client, shared_patient, path, accept, fmt):
    url = shared_patient if path == "patient" else path
    r = client.get(
        url,
        params={"_format": fmt} if fmt else None,
        headers={"Accept": accept} if accept else None,
    )
    assert_outcome(r, 406, "JSON only", code="not-supported")
    assert r.headers["content-type"] == FHIR_UTF8


def test_write_answers_in_the_negotiated_format(client):
    r = client.post(
        "/Patient",
        content=b'{"resourceType":"Patient"}',
        headers={"Content-Type": FHIR, "Accept": "application/json"},
    )
    assert r.status_code == 201
    assert r.headers["content-type"] == "application/json"
    r = client.post(
        "/Patient",
        content=b'{"resourceType":"Patient"}',
        headers={"Content-Type": FHIR, "Accept": "application/fhir+xml"},
    )
    assert_outcome(r, 406, "JSON only")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/fhir+json",
        "application/fhir+json; charset=utf-8",
        "application/fhir+json; charset=UTF-8",
        'application/fhir+json; charset="utf-8"',
        "application/fhir+json; fhirVersion=4.0",
        "application/json",
        "application/json; charset=utf-8",
        "Application/FHIR+JSON",
    ],
)
def test_json_request_bodies_are_accepted(client, content_type):
    body = orjson.dumps({"resourceType": "Patient", "gender": "other"})
    r = client.post("/Patient", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 201, r.text
    assert r.json()["gender"] == "other"


def test_request_body_without_content_type_is_read_as_json(client):
    r = client.post("/Patient", content=b'{"resourceType":"Patient"}')
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("content_type", "fragment"),
    [
        ("application/fhir+xml", "application/fhir+xml"),
        ("application/xml", "application/xml"),
        ("text/xml", "text/xml"),
        ("text/plain", "text/plain"),
        ("application/x-www-form-urlencoded", "form-urlencoded"),
        ("multipart/form-data; boundary=x", "multipart/form-data"),
        ("application/json-patch+json", "json-patch"),
        ("application/fhir+json; charset=iso-8859-1", "UTF-8"),
        ("application/fhir+json; charset=utf-16", "UTF-8"),
        ("application/json; charset=latin1", "UTF-8"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_other_request_content_types_are_415(client, method, content_type, fragment):
    rid = uuid4().hex
    body = orjson.dumps({"resourceType": "Patient", "id": rid})
    url = "/Patient" if method == "POST" else f"/Patient/{rid}"
    before = last_write(client)
    r = client.request(method, url, content=body, headers={"Content-Type": content_type})
    assert_outcome(r, 415, fragment, code="not-supported")
    assert client.get(f"/Patient/{rid}").status_code == 404, "nothing was written"
    assert last_write(client) == before, "nothing was written"


@pytest.mark.parametrize(
    "content_type",
    [FHIR, "application/json", "text/plain", "application/json-patch+json; charset=latin1"],
)
def test_patch_needs_json_patch_in_utf8(client, patient_url, content_type):
    ops = orjson.dumps([{"op": "replace", "path": "/active", "value": False}])
    r = client.patch(patient_url, content=ops, headers={"Content-Type": content_type})
    assert_outcome(r, 415, code="not-supported")
    assert history_count(client, patient_url) == 1
    ok = client.patch(patient_url, content=ops, headers={"Content-Type": f"{PATCH}; charset=utf-8"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["active"] is False
