"""Enforcement in the FHIR API: bearer tokens, scopes, patient context and delegation on every path.

Tokens are signed with the server's own keys (`Server.token`), as its token endpoint issues them;
the flows that issue them are tested in tests/smart_auth.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass

import httpx
import orjson
import pytest

from tests.fhir_server.helpers import FHIR, assert_outcome, put
from tests.support import TLS, Server, mint_token

LAB = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
        }
    ]
}
VITAL = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}


@dataclass
class World:
    p: str  # the token's patient
    q: str  # someone else
    p_lab: str
    p_vital: str
    q_lab: str
    practitioner: str
    related: str  # RelatedPerson acting for p under a Consent
    consent: str


def observation(oid: str, pid: str, category: dict, practitioner: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [category],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "performer": [{"reference": f"Practitioner/{practitioner}"}],
        "effectiveDateTime": "2024-05-01",
        "identifier": [{"system": "urn:test", "value": oid}],
    }


def consent(cid: str, pid: str, actor: str, status: str = "active") -> dict:
    return {
        "resourceType": "Consent",
        "id": cid,
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{pid}"},
        "provision": {
            "type": "permit",
            "period": {"start": "2020-01-01"},
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                                "code": "GUARD",
                            }
                        ]
                    },
                    "reference": {"reference": actor},
                }
            ],
            "action": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                            "code": "access",
                        }
                    ]
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def world(server: Server) -> World:
    tag = uuid.uuid4().hex[:8]
    w = World(
        p=f"p-{tag}",
        q=f"q-{tag}",
        p_lab=f"pl-{tag}",
        p_vital=f"pv-{tag}",
        q_lab=f"ql-{tag}",
        practitioner=f"dr-{tag}",
        related=f"rp-{tag}",
        consent=f"c-{tag}",
    )
    with httpx.Client(base_url=server.url + "/fhir", auth=server.auth(), timeout=30) as c:
        for pid, born in ((w.p, "2015-03-01"), (w.q, "1980-01-01")):
            put(c, {"resourceType": "Patient", "id": pid, "birthDate": born})
        put(c, {"resourceType": "Practitioner", "id": w.practitioner})
        put(c, observation(w.p_lab, w.p, LAB, w.practitioner))
        put(c, observation(w.p_vital, w.p, VITAL, w.practitioner))
        put(c, observation(w.q_lab, w.q, LAB, w.practitioner))
        put(
            c,
            {
                "resourceType": "RelatedPerson",
                "id": w.related,
                "patient": {"reference": f"Patient/{w.p}"},
            },
        )
        put(c, consent(w.consent, w.p, f"RelatedPerson/{w.related}"))
    return w


def as_(server: Server, scope: str, **context: str | None) -> httpx.Client:
    token = server.token(scope, **context)
    return httpx.Client(
        base_url=server.url + "/fhir",
        headers={"Authorization": f"Bearer {token}", "Accept": FHIR},
        timeout=30,
        verify=TLS,
    )


def ids(bundle: dict) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if "resource" in e}


# -- the front door ---------------------------------------------------------------------------


def test_no_token_is_401_with_a_bearer_challenge(server):
    r = httpx.get(server.url + "/fhir/Patient", timeout=10)
    assert_outcome(r, 401, code="login")
    assert r.headers["www-authenticate"].startswith("Bearer ")
    assert "error=" not in r.headers["www-authenticate"]  # RFC 6750 3.1: no error without a token


@pytest.mark.parametrize(
    "header",
    [
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer " + "x" * 9000,
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ünïcode".encode(),
    ],
)
def test_bad_tokens_are_401(server, header):
    r = httpx.get(server.url + "/fhir/Patient", headers={"Authorization": header}, timeout=10)
    assert r.status_code in (400, 401), r.text
    assert_outcome(r, r.status_code)
    assert "error=" in r.headers["www-authenticate"]


def test_token_in_the_url_is_refused(server):
    token = server.token("system/*.rs")
    r = httpx.get(server.url + "/fhir/Patient", params={"access_token": token}, timeout=10)
    assert r.status_code == 400
    assert 'error="invalid_request"' in r.headers["www-authenticate"]
    # even alongside a valid header: the URL must not carry it
    r = httpx.get(
        server.url + "/fhir/Patient",
        params={"access_token": token},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 400


def test_expired_and_foreign_audience_tokens_are_401(server, database):
    expired = mint_token(database.uri, "phr_test", server.port, "system/*.rs", lifetime=-120)
    r = httpx.get(
        server.url + "/fhir/Patient", headers={"Authorization": f"Bearer {expired}"}, timeout=10
    )
    assert_outcome(r, 401)
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    other = mint_token(database.uri, "phr_test", server.port + 1, "system/*.rs")
    r = httpx.get(
        server.url + "/fhir/Patient", headers={"Authorization": f"Bearer {other}"}, timeout=10
    )
    assert_outcome(r, 401)


def test_a_forged_signature_is_401(server):
    token = server.token("system/*.rs")
    header, payload, _ = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "system/*.cruds"
    forged_payload = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    forged = f"{header}.{forged_payload}.{token.split('.')[2]}"
    r = httpx.get(
        server.url + "/fhir/Patient", headers={"Authorization": f"Bearer {forged}"}, timeout=10
    )
    assert_outcome(r, 401)


def test_revoked_token_stops_working_within_a_second(server):
    backend = server.auth().client
    token = httpx.post(
        backend.token_url,
        data={"grant_type": "client_credentials", "scope": "system/*.rs"},
        auth=(backend.client_id, backend.secret),
        timeout=10,
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(server.url + "/fhir/Patient", headers=headers, timeout=10).status_code == 200
    revoked = httpx.post(
        server.url + "/auth/revoke",
        data={"token": token},
        auth=(backend.client_id, backend.secret),
        timeout=10,
    )
    assert revoked.status_code == 200
    time.sleep(1.1)
    assert httpx.get(server.url + "/fhir/Patient", headers=headers, timeout=10).status_code == 401


def test_discovery_and_metadata_need_no_token(server):
    smart = httpx.get(
        server.url + "/fhir/.well-known/smart-configuration",
        headers={"Accept": "text/html"},
        timeout=10,
    )
    assert smart.status_code == 200
    assert smart.headers["content-type"].startswith("application/json")
    assert smart.json()["token_endpoint"] == server_public(server) + "/auth/token"
    meta = httpx.get(server.url + "/fhir/metadata", timeout=10)
    assert meta.status_code == 200
    security = meta.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    (oauth,) = security["extension"]
    uris = {e["url"]: e["valueUri"] for e in oauth["extension"]}
    assert uris["token"] == smart.json()["token_endpoint"]
    assert uris.get("authorize") == smart.json().get("authorization_endpoint")


def server_public(server: Server) -> str:
    return f"http://localhost:{server.port}"


def test_cors_preflight_lists_authorization_and_responses_allow_any_origin(server):
    r = httpx.options(
        server.url + "/fhir/Patient",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
        timeout=10,
    )
    assert r.status_code == 204
    assert "Authorization" in r.headers["access-control-allow-headers"]
    assert r.headers["access-control-allow-origin"] == "*"
    r = httpx.get(server.url + "/fhir/metadata", headers={"Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    r = httpx.get(server.url + "/fhir/Patient", headers={"Origin": "https://app.example"})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "*"


# -- patient context ----------------------------------------------------------------------------


def test_patient_token_reads_its_own_record_and_nothing_else(server, world):
    with as_(server, "patient/*.rs", patient=world.p) as c:
        assert c.get(f"/Patient/{world.p}").status_code == 200
        assert c.get(f"/Observation/{world.p_lab}").status_code == 200
        hidden = c.get(f"/Observation/{world.q_lab}")
        missing = c.get(f"/Observation/nothing-{uuid.uuid4().hex}")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"]
        assert c.get(f"/Patient/{world.q}").status_code == 404
        assert c.get(f"/Observation/{world.q_lab}/_history/1").status_code == 404
        assert c.get(f"/Observation/{world.q_lab}/_history").status_code == 404
        # shared resources (no patient compartment) are readable in patient context
        assert c.get(f"/Practitioner/{world.practitioner}").status_code == 200


def test_patient_token_searches_are_narrowed_to_its_patient(server, world):
    with as_(server, "patient/*.rs", patient=world.p) as c:
        found = c.get("/Observation", params={"code": "2339-0"}).json()
        assert {world.p_lab, world.p_vital} <= ids(found) and world.q_lab not in ids(found)
        assert found["total"] == len(found["entry"])
        assert ids(c.get("/Patient").json()) == {world.p}
        assert ids(c.get("/Patient", params={"_id": world.p}).json()) == {world.p}
        for params in (
            {"patient": world.q},
            {"subject": f"Patient/{world.q}"},
            {"patient": f"Patient/{world.q}"},
        ):
            assert_outcome(c.get("/Observation", params=params), 403, code="forbidden")
        assert_outcome(c.get("/Patient", params={"_id": world.q}), 403)
        revinclude = c.get(
            "/Practitioner",
            params={"_id": world.practitioner, "_revinclude": "Observation:performer"},
        ).json()
        assert {world.practitioner, world.p_lab, world.p_vital} <= ids(revinclude)
        assert world.q_lab not in ids(revinclude)
        history = c.get("/Observation/_history", params={"_count": 1000}).json()
        subjects = {e["resource"]["subject"]["reference"] for e in history.get("entry", [])}
        assert subjects == {f"Patient/{world.p}"}


def test_patient_everything_is_confined(server, world):
    with as_(server, "patient/*.rs", patient=world.p) as c:
        everything = c.get(f"/Patient/{world.p}/$everything").json()
        assert {world.p, world.p_lab, world.p_vital} <= ids(everything)
        assert world.q_lab not in ids(everything)
        assert ids(c.get("/Patient/$everything").json()) == ids(everything)
        assert c.get(f"/Patient/{world.q}/$everything").status_code == 404
    with as_(server, "system/*.rs") as c:
        assert_outcome(c.get("/Patient/$everything"), 400, code="required")


def test_scopes_without_the_type_are_403_or_404(server, world):
    with as_(server, "patient/Patient.rs", patient=world.p) as c:
        r = c.get("/Observation")
        assert_outcome(r, 403, code="forbidden")
        assert "insufficient_scope" in r.headers["www-authenticate"]
        assert c.get(f"/Observation/{world.p_lab}").status_code == 404
        assert c.get(f"/Patient/{world.p}").status_code == 200


def test_v1_scopes_work_like_v2(server, world):
    with as_(server, "patient/*.read", patient=world.p) as c:
        found = ids(c.get("/Observation").json())
        assert {world.p_lab, world.p_vital} <= found and world.q_lab not in found
        r = c.post("/Observation", json=observation("x", world.p, LAB, world.practitioner))
        assert_outcome(r, 403)


def test_granular_scope_filters_reads_and_searches(server, world):
    scope = "patient/Observation.rs?category=laboratory patient/Patient.rs"
    with as_(server, scope, patient=world.p) as c:
        labs = c.get("/Observation").json()
        assert world.p_lab in ids(labs) and not {world.p_vital, world.q_lab} & ids(labs)
        assert {e["resource"]["category"][0]["coding"][0]["code"] for e in labs["entry"]} == {
            "laboratory"
        }
        assert c.get(f"/Observation/{world.p_lab}").status_code == 200
        assert c.get(f"/Observation/{world.p_vital}").status_code == 404
    scope = "patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs"
    with as_(server, scope, patient=world.p) as c:
        found = ids(c.get("/Observation").json())
        assert {world.p_lab, world.p_vital} <= found and world.q_lab not in found


def test_read_only_token_cannot_write(server, world):
    with as_(server, "patient/*.rs", patient=world.p) as c:
        r = c.post("/Observation", json=observation("n", world.p, LAB, world.practitioner))
        assert_outcome(r, 403)
        assert_outcome(c.delete(f"/Observation/{world.p_lab}"), 403)


def test_patient_writes_stay_in_the_patient_compartment(server, world):
    with as_(server, "patient/*.cruds", patient=world.p) as c:
        mine = c.post("/Observation", json=observation("n", world.p, LAB, world.practitioner))
        assert mine.status_code == 201, mine.text
        oid = mine.json()["id"]
        theirs = c.post("/Observation", json=observation("n", world.q, LAB, world.practitioner))
        assert_outcome(theirs, 403, code="forbidden")
        moved = {**mine.json(), "subject": {"reference": f"Patient/{world.q}"}}
        assert_outcome(c.put(f"/Observation/{oid}", json=moved), 403)
        # another patient's resource: the caller cannot see it, so it is 404 whatever the method
        body = observation(world.q_lab, world.p, LAB, world.practitioner)
        assert c.put(f"/Observation/{world.q_lab}", json=body).status_code == 404
        assert c.delete(f"/Observation/{world.q_lab}").status_code == 404
        patch = [{"op": "replace", "path": "/status", "value": "amended"}]
        headers = {"Content-Type": "application/json-patch+json"}
        assert (
            c.patch(f"/Observation/{world.q_lab}", json=patch, headers=headers).status_code == 404
        )
        assert c.patch(f"/Observation/{oid}", json=patch, headers=headers).status_code == 200
        # a new Patient is not this patient's record
        assert_outcome(c.post("/Patient", json={"resourceType": "Patient"}), 403)
        assert c.delete(f"/Observation/{oid}").status_code == 204
    with as_(server, "system/*.rs") as c:
        assert c.get(f"/Observation/{world.q_lab}").json()["subject"]["reference"] == (
            f"Patient/{world.q}"
        )


def test_conditional_writes_never_match_another_patients_resources(server, world):
    with as_(server, "patient/*.cruds", patient=world.p) as c:
        body = observation("c", world.p, LAB, world.practitioner)
        r = c.post(
            "/Observation",
            json=body,
            headers={"If-None-Exist": f"identifier=urn:test|{world.q_lab}"},
        )
        assert r.status_code == 201  # the other patient's match is invisible: a new resource
        assert r.json()["subject"]["reference"] == f"Patient/{world.p}"
        gone = c.delete("/Observation", params={"identifier": f"urn:test|{world.q_lab}"})
        assert gone.status_code == 404
    with as_(server, "system/*.rs") as c:
        assert c.get(f"/Observation/{world.q_lab}").status_code == 200


def test_transaction_entries_are_checked_and_nothing_is_written_on_a_refusal(server, world):
    marker = uuid.uuid4().hex
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": observation(f"t1-{marker}", world.p, LAB, world.practitioner),
            "request": {"method": "PUT", "url": f"Observation/t1-{marker}"},
        },
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": observation(f"t2-{marker}", world.q, LAB, world.practitioner),
            "request": {"method": "PUT", "url": f"Observation/t2-{marker}"},
        },
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    with as_(server, "patient/*.cruds", patient=world.p) as c:
        r = c.post("", json=bundle)
        assert_outcome(r, 403, "Bundle.entry[1]")
        assert c.get(f"/Observation/t1-{marker}").status_code == 404
        batch = c.post("", json={**bundle, "type": "batch"}).json()
        statuses = [e["response"]["status"] for e in batch["entry"]]
        assert statuses[0].startswith("201") and statuses[1].startswith("403")
        assert c.get(f"/Observation/t1-{marker}").status_code == 200
    with as_(server, "system/*.rs") as c:
        assert c.get(f"/Observation/t2-{marker}").status_code == 404


def test_transaction_conditional_reference_cannot_reach_another_patient(server, world):
    entry = {
        "resource": {
            **observation(f"cr-{uuid.uuid4().hex}", world.p, LAB, world.practitioner),
            "subject": {"reference": f"Patient?_id={world.q}"},
        },
        "request": {"method": "POST", "url": "Observation"},
    }
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    with as_(server, "patient/*.cruds", patient=world.p) as c:
        r = c.post("", json=bundle)
        assert r.status_code in (403, 404), r.text


# -- delegation -------------------------------------------------------------------------------


def test_related_person_acts_under_consent_and_loses_access_when_it_is_revoked(server, world):
    actor = f"RelatedPerson/{world.related}"
    with as_(server, "user/*.rs", fhir_user=actor) as c:
        assert c.get(f"/Observation/{world.p_lab}").status_code == 200
        assert c.get(f"/Observation/{world.q_lab}").status_code == 404
        found = ids(c.get("/Observation", params={"patient": world.p}).json())
        assert {world.p_lab, world.p_vital} <= found and world.q_lab not in found
        assert_outcome(c.get("/Observation", params={"patient": world.q}), 403)
        with httpx.Client(base_url=server.url + "/fhir", auth=server.auth(), timeout=30) as admin:
            revoked = consent(world.consent, world.p, actor, status="inactive")
            assert admin.put(f"/Consent/{world.consent}", json=revoked).status_code == 200
            try:
                time.sleep(1.1)  # the Consent cache's staleness bound
                assert c.get(f"/Observation/{world.p_lab}").status_code == 404
            finally:
                restored = consent(world.consent, world.p, actor)
                assert admin.put(f"/Consent/{world.consent}", json=restored).status_code == 200
        time.sleep(1.1)
        assert c.get(f"/Observation/{world.p_lab}").status_code == 200


def test_unrelated_person_sees_nothing(server, world):
    with as_(server, "user/*.rs", fhir_user=f"RelatedPerson/nobody-{uuid.uuid4().hex}") as c:
        assert c.get(f"/Observation/{world.p_lab}").status_code == 404
        assert_outcome(c.get("/Observation"), 403)


# -- catalogue cases (../shared/reference/security-catalogue.md, TU and PC) ---------------------


def test_pc02_pc03_every_spelling_of_another_patient_is_403(server, world, fhir_base):
    spellings = [
        [("patient", world.q)],
        [("patient", f"Patient/{world.q}")],
        [("patient", f"{fhir_base}/Patient/{world.q}")],
        [("subject:Patient", world.q)],
        [("patient", f"Patient/{world.q}/_history/1")],
        [("patient", f"{world.p},{world.q}")],  # OR
        [("patient", world.p), ("patient", world.q)],  # AND
    ]
    with as_(server, "patient/*.rs", patient=world.p) as c:
        for params in spellings:
            assert_outcome(c.get("/Observation", params=params), 403, code="forbidden")
        assert_outcome(
            c.get("/Patient", params={"_id": world.q, "_revinclude": "*"}), 403, code="forbidden"
        )
        # a chain or reverse chain cannot reach past the patient
        chained = ids(
            c.get("/Observation", params={"subject:Patient.birthdate": "1980-01-01"}).json()
        )
        assert not chained
        assert ids(
            c.get("/Patient", params={"_has:Observation:patient:code": "2339-0"}).json()
        ) <= {world.p}


def test_tu07_writes_without_the_letter_are_insufficient_scope(server, world):
    with as_(server, "patient/Observation.rs", patient=world.p) as c:
        r = c.post("/Observation", json=observation("n", world.p, LAB, world.practitioner))
        assert_outcome(r, 403)
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_tu08_pc11_system_history_needs_a_system_scope(server, world):
    with as_(server, "patient/*.cruds", patient=world.p) as c:
        assert_outcome(c.get("/_history"), 403)
        assert_outcome(c.delete("/Observation", params={"code": "nothing"}), 404)
    with as_(server, "patient/*.rs", patient=world.p) as c:
        assert_outcome(c.delete("/Observation", params={"code": "2339-0"}), 403)
    with as_(server, "system/*.rs") as c:
        assert c.get("/_history", params={"_count": 1}).status_code == 200


def test_pc12_a_version_from_another_patients_era_is_not_shown(server, world):
    oid = f"moved-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url + "/fhir", auth=server.auth(), timeout=30) as admin:
        put(admin, observation(oid, world.q, LAB, world.practitioner))
        put(admin, observation(oid, world.p, LAB, world.practitioner))  # moved to p
    with as_(server, "patient/*.rs", patient=world.p) as c:
        assert c.get(f"/Observation/{oid}").status_code == 200
        assert c.get(f"/Observation/{oid}/_history/1").status_code == 404
        history = c.get(f"/Observation/{oid}/_history").json()
        assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2"]


def test_pc13_a_cursor_does_not_carry_permission(server, world):
    with as_(server, "patient/*.rs", patient=world.p) as c:
        first = c.get("/Observation", params={"_count": 1}).json()
        next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    with as_(server, "patient/*.rs", patient=world.q) as c:
        page = c.get(next_url).json()
        assert all(
            e["resource"]["subject"]["reference"] == f"Patient/{world.q}"
            for e in page.get("entry", [])
        )


def test_pc21_binary_follows_its_security_context(server, world):
    tag = uuid.uuid4().hex[:8]
    data = base64.b64encode(b"report").decode()
    with httpx.Client(base_url=server.url + "/fhir", auth=server.auth(), timeout=30) as admin:
        for bid, context in ((f"bp-{tag}", world.p), (f"bq-{tag}", world.q)):
            put(
                admin,
                {
                    "resourceType": "Binary",
                    "id": bid,
                    "contentType": "text/plain",
                    "securityContext": {"reference": f"Patient/{context}"},
                    "data": data,
                },
            )
        put(admin, {"resourceType": "Binary", "id": f"bn-{tag}", "contentType": "text/plain"})
    with as_(server, "patient/*.rs", patient=world.p) as c:
        assert c.get(f"/Binary/bp-{tag}").status_code == 200
        assert c.get(f"/Binary/bq-{tag}").status_code == 404
        assert c.get(f"/Binary/bn-{tag}").status_code == 404


def test_pc22_summary_and_elements_do_not_change_the_answer(server, world):
    with as_(server, "patient/*.rs", patient=world.p) as c:
        for params in ({"_summary": "true"}, {"_elements": "status"}, {"_summary": "count"}):
            assert_outcome(c.get("/Observation", params={**params, "patient": world.q}), 403)
        summary = c.get("/Observation", params={"_summary": "true", "_count": 1000}).json()
        assert world.q_lab not in ids(summary)


def test_tu06_a_code_or_refresh_token_is_not_a_bearer_token(server):
    for value in ("r3fr35h-t0k3n-valu3", "c0de." + "a" * 40):
        r = httpx.get(
            server.url + "/fhir/Patient", headers={"Authorization": f"Bearer {value}"}, timeout=10
        )
        assert_outcome(r, 401)


def test_dl05_the_related_person_must_be_current_and_the_patients(server, world):
    actor = f"RelatedPerson/{world.related}"
    related = {
        "resourceType": "RelatedPerson",
        "id": world.related,
        "patient": {"reference": f"Patient/{world.p}"},
    }
    admin = httpx.Client(base_url=server.url + "/fhir", auth=server.auth(), timeout=30)
    with admin, as_(server, "user/*.rs", fhir_user=actor) as c:
        assert c.get(f"/Observation/{world.p_lab}").status_code == 200
        for changed in (
            {**related, "active": False},
            {**related, "period": {"end": "2021-01-01"}},
            {**related, "patient": {"reference": f"Patient/{world.q}"}},  # links disagree
        ):
            try:
                assert admin.put(f"/RelatedPerson/{world.related}", json=changed).is_success
                time.sleep(1.1)
                assert c.get(f"/Observation/{world.p_lab}").status_code == 404, changed
            finally:
                assert admin.put(f"/RelatedPerson/{world.related}", json=related).is_success
        time.sleep(1.1)
        assert c.get(f"/Observation/{world.p_lab}").status_code == 200


def test_dl08_a_delegate_cannot_rewrite_its_own_delegation(server, world):
    actor = f"RelatedPerson/{world.related}"
    with as_(server, "patient/*.cruds", patient=world.p, fhir_user=actor) as c:
        current = c.get(f"/Consent/{world.consent}")
        assert current.status_code == 200
        extended = {**current.json(), "status": "active"}
        extended["provision"]["period"] = {"start": "2000-01-01"}
        assert_outcome(c.put(f"/Consent/{world.consent}", json=extended), 403)
        assert_outcome(c.post("/Consent", json=consent("new", world.p, actor)), 403)
        moved = {
            "resourceType": "RelatedPerson",
            "id": world.related,
            "patient": {"reference": f"Patient/{world.q}"},
        }
        assert_outcome(c.put(f"/RelatedPerson/{world.related}", json=moved), 403)
