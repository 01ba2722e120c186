"""History at instance, type and system level: https://hl7.org/fhir/R4/http.html#history.

Tests share one database, so each one writes its own resource type (one no other test file
uses) and reads history `_since` its own start.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from tests.fhir_server.helpers import PATCH, assert_outcome, create, instant_now, put


def entries(bundle: dict) -> list[dict]:
    return bundle.get("entry", [])


def key(entry: dict) -> str:
    """`Type/id/version` of a history entry (deleted versions have no resource)."""
    _, rtype, rid = entry["fullUrl"].rsplit("/", 2)
    etag = entry["response"]["etag"]
    assert etag.startswith('W/"') and etag.endswith('"'), etag
    return f"{rtype}/{rid}/{etag[3:-1]}"


def link(bundle: dict, relation: str) -> str | None:
    return next((li["url"] for li in bundle["link"] if li["relation"] == relation), None)


def all_pages(
    client: httpx.Client, fhir_base: str, path: str, between=None, **params
) -> list[dict]:
    """Follow `next` links until exhausted; `between(page_entries)` runs after each page."""
    r = client.get(path, params=params)
    pages = []
    while True:
        assert r.status_code == 200, r.text
        bundle = r.json()
        assert bundle["type"] == "history"
        pages.append(entries(bundle))
        if between is not None:
            between(entries(bundle))
        nxt = link(bundle, "next")
        if nxt is None:
            return [e for page in pages for e in page]
        assert nxt.startswith(fhir_base + "/"), nxt
        assert len(pages) < 500, "paging does not end"
        r = client.get(nxt[len(fhir_base) :])


def last_modified(entry: dict) -> str:
    return entry["response"]["lastModified"]


def test_instance_history_lists_every_version_newest_first(client, fhir_base):
    rtype = "EnrollmentRequest"
    first = create(client, {"resourceType": rtype, "status": "active"})
    rid = first["id"]
    writes = [(first["meta"], "POST", rtype, "201 Created")]
    second = put(client, {**first, "status": "cancelled"}, **{"If-Match": 'W/"1"'})
    assert second.status_code == 200, second.text
    writes.append((second.json()["meta"], "PUT", f"{rtype}/{rid}", "200 OK"))
    third = client.patch(
        f"/{rtype}/{rid}",
        content=orjson.dumps([{"op": "replace", "path": "/status", "value": "draft"}]),
        headers={"Content-Type": PATCH},
    )
    assert third.status_code == 200, third.text
    writes.append((third.json()["meta"], "PATCH", f"{rtype}/{rid}", "200 OK"))
    deleted = client.delete(f"/{rtype}/{rid}")
    assert deleted.status_code == 204

    r = client.get(f"/{rtype}/{rid}/_history")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "history"
    assert bundle["total"] == 4
    assert link(bundle, "self").startswith(f"{fhir_base}/{rtype}/{rid}/_history")
    got = entries(bundle)
    assert [e["response"]["etag"] for e in got] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    assert all(e["fullUrl"] == f"{fhir_base}/{rtype}/{rid}" for e in got)

    tombstone = got[0]
    assert "resource" not in tombstone, "a deleted version is an entry without a resource"
    assert tombstone["request"] == {"method": "DELETE", "url": f"{rtype}/{rid}"}
    assert tombstone["response"]["status"].startswith("204")
    deleted_at = parsedate_to_datetime(deleted.headers["last-modified"])
    assert tombstone["response"]["lastModified"][:19] == deleted_at.strftime("%Y-%m-%dT%H:%M:%S")

    for entry, (meta, method, url, status) in zip(got[1:], reversed(writes), strict=True):
        assert entry["request"] == {"method": method, "url": url}
        assert entry["response"]["status"] == status
        assert entry["response"]["lastModified"] == meta["lastUpdated"]
        assert entry["resource"]["meta"] == meta
        assert entry["resource"]["id"] == rid
    assert [e["resource"]["status"] for e in got[1:]] == ["draft", "cancelled", "active"]
    assert got[0]["response"]["lastModified"] >= got[1]["response"]["lastModified"]


def test_history_status_of_recreating_update_is_201(client):
    rid = create(client, {"resourceType": "EnrollmentRequest"})["id"]
    assert client.delete(f"/EnrollmentRequest/{rid}").status_code == 204
    again = put(client, {"resourceType": "EnrollmentRequest", "id": rid})
    assert again.status_code == 201
    newest = entries(client.get(f"/EnrollmentRequest/{rid}/_history").json())[0]
    assert newest["response"]["status"] == "201 Created"


def test_instance_history_of_unknown_resource_is_404(client):
    assert_outcome(client.get("/EnrollmentRequest/never-was/_history"), 404, code="not-found")
    assert_outcome(client.get("/NotAType/x/_history"), 404, "Unknown resource type")


def test_type_and_system_history(client, fhir_base):
    since = instant_now()
    a = create(client, {"resourceType": "EnrollmentResponse", "status": "active"})
    b = create(client, {"resourceType": "SupplyDelivery", "status": "in-progress"})
    put(client, {**a, "status": "cancelled"})
    client.delete(f"/SupplyDelivery/{b['id']}")

    by_type = client.get("/EnrollmentResponse/_history", params={"_since": since}).json()
    assert [key(e) for e in entries(by_type)] == [
        f"EnrollmentResponse/{a['id']}/2",
        f"EnrollmentResponse/{a['id']}/1",
    ]
    assert link(by_type, "self").startswith(f"{fhir_base}/EnrollmentResponse/_history?")

    system = client.get("/_history", params={"_since": since}).json()
    assert system["type"] == "history"
    assert link(system, "self").startswith(f"{fhir_base}/_history?")
    mine = {f"EnrollmentResponse/{a['id']}", f"SupplyDelivery/{b['id']}"}
    got = [key(e) for e in entries(system) if key(e).rsplit("/", 1)[0] in mine]
    written = [  # newest first
        f"SupplyDelivery/{b['id']}/2",
        f"EnrollmentResponse/{a['id']}/2",
        f"SupplyDelivery/{b['id']}/1",
        f"EnrollmentResponse/{a['id']}/1",
    ]
    stamps = [last_modified(e) for e in entries(system)]
    if len(set(stamps)) == len(stamps):  # else two writes shared a millisecond: any order
        assert got == written
    assert sorted(got) == sorted(written)
    assert stamps == sorted(stamps, reverse=True), "newest first"
    assert all(s >= since for s in stamps), "_since is respected"
    assert "resource" not in entries(system)[0]
    assert entries(system)[0]["request"]["method"] == "DELETE"


def test_count_and_since(client):
    rtype = "EnrollmentResponse"
    resource = create(client, {"resourceType": rtype})
    metas = [resource["meta"]]
    for n in range(4):
        r = put(client, {**resource, "status": ["active", "cancelled", "draft", "active"][n]})
        metas.append(r.json()["meta"])
    path = f"/{rtype}/{resource['id']}/_history"

    two = client.get(path, params={"_count": "2"}).json()
    assert [e["response"]["etag"] for e in entries(two)] == ['W/"5"', 'W/"4"']
    nxt = link(two, "next")
    assert nxt is not None
    assert parse_qs(urlsplit(nxt).query)["_count"] == ["2"]

    since = metas[2]["lastUpdated"]
    recent = client.get(path, params={"_since": since}).json()
    versions = [e["response"]["etag"] for e in entries(recent)]
    assert versions[:3] == ['W/"5"', 'W/"4"', 'W/"3"']
    assert all(last_modified(e) >= since for e in entries(recent))
    assert link(recent, "next") is None

    future = client.get(path, params={"_since": "2999-01-01T00:00:00Z"}).json()
    assert entries(future) == []

    capped = client.get("/_history", params={"_count": "100000"}).json()
    assert parse_qs(urlsplit(link(capped, "self")).query)["_count"] == ["1000"]


@pytest.mark.parametrize("level", ["instance", "type", "system"])
def test_since_includes_a_version_stamped_at_that_instant(client, level):
    first = create(client, {"resourceType": "EnrollmentResponse", "status": "draft"})
    second = put(client, {**first, "status": "active"}).json()
    path = {
        "instance": f"/EnrollmentResponse/{first['id']}/_history",
        "type": "/EnrollmentResponse/_history",
        "system": "/_history",
    }[level]
    stamp = second["meta"]["lastUpdated"]  # e.g. 2026-01-01T10:00:00.123Z
    mine = f"EnrollmentResponse/{first['id']}/"

    def versions(since: str) -> list[str]:
        bundle = client.get(path, params={"_since": since, "_count": "1000"}).json()
        return [key(e) for e in entries(bundle) if key(e).startswith(mine)]

    same_ms = first["meta"]["lastUpdated"] == stamp
    assert versions(stamp) == [mine + "2"] + [mine + "1"] * same_ms, "_since is inclusive"
    assert versions(stamp[:-1] + "1Z") == [], "a later sub-millisecond instant excludes it"
    assert versions(first["meta"]["lastUpdated"]) == [mine + "2", mine + "1"]


@pytest.mark.parametrize("count", ["1", "2", "3", "7"])
def test_paging_visits_every_version_once(client, fhir_base, count):
    since = instant_now()
    resources = [create(client, {"resourceType": "SupplyDelivery"}) for _ in range(4)]
    for resource in resources[:2]:
        assert put(client, {**resource, "status": "completed"}).status_code == 200
    client.delete(f"/SupplyDelivery/{resources[3]['id']}")
    snapshot = client.get("/SupplyDelivery/_history", params={"_since": since, "_count": "1000"})
    expected = [key(e) for e in entries(snapshot.json())]
    assert len(expected) == 7

    paged = all_pages(client, fhir_base, "/SupplyDelivery/_history", _since=since, _count=count)
    assert [key(e) for e in paged] == expected


def test_paging_is_stable_while_writes_happen(client, fhir_base):
    """Writes between pages neither repeat nor hide versions that existed when paging began."""
    since = instant_now()
    resources = {}
    for _ in range(12):
        r = create(client, {"resourceType": "EnrollmentResponse", "status": "active"})
        resources[r["id"]] = r
    snapshot = client.get("/_history", params={"_since": since, "_count": "1000"}).json()
    expected = [key(e) for e in entries(snapshot)]
    assert len(expected) == 12

    def write(page: list[dict]) -> None:
        for entry in page:  # supersede what was just read, and add something new
            rid = entry["fullUrl"].rsplit("/", 1)[1]
            assert put(client, {**resources[rid], "status": "cancelled"}).status_code == 200
        create(client, {"resourceType": "EnrollmentResponse", "status": "draft"})

    paged = all_pages(client, fhir_base, "/_history", write, _since=since, _count="5")
    assert [key(e) for e in paged] == expected


def test_paging_through_versions_written_in_the_same_millisecond(client, fhir_base):
    """Ties on lastUpdated must keep one order while versions move into the history store."""
    since = instant_now()
    rtype = "SupplyDelivery"

    def burst() -> list[dict]:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda _: create(client, {"resourceType": rtype}), range(24)))

    resources: dict[str, dict] = {}
    for _ in range(20):  # a loaded machine needs more tries to land two in one millisecond
        resources.update({r["id"]: r for r in burst()})
        stamps = [r["meta"]["lastUpdated"] for r in resources.values()]
        if len(set(stamps)) < len(stamps):
            break
    assert len(set(stamps)) < len(stamps), "no two creates landed in the same millisecond"
    snapshot = client.get(f"/{rtype}/_history", params={"_since": since, "_count": "1000"}).json()
    expected = [key(e) for e in entries(snapshot)]
    assert len(expected) == len(resources)

    def supersede(page: list[dict]) -> None:
        for entry in page:
            rid = entry["fullUrl"].rsplit("/", 1)[1]
            assert put(client, {**resources[rid], "status": "completed"}).status_code == 200

    paged = all_pages(client, fhir_base, f"/{rtype}/_history", supersede, _since=since, _count="1")
    got = [key(e) for e in paged]
    assert len(got) == len(set(got)), "no version is listed twice"
    assert got == expected


@pytest.mark.parametrize("path", ["/_history", "/SupplyDelivery/_history"])
@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"_count": "-1"}, "_count"),
        ({"_count": "abc"}, "_count"),
        ({"_count": "1.5"}, "_count"),
        ({"_count": "²"}, "_count"),
        ({"_count": ""}, "_count"),
        ({"_since": "garbage"}, "_since"),
        ({"_since": "2020-13-01"}, "_since"),
        ({"_since": "2020-02-30"}, "_since"),
        ({"_since": "2020-01-01T25:00:00Z"}, "_since"),
        ({"_since": "2020-01-01T10:00:00+99:00"}, "_since"),
        ({"_page": "abc"}, "_page"),
        ({"_page": ""}, "_page"),
        ({"_page": "1.2.3"}, "_page"),
        ({"_page": "999999999999999.999999999"}, "_page"),
        ({"_page": "-5.0"}, "_page"),
        ({"_page": "1700000000000.999999999"}, "_page"),  # would read a billion documents
    ],
)
def test_invalid_history_parameters_are_400(client, path, query, fragment):
    assert_outcome(client.get(path, params=query), 400, fragment, code="invalid")
