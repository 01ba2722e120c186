"""Every request that needs a token is accounted for in the audit trail, allowed or refused, naming
the patients it concerned and never the token; alike requests in one second share a record."""

from __future__ import annotations

import uuid

import httpx
from pymongo import MongoClient

from tests.fhir_server.helpers import put
from tests.fhir_server.test_access import LAB, observation
from tests.support import wait_until


def records(database, **query) -> list[dict]:
    with MongoClient(database.uri) as c:
        return list(c.phr_test.audit.find(query).sort("at", 1))


def by_request(found: list[dict]) -> dict[tuple[str, str | None], dict]:
    """Each recorded request (path, query) -> its record."""
    return {(r["path"], r["query"]): record for record in found for r in record["requests"]}


def test_reads_searches_and_refusals_are_recorded(server, database):
    tag = uuid.uuid4().hex[:8]
    p, q = f"ap-{tag}", f"aq-{tag}"
    with httpx.Client(base_url=server.url + "/fhir", auth=server.auth(), timeout=30) as admin:
        for pid in (p, q):
            put(admin, {"resourceType": "Patient", "id": pid})
            put(admin, observation(f"o-{pid}", pid, LAB, f"dr-{tag}"))
    client_id = f"app-{tag}"
    token = server.token("patient/*.rs", patient=p, client_id=client_id)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url + "/fhir", headers=headers, timeout=30) as c:
        assert c.get(f"/Observation/o-{p}").status_code == 200
        assert c.get(f"/Observation/o-{q}").status_code == 404
        assert c.get("/Observation", params={"patient": q}).status_code == 403
        assert c.get("/Observation", params={"code": "2339-0"}).status_code == 200
    in_url = httpx.get(server.url + "/fhir/Patient", params={"access_token": token, "x": tag})
    assert in_url.status_code == 400

    trail = wait_until(
        lambda: (
            (found := records(database, client=client_id))
            and sum(r["count"] for r in found) >= 4
            and found
        ),
        10,
        what="the audit records",
    )
    by_path = by_request(trail)
    read = by_path[(f"/fhir/Observation/o-{p}", None)]
    assert (read["status"], read["outcome"], read["pat"]) == (200, "success", [p])
    assert read["patient"] == p and read["jti"] and read["ip"]
    assert all(r["request_id"] for record in trail for r in record["requests"])
    hidden = by_path[(f"/fhir/Observation/o-{q}", None)]
    assert (hidden["status"], hidden["outcome"]) == (404, "denied")
    assert q in hidden["pat"], "a refused read names the patient whose data was asked for"
    named = by_path[("/fhir/Observation", f"patient={q}")]
    assert (named["status"], set(named["pat"])) == (403, {p, q})
    search = by_path[("/fhir/Observation", "code=2339-0")]
    assert search["status"] == 200 and search["pat"] == [p]
    # a token sent in the URL is refused and recorded without the token
    refused = wait_until(
        lambda: records(database, **{"requests.query": f"x={tag}"}), 10, what="the 400"
    )
    assert refused[0]["status"] == 400 and token not in str(refused)
    assert all(token not in str(r) for r in trail)


def test_the_patient_index_serves_a_patient_s_trail(server, database):
    with MongoClient(database.uri) as c:
        plan = c.phr_test.audit.find({"pat": "someone"}).sort("at", -1).explain()
    assert "COLLSCAN" not in str(plan["queryPlanner"]["winningPlan"])


def test_alike_requests_share_one_record(server, database):
    tag = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=server.url + "/fhir", auth=server.auth(), timeout=30) as admin:
        put(admin, {"resourceType": "Patient", "id": f"many-{tag}"})
    client_id = f"busy-{tag}"
    token = server.token("patient/*.rs", patient=f"many-{tag}", client_id=client_id)
    with httpx.Client(
        base_url=server.url + "/fhir", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as c:
        for _ in range(30):
            assert c.get(f"/Patient/many-{tag}").status_code == 200
    found = wait_until(
        lambda: (
            (r := records(database, client=client_id)) and sum(x["count"] for x in r) == 30 and r
        ),
        10,
        what="30 reads accounted for",
    )
    assert len(found) <= 3, "30 alike reads in about a second share a record or few"
    assert all(r["pat"] == [f"many-{tag}"] and r["last"] >= r["at"] for r in found)
