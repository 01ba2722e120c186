"""Hostile and malformed input: always a 4xx OperationOutcome naming the problem, never a 500,
and nothing written. https://hl7.org/fhir/R4/json.html, ARCHITECTURE.md item 10."""

from __future__ import annotations

from collections.abc import Iterator
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
    put,
)
from tests.support import TLS, Server

SMALL_LIMIT = 2048


def nested_extension(levels: int) -> bytes:
    """A Patient whose JSON nesting depth is 1 + 2 * levels + 1 (valueCoding innermost)."""
    inner: dict = {"url": "http://example.org/leaf", "valueCoding": {"code": "x"}}
    for _ in range(levels - 1):
        inner = {"url": "http://example.org/branch", "extension": [inner]}
    return orjson.dumps({"resourceType": "Patient", "extension": [inner]})


def patient_with(**elements) -> bytes:
    return orjson.dumps({"resourceType": "Patient", **elements})


# (resource type in the URL, raw body, fragment the diagnostics must contain)
BAD_BODIES = {
    "invalid JSON": ("Patient", b'{"resourceType": "Patient",', "Invalid JSON"),
    "trailing data": ("Patient", b'{"resourceType":"Patient"} {}', "Invalid JSON"),
    "single quotes": ("Patient", b"{'resourceType':'Patient'}", "Invalid JSON"),
    "comment": ("Patient", b'{"resourceType":"Patient"} // note', "Invalid JSON"),
    "byte order mark": ("Patient", b'\xef\xbb\xbf{"resourceType":"Patient"}', "BOM"),
    "empty body": ("Patient", b"", "empty"),
    "blank body": ("Patient", b" \r\n\t ", "empty"),
    "array body": ("Patient", b"[]", "JSON object"),
    "string body": ("Patient", b'"Patient"', "JSON object"),
    "number body": ("Patient", b"42", "JSON object"),
    "null body": ("Patient", b"null", "JSON object"),
    "duplicate key": (
        "Patient",
        b'{"resourceType":"Patient","active":true,"active":false}',
        "Duplicate JSON property 'active'",
    ),
    "nested duplicate key": (
        "Patient",
        b'{"resourceType":"Patient","name":[{"family":"A","family":"B"}]}',
        "Duplicate JSON property 'family'",
    ),
    "NaN": (
        "Patient",
        b'{"resourceType":"Patient","extension":[{"url":"http://x","valueDecimal":NaN}]}',
        "NaN",
    ),
    "Infinity": (
        "Patient",
        b'{"resourceType":"Patient","extension":[{"url":"http://x","valueDecimal":Infinity}]}',
        "Infinity",
    ),
    "-Infinity": (
        "Patient",
        b'{"resourceType":"Patient","extension":[{"url":"http://x","valueDecimal":-Infinity}]}',
        "Infinity",
    ),
    "5000-digit integer": (
        "Patient",
        b'{"resourceType":"Patient","multipleBirthInteger":' + b"9" * 5000 + b"}",
        "Invalid JSON",
    ),
    "nesting over the limit": ("Patient", nested_extension(32), "nesting deeper than 64"),
    "array bomb": ("Patient", b"[" * 100_000 + b"]" * 100_000, "nesting deeper than 64"),
    "object bomb": ("Patient", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nesting deeper"),
    "invalid UTF-8": (
        "Patient",
        b'{"resourceType":"Patient","name":[{"family":"\xff\xfe"}]}',
        "not valid UTF-8",
    ),
    "overlong UTF-8": (
        "Patient",
        b'{"resourceType":"Patient","name":[{"family":"\xc0\xaf"}]}',
        "not valid UTF-8",
    ),
    "lone surrogate": (
        "Patient",
        rb'{"resourceType":"Patient","name":[{"family":"\ud800"}]}',
        "surrogate",
    ),
    "lone surrogate, R4-only type": (
        "MedicinalProduct",
        rb'{"resourceType":"MedicinalProduct","name":[{"productName":"x\udfff"}]}',
        "surrogate",
    ),
    "unknown element": ("Patient", patient_with(favouriteColour="blue"), "Patient.favouriteColour"),
    "unknown nested element": (
        "Patient",
        patient_with(name=[{"family": "A", "nickname": "B"}]),
        "Patient.name[0].nickname",
    ),
    "resourceType missing": ("Patient", b'{"active":true}', "no resourceType"),
    "resourceType not a string": ("Patient", b'{"resourceType":5}', "no resourceType"),
    "resourceType of another type": (
        "Patient",
        b'{"resourceType":"Observation"}',
        "does not match",
    ),
    "boolean as string": ("Patient", patient_with(active="yes"), "Patient.active"),
    "boolean as number": ("Patient", patient_with(active=1), "Patient.active"),
    "null value": ("Patient", patient_with(active=None), "Patient.active: null"),
    "integer as string": (
        "Patient",
        patient_with(multipleBirthInteger="3"),
        "Patient.multipleBirthInteger",
    ),
    "integer with a fraction": (
        "Patient",
        b'{"resourceType":"Patient","multipleBirthInteger":3.0}',
        "Patient.multipleBirthInteger",
    ),
    "date as number": ("Patient", patient_with(birthDate=0), "Patient.birthDate"),
    "dateTime as number": (
        "Patient",
        patient_with(deceasedDateTime=1700000000),
        "Patient.deceasedDateTime",
    ),
    "invalid date": ("Patient", patient_with(birthDate="1980-13-45"), "Patient.birthDate"),
    "code as number": ("Patient", patient_with(gender=5), "Patient.gender"),
    "list as object": ("Patient", patient_with(name={"family": "A"}), "Patient.name"),
    "string as list": ("Patient", patient_with(name=[{"given": "A"}]), "Patient.name[0].given"),
    "decimal as string": (
        "Observation",
        orjson.dumps(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "weight"},
                "valueQuantity": {"value": "72.5"},
            }
        ),
        "Observation.valueQuantity.value",
    ),
    "boolean in a primitive extension": (
        "Patient",
        patient_with(_active={"extension": [{"url": "http://x", "valueBoolean": "true"}]}),
        "valueBoolean",
    ),
    "wrong type in a contained resource": (
        "Patient",
        patient_with(contained=[{"resourceType": "Patient", "active": "no"}]),
        "Patient.contained[0].active",
    ),
    "contained resource of an unknown type": (
        "Patient",
        patient_with(contained=[{"resourceType": "Foo"}]),
        "'Foo' is not an R4 resource type",
    ),
    "contained resource of an R4B-only type": (
        "Patient",
        patient_with(contained=[{"resourceType": "Citation", "status": "active"}]),
        "'Citation' is not an R4 resource type",
    ),
    "operator object as a string": (
        "Patient",
        patient_with(name=[{"family": {"$gt": ""}}]),
        "Patient.name[0].family",
    ),
    "operator object as the id": ("Patient", patient_with(id={"$ne": None}), "Patient.id"),
    "operator object as a reference": (
        "Observation",
        orjson.dumps(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": {"$gt": ""}},
            }
        ),
        "Observation.subject.reference",
    ),
}


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_bodies_are_400_and_write_nothing(client, method, case):
    rtype, body, fragment = BAD_BODIES[case]
    rid = uuid4().hex
    url = f"/{rtype}" if method == "POST" else f"/{rtype}/{rid}"
    before = last_write(client)
    r = client.request(method, url, content=body, headers={"Content-Type": FHIR})
    assert_outcome(r, 400, fragment)
    assert last_write(client) == before, "nothing was written"
    assert client.get(f"/{rtype}/{rid}").status_code == 404


@pytest.mark.parametrize("case", ["duplicate key", "boolean as string", "null value", "NaN"])
def test_bad_update_of_an_existing_resource_keeps_version_1(client, case):
    _, body, fragment = BAD_BODIES[case]
    rid = create(client, {"resourceType": "Patient", "active": True})["id"]
    with_id = body.replace(
        b'"resourceType":"Patient"', f'"resourceType":"Patient","id":"{rid}"'.encode()
    )
    r = client.put(f"/Patient/{rid}", content=with_id, headers={"Content-Type": FHIR})
    assert_outcome(r, 400, fragment)
    assert client.get(f"/Patient/{rid}").json()["meta"]["versionId"] == "1"
    assert history_count(client, f"/Patient/{rid}") == 1


def test_nesting_at_the_limit_is_accepted(client):
    body = nested_extension(31)  # depth exactly 64
    r = client.post("/Patient", content=body, headers={"Content-Type": FHIR})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    "ops",
    [
        b"[" * 100_000 + b"]" * 100_000,
        orjson.dumps([{"op": "add", "path": "/extension", "value": [[[[[[[[[[]]]]]]]]]]}]).replace(
            b"[[[[[[[[[[]]]]]]]]]]", b"[" * 70 + b"]" * 70
        ),
        b'[{"op":"add","path":"/active","value":true,"value":false}]',
        b'[{"op":"replace","path":"/active","value":NaN}]',
        rb'[{"op":"replace","path":"/gender","value":"\udc00"}]',
        b"",
        b"\xff",
    ],
    ids=["bomb", "deep value", "duplicate", "NaN", "surrogate", "empty", "invalid UTF-8"],
)
def test_bad_patch_bodies_are_400_and_write_nothing(client, ops):
    rid = create(client, {"resourceType": "Patient", "active": True})["id"]
    r = client.patch(f"/Patient/{rid}", content=ops, headers={"Content-Type": PATCH})
    assert_outcome(r, 400)
    assert history_count(client, f"/Patient/{rid}") == 1


@pytest.mark.parametrize(
    ("ops", "fragment"),
    [
        ([{"op": "replace", "path": "/active", "value": "yes"}], "Patient.active"),
        ([{"op": "replace", "path": "/active", "value": None}], "Patient.active"),
        ([{"op": "add", "path": "/birthDate", "value": 0}], "Patient.birthDate"),
        ([{"op": "add", "path": "/name", "value": [{"family": {"$gt": ""}}]}], "family"),
    ],
)
def test_patch_results_are_validated_like_bodies(client, ops, fragment):
    rid = create(client, {"resourceType": "Patient", "active": True})["id"]
    r = client.patch(f"/Patient/{rid}", content=orjson.dumps(ops), headers={"Content-Type": PATCH})
    assert_outcome(r, 400, fragment)
    assert history_count(client, f"/Patient/{rid}") == 1


BAD_IDS = ["a$b", "a_b", "a b", "a%00b", "%E2%82%AC", "a" * 65, "abc%0A", "a%2Cb", "%7B%7D"]


@pytest.mark.parametrize("raw_id", BAD_IDS)
def test_bad_ids_in_the_url(client, raw_id):
    before = last_write(client)
    assert_outcome(client.get(f"/Patient/{raw_id}"), 404, "not a valid resource id")
    assert_outcome(client.get(f"/Patient/{raw_id}/_history"), 404, "not a valid resource id")
    assert_outcome(client.get(f"/Patient/{raw_id}/_history/1"), 404, "not a valid resource id")
    assert_outcome(client.delete(f"/Patient/{raw_id}"), 404, "not a valid resource id")
    patch = client.patch(f"/Patient/{raw_id}", content=b"[]", headers={"Content-Type": PATCH})
    assert_outcome(patch, 404, "not a valid resource id")
    body = orjson.dumps({"resourceType": "Patient", "id": httpx.URL(f"/{raw_id}").path[1:]})
    update = client.put(f"/Patient/{raw_id}", content=body, headers={"Content-Type": FHIR})
    assert_outcome(update, 400, "not a valid resource id")
    assert last_write(client) == before, "nothing was written"


def test_an_id_of_64_characters_is_fine(client):
    rid = "x" * 64
    r = put(client, {"resourceType": "Patient", "id": rid})
    assert r.status_code in {200, 201}, r.text
    assert client.get(f"/Patient/{rid}").json()["id"] == rid


@pytest.mark.parametrize(
    "vid",
    [
        "0",
        "-1",
        "1.0",
        "1e3",
        "%C2%B2",
        "%EF%BC%91",
        "9" * 19,
        "99999999999999999999999",
        "9" * 5000,
    ],
)
def test_impossible_versions_are_404(client, vid):
    rid = create(client, {"resourceType": "Patient"})["id"]
    assert_outcome(client.get(f"/Patient/{rid}/_history/{vid}"), 404, code="not-found")


@pytest.mark.parametrize(
    "etag",
    [b'W/"\xb2"', b"\xb9", b"W/" + b"9" * 5000, b'W/"' + b"9" * 19 + b'"', b"W/1.0", b"*x"],
    ids=["superscript", "latin1 digit", "5000 digits", "19 digits", "fraction", "star"],
)
def test_bad_etags_are_400(client, etag):
    resource = create(client, {"resourceType": "Patient"})
    rid = resource["id"]
    r = client.get(f"/Patient/{rid}", headers={"If-None-Match": etag})
    assert_outcome(r, 400, "If-None-Match")
    r = client.put(
        f"/Patient/{rid}",
        content=orjson.dumps(resource),
        headers={"Content-Type": FHIR, "If-Match": etag},
    )
    assert_outcome(r, 400, "If-Match")
    assert history_count(client, f"/Patient/{rid}") == 1


def test_operator_shaped_values_are_stored_as_data(client):
    tricky = ["$gt", '{"$gt": ""}', "$where", "this.a == 1", "a.b", "$", "{$ne: null}", "\u0000"]
    sent = {
        "resourceType": "Patient",
        "name": [{"family": "$ne", "given": tricky}],
        "identifier": [{"system": "urn:$regex", "value": ".*"}],
        "extension": [{"url": "http://example.org/$set", "valueString": '{"$set": {"a": 1}}'}],
    }
    created = create(client, sent)
    for key, value in sent.items():
        assert created[key] == value
    read = client.get(f"/Patient/{created['id']}")
    assert read.json() == created
    assert client.get(f"/Patient/{created['id']}/_history/1").json() == created

    shapeless = {"resourceType": "MedicinalProduct", "name": [{"productName": {"$gt": ""}}]}
    stored = create(client, shapeless)  # R4-only type: checked for shape only, kept as data
    assert stored["name"] == shapeless["name"]
    assert client.get(f"/MedicinalProduct/{stored['id']}").json() == stored


@pytest.mark.parametrize(
    "number",
    [
        b"9223372036854775807",
        b"9223372036854775808",
        b"18446744073709551616",
        b"-9223372036854775809",
        b"1" + b"0" * 60,
        b"1E+400",
        b"-1E-400",
    ],
)
def test_huge_numbers_are_stored_exactly(client, number):
    body = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
        b'"valueQuantity":{"value":' + number + b"}}"
    )
    r = client.post("/Observation", content=body, headers={"Content-Type": FHIR})
    assert r.status_code == 201, r.text
    assert b'"valueQuantity":{"value":' + number + b"}" in r.content
    assert client.get(f"/Observation/{r.json()['id']}").content == r.content
    too_big = patient_with(multipleBirthInteger=0).replace(b"0}", number + b"}")
    assert_outcome(
        client.post("/Patient", content=too_big, headers={"Content-Type": FHIR}),
        400,
        "multipleBirthInteger",
    )


# -- body size ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_server(database, tmp_path_factory) -> Iterator[Server]:
    env = {
        "PHR_MONGODB_URI": database.uri,
        "PHR_DB_NAME": "phr_test",
        "PHR_MAX_BODY_BYTES": str(SMALL_LIMIT),
    }
    srv = Server(env, tmp_path_factory.mktemp("small") / "server.log").start()
    yield srv
    srv.stop()


@pytest.fixture
def small(small_server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=small_server.url + "/fhir", verify=TLS, timeout=30, auth=small_server.auth()
    ) as c:
        yield c


def padded(size: int) -> bytes:
    body = b'{"resourceType":"Patient","active":true}'
    return body[:-1] + b" " * (size - len(body)) + b"}"


def chunks(body: bytes, size: int = 256) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_body_at_the_limit_is_accepted(small):
    r = small.post("/Patient", content=padded(SMALL_LIMIT), headers={"Content-Type": FHIR})
    assert r.status_code == 201, r.text
    streamed = small.post(
        "/Patient", content=chunks(padded(SMALL_LIMIT)), headers={"Content-Type": FHIR}
    )
    assert streamed.status_code == 201, streamed.text


@pytest.mark.parametrize("size", [SMALL_LIMIT + 1, 10 * SMALL_LIMIT])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_body_over_the_limit_is_413(client, small, method, framing, size):
    rid = create(client, {"resourceType": "Patient", "active": True})["id"]
    before = last_write(client)
    body = padded(size)
    url = "/Patient" if method == "POST" else f"/Patient/{rid}"
    content_type = PATCH if method == "PATCH" else FHIR
    r = small.request(
        method,
        url,
        content=body if framing == "content-length" else chunks(body),
        headers={"Content-Type": content_type},
    )
    if framing == "chunked":
        assert "content-length" not in r.request.headers
    assert_outcome(r, 413, f"limit of {SMALL_LIMIT} bytes", code="too-costly")
    assert last_write(client) == before, "nothing was written"
