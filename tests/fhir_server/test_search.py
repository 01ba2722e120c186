"""FHIR search over real HTTP: https://hl7.org/fhir/R4/search.html.

One patient per module keeps these tests independent of everything else in the shared database.
"""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest

from tests.fhir_server.helpers import create, put

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def obs(pid: str, code: str, when: str, value: str | None = None, unit: str = "kg", **extra):
    body = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": f"Test {code}"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        **extra,
    }
    if value is not None:
        body["valueQuantity"] = {"value": float(value), "unit": unit, "system": UCUM, "code": unit}
    return body


@pytest.fixture(scope="module")
def world(server):
    """A patient with a known record, plus a second patient whose data must never leak in."""
    tag = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=server.url + "/fhir", timeout=30, auth=server.auth()) as c:
        pid, other = f"p-{tag}", f"q-{tag}"
        put(
            c,
            {
                "resourceType": "Patient",
                "id": pid,
                "name": [{"family": f"Zoë{tag}", "given": ["Ångström"]}],
                "birthDate": "2012-03-04",
                "gender": "female",
                "identifier": [{"system": "http://hospital/mrn", "value": f"MRN-{tag}"}],
                "telecom": [{"system": "email", "value": f"{tag}@example.org"}],
            },
        )
        put(c, {"resourceType": "Patient", "id": other, "name": [{"family": f"Other{tag}"}]})
        created = {
            "weight-2019": create(c, obs(pid, "29463-7", "2019-06-01T10:00:00Z", "40.5")),
            "weight-2020": create(c, obs(pid, "29463-7", "2020-06-01T10:00:00Z", "45.25")),
            "weight-2021": create(c, obs(pid, "29463-7", "2021-06-01", "50")),
            "height-2020": create(c, obs(pid, "8302-2", "2020-06-01T10:00:00+02:00", "150", "cm")),
            "note": create(
                c, obs(pid, "72166-2", "2020", valueString="Never smoker", status="amended")
            ),
            "other": create(c, obs(other, "29463-7", "2020-06-01T10:00:00Z", "90")),
        }
        enc = create(
            c,
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
                "subject": {"reference": f"Patient/{pid}"},
            },
        )
        created["encounter"] = enc
        yield {
            "pid": pid,
            "other": other,
            "tag": tag,
            "ids": {k: v["id"] for k, v in created.items()},
        }


def ids(bundle: dict, mode: str = "match") -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == mode
    }


def search(client: httpx.Client, query: str, status: int = 200, **headers) -> dict:
    r = client.get(query, headers=headers)
    assert r.status_code == status, r.text
    body = r.json()
    if status == 200:
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return body


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # token: code, system|code, |code (no system), :not, :text
        ("code=29463-7", {"weight-2019", "weight-2020", "weight-2021"}),
        ("code=http://loinc.org|8302-2", {"height-2020"}),
        ("code=http://other|8302-2", set()),
        ("code=|8302-2", set()),
        (
            "code=http://loinc.org|",
            {"weight-2019", "weight-2020", "weight-2021", "height-2020", "note"},
        ),
        ("code=29463-7,8302-2", {"weight-2019", "weight-2020", "weight-2021", "height-2020"}),
        ("code:not=29463-7", {"height-2020", "note"}),
        ("code:text=test 8302", {"height-2020"}),
        ("status=amended", {"note"}),
        ("status:missing=false&code=72166-2", {"note"}),
        # date prefixes and precision
        ("date=2020", {"weight-2020", "height-2020", "note"}),
        ("date=2020-06-01", {"weight-2020", "height-2020"}),
        ("date=eq2020-06-01T08:00:00Z", {"height-2020"}),
        ("date=gt2020-06-01", {"weight-2021", "note"}),
        ("date=ge2020-06-01&code=29463-7", {"weight-2020", "weight-2021"}),
        ("date=lt2020", {"weight-2019"}),
        ("date=le2020-06-01&code=29463-7", {"weight-2019", "weight-2020"}),
        ("date=sa2020-12-31", {"weight-2021"}),
        ("date=eb2020-01-01", {"weight-2019"}),
        ("date=ne2020", {"weight-2019", "weight-2021"}),
        ("date=ge2020&date=lt2021", {"weight-2020", "height-2020", "note"}),
        ("date=ap2021-06-01", {"weight-2021", "note"}),  # note: all of 2020, within 10%
        # quantity and number semantics
        ("value-quantity=50", {"weight-2021"}),
        ("value-quantity=45.25", {"weight-2020"}),
        ("value-quantity=45.2", set()),
        ("value-quantity=gt45.25", {"weight-2021", "height-2020"}),
        ("value-quantity=ge45.25|http://unitsofmeasure.org|kg", {"weight-2020", "weight-2021"}),
        ("value-quantity=lt45||kg", {"weight-2019"}),
        ("value-quantity=le40.5", {"weight-2019"}),
        ("value-quantity=150|http://unitsofmeasure.org|cm", {"height-2020"}),
        ("value-quantity=ne50&code=29463-7", {"weight-2019", "weight-2020"}),
        ("value-quantity=ap48", {"weight-2021", "weight-2020"}),
        # string on the Observation
        ("value-string=never", {"note"}),
        ("value-string:contains=smok", {"note"}),
        ("value-string:exact=Never smoker", {"note"}),
        ("value-string:exact=never smoker", set()),
        # reference forms
        ("encounter:missing=false", set()),
        ("_id={weight-2020}", {"weight-2020"}),
        ("_id={weight-2020},{weight-2021}&code=29463-7", {"weight-2020", "weight-2021"}),
    ],
)
def test_observation_search(client, world, query, expected):
    query = query.format(**world["ids"])
    body = search(client, f"/Observation?patient={world['pid']}&{query}")
    want = {world["ids"][name] for name in expected}
    assert ids(body) == want, query
    assert body["total"] == len(want)


@pytest.mark.parametrize(
    "reference",
    ["{pid}", "Patient/{pid}", "{base}/Patient/{pid}"],
)
def test_reference_forms(client, world, fhir_base, reference):
    ref = reference.format(pid=world["pid"], base=fhir_base)
    body = search(client, f"/Observation?subject={ref}&code=29463-7")
    assert ids(body) == {world["ids"][k] for k in ("weight-2019", "weight-2020", "weight-2021")}


def test_subject_type_modifier(client, world):
    body = search(client, f"/Observation?subject:Patient={world['pid']}&code=8302-2")
    assert ids(body) == {world["ids"]["height-2020"]}
    search(client, f"/Observation?subject:Bogus={world['pid']}", 400)


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("name=zoe", True),  # accent- and case-insensitive prefix
        ("name=ZOË", True),
        ("family={tag_family}", True),
        ("family:exact={tag_family}", True),
        ("family:exact={tag_family_lower}", False),
        ("family:contains={tag}", True),
        ("given=angstrom", True),
        ("given=strom", False),
        ("identifier=http://hospital/mrn|MRN-{tag}", True),
        ("identifier=MRN-{tag}", True),
        ("identifier=http://elsewhere|MRN-{tag}", False),
        ("email={tag}@example.org", True),
        ("birthdate=2012", True),
        ("birthdate=lt2012-03-04", False),
        ("gender=female", True),
    ],
)
def test_patient_string_and_token(client, world, query, found):
    tag = world["tag"]
    query = query.format(tag=tag, tag_family=f"Zoë{tag}", tag_family_lower=f"zoë{tag}")
    body = search(client, f"/Patient?_id={world['pid']}&{query}")
    assert ids(body) == ({world["pid"]} if found else set())


def test_string_search_finds_across_patients(client, world):
    body = search(client, f"/Patient?family:contains={world['tag']}")
    assert ids(body) == {world["pid"], world["other"]}


def test_chained_and_has(client, world):
    body = search(client, f"/Observation?subject:Patient.name=zoe{world['tag']}&code=29463-7")
    assert ids(body) == {world["ids"][k] for k in ("weight-2019", "weight-2020", "weight-2021")}
    body = search(
        client, f"/Patient?_has:Observation:patient:code=8302-2&family:contains={world['tag']}"
    )
    assert ids(body) == {world["pid"]}
    search(client, "/Observation?subject.name=x", 400)  # ambiguous target type


def test_include_and_revinclude(client, world):
    body = search(
        client, f"/Observation?_id={world['ids']['height-2020']}&_include=Observation:subject"
    )
    assert ids(body) == {world["ids"]["height-2020"]}
    assert ids(body, "include") == {world["pid"]}
    body = search(client, f"/Patient?_id={world['pid']}&_revinclude=Encounter:subject")
    assert ids(body, "include") == {world["ids"]["encounter"]}
    body = search(
        client,
        f"/Encounter?_id={world['ids']['encounter']}&_include=Encounter:subject"
        "&_revinclude:iterate=Observation:subject",
    )
    assert world["pid"] in ids(body, "include")
    search(client, "/Observation?_include=Observation:nonsense", 400)


def test_sort_and_paging(client, world):
    base = f"/Observation?patient={world['pid']}&code=29463-7&_count=2"
    first = search(client, base + "&_sort=-date")
    dates = [e["resource"]["effectiveDateTime"] for e in first["entry"]]
    assert dates == ["2021-06-01", "2020-06-01T10:00:00Z"]
    assert first["total"] == 3
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = client.get(nxt).json()
    assert [e["resource"]["effectiveDateTime"] for e in second["entry"]] == ["2019-06-01T10:00:00Z"]
    assert not any(link["relation"] == "next" for link in second["link"])
    prev = next(link["url"] for link in second["link"] if link["relation"] == "previous")
    assert ids(client.get(prev).json()) == ids(first)
    ascending = search(client, base + "&_sort=date,_id&_count=3")
    assert [e["resource"]["effectiveDateTime"][:4] for e in ascending["entry"]] == [
        "2019",
        "2020",
        "2021",
    ]
    search(client, base + "&_sort=nonsense", 400)


def test_paging_survives_concurrent_writes(client, server):
    pid = f"page-{uuid.uuid4().hex[:8]}"
    put(client, {"resourceType": "Patient", "id": pid})
    made = {create(client, obs(pid, "1-8", f"2020-01-{d:02d}"))["id"] for d in range(1, 13)}
    seen: list[str] = []
    stop = threading.Event()

    def writer():
        with httpx.Client(base_url=server.url + "/fhir", auth=server.auth()) as w:
            while not stop.is_set():
                create(w, obs(pid, "1-8", "2030-01-01"))  # sorts before every page already read

    thread = threading.Thread(target=writer)
    url = f"/Observation?patient={pid}&_sort=date&_count=5"
    thread.start()
    try:
        while url:
            page = client.get(url).json()
            seen += [e["resource"]["id"] for e in page.get("entry", [])]
            url = next((x["url"] for x in page["link"] if x["relation"] == "next"), None)
            if len(seen) >= 12:
                break
    finally:
        stop.set()
        thread.join()
    assert seen[:12] == sorted(seen[:12], key=seen.index)
    assert set(seen[:12]) == made, "no duplicates or gaps among the resources that existed"


def test_count_total_summary_elements(client, world):
    base = f"/Observation?patient={world['pid']}&code=29463-7"
    assert search(client, base + "&_summary=count")["total"] == 3
    assert "entry" not in search(client, base + "&_summary=count")
    assert "entry" not in search(client, base + "&_count=0")
    assert "total" not in search(client, base + "&_total=none")
    body = search(client, base + "&_elements=effectiveDateTime")
    for e in body["entry"]:
        res = e["resource"]
        assert "valueQuantity" not in res and "effectiveDateTime" in res
        assert "status" in res and "code" in res  # mandatory elements stay
        assert {"code": "SUBSETTED"}.items() <= res["meta"]["tag"][-1].items()
    summary = search(client, f"/Patient?_id={world['pid']}&_summary=true")["entry"][0]["resource"]
    assert "name" in summary and "telecom" in summary
    search(client, base + "&_summary=bogus", 400)
    search(client, base + "&_count=-1", 400)


def test_unknown_parameters_lenient_and_strict(client, world):
    body = search(client, f"/Observation?patient={world['pid']}&nonsense=1&code=8302-2")
    assert ids(body) == {world["ids"]["height-2020"]}
    outcome = [e for e in body["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and "nonsense" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    r = client.get(
        f"/Observation?patient={world['pid']}&nonsense=1", headers={"Prefer": "handling=strict"}
    )
    assert r.status_code == 400 and "nonsense" in r.text


def test_post_search(client, world):
    r = client.post(
        "/Observation/_search",
        data={"patient": world["pid"], "code": "8302-2"},
    )
    assert r.status_code == 200
    assert ids(r.json()) == {world["ids"]["height-2020"]}
    bad = client.post("/Observation/_search", json={"code": "x"})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "value",
    ['{"$gt": ""}', "$where", ".*", "(a+)+$", "a" * 5000 + "!", "\\", "|||", "Patient/../x", "%00"],
)
def test_operator_shaped_values_are_data(client, world, value):
    for param in ("name", "family:contains", "identifier", "_id"):
        r = client.get("/Patient", params={param: value, "_id": world["pid"]})
        assert r.status_code in (200, 400), r.text
        if r.status_code == 200:
            assert ids(r.json()) <= {world["pid"]}


@pytest.mark.parametrize(
    "query",
    [
        "date=2020-13-45",
        "date=gtnotadate",
        "value-quantity=abc",
        "status:bogus=x",
        "value-quantity=gt",
        "_page=garbage",
    ],
)
def test_bad_search_values_are_400(client, world, query):
    r = client.get(f"/Observation?patient={world['pid']}&{query}")
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_deleted_resources_leave_search(client, world):
    pid = world["pid"]
    made = create(client, obs(pid, "99999-9", "2022-01-01"))
    assert ids(search(client, f"/Observation?patient={pid}&code=99999-9")) == {made["id"]}
    client.delete(f"/Observation/{made['id']}")
    assert ids(search(client, f"/Observation?patient={pid}&code=99999-9")) == set()
    assert ids(search(client, f"/Observation?_id={made['id']}")) == set()


def test_updates_reindex(client, world):
    made = create(client, obs(world["pid"], "11111-1", "2022-01-01"))
    made["code"]["coding"][0]["code"] = "22222-2"
    assert put(client, made).status_code == 200
    assert ids(search(client, f"/Observation?patient={world['pid']}&code=11111-1")) == set()
    assert ids(search(client, f"/Observation?patient={world['pid']}&code=22222-2")) == {made["id"]}


def test_capability_statement_lists_search_params(client):
    cap = client.get("/metadata").json()
    obs_res = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Observation")
    names = {p["name"] for p in obs_res["searchParam"]}
    assert {"_id", "code", "patient", "date", "value-quantity", "_lastUpdated"} <= names
    assert "code-value-quantity" not in names  # composite: not supported, not listed
    assert {"code": "search-type"} in obs_res["interaction"]


def test_conditional_create_update_delete(client):
    tag = uuid.uuid4().hex[:8]
    ident = f"http://hospital/mrn|C-{tag}"
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://hospital/mrn", "value": f"C-{tag}"}],
    }
    first = client.post("/Patient", json=body, headers={"If-None-Exist": f"identifier={ident}"})
    assert first.status_code == 201
    again = client.post("/Patient", json=body, headers={"If-None-Exist": f"identifier={ident}"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    bad = client.post("/Patient", json=body, headers={"If-None-Exist": "nonsense=1"})
    assert bad.status_code == 400
    # conditional update: one match updates it, the body id may be absent
    upd = client.put(f"/Patient?identifier={ident}", json={**body, "gender": "male"})
    assert upd.status_code == 200 and upd.json()["id"] == first.json()["id"]
    assert upd.json()["meta"]["versionId"] == "2"
    # no match creates
    new = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://hospital/mrn", "value": f"N-{tag}"}],
    }
    fresh = client.put(f"/Patient?identifier=http://hospital/mrn|N-{tag}", json=new)
    assert fresh.status_code == 201
    # several matches: 412 for create, update and delete
    client.post("/Patient", json=body)
    assert (
        client.post(
            "/Patient", json=body, headers={"If-None-Exist": f"identifier={ident}"}
        ).status_code
        == 412
    )
    assert client.put(f"/Patient?identifier={ident}", json=body).status_code == 412
    assert client.delete(f"/Patient?identifier={ident}").status_code == 412
    assert client.delete(f"/Patient?identifier=http://hospital/mrn|none-{tag}").status_code == 404
    assert client.delete(f"/Patient?identifier=http://hospital/mrn|N-{tag}").status_code == 204
    assert client.get(f"/Patient?identifier=http://hospital/mrn|N-{tag}").json()["total"] == 0


def test_meta_uri_missing_and_identifier_parameters(client):
    tag = uuid.uuid4().hex[:8]
    profile = f"http://example.org/StructureDefinition/{tag}/vitals"
    tagged = create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "m"},
            "meta": {
                "tag": [{"system": "http://example.org/tags", "code": tag}],
                "profile": [profile],
                "security": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "R",
                    }
                ],
            },
            "subject": {"identifier": {"system": "http://hospital/mrn", "value": f"ID-{tag}"}},
        },
    )
    plain = create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "m"},
            "meta": {"tag": [{"system": "http://example.org/tags", "code": tag + "x"}]},
        },
    )
    both = {tagged["id"], plain["id"]}
    assert ids(search(client, f"/Observation?_tag=http://example.org/tags|{tag}")) == {tagged["id"]}
    assert ids(search(client, f"/Observation?_profile={profile}")) == {tagged["id"]}
    assert ids(
        search(client, f"/Observation?_profile:below=http://example.org/StructureDefinition/{tag}")
    ) == {tagged["id"]}
    assert ids(search(client, f"/Observation?_security=R&_tag=http://example.org/tags|{tag}")) == {
        tagged["id"]
    }
    assert ids(search(client, f"/Observation?subject:identifier=http://hospital/mrn|ID-{tag}")) == {
        tagged["id"]
    }
    missing = search(client, f"/Observation?_tag={tag},{tag}x&_profile:missing=true")
    assert ids(missing) == {plain["id"]}
    present = search(client, f"/Observation?_tag={tag},{tag}x&_profile:missing=false")
    assert ids(present) == {tagged["id"]}
    assert ids(search(client, f"/Observation?_tag={tag},{tag}x&_lastUpdated=ge2020-01-01")) == both
    assert ids(search(client, f"/Observation?_tag={tag},{tag}x&_lastUpdated=lt2020-01-01")) == set()
    # a search with nothing to drive it from an index is refused rather than scanned
    r = client.get("/Observation?_profile:missing=true")
    assert r.status_code == 400 and "index" in r.text


def test_patient_parameter_forms_on_non_compartment_types(client):
    # Person is outside the patient compartment: `patient=` must still find it (no confinement)
    tag = uuid.uuid4().hex[:8]
    pid = f"pp-{tag}"
    put(client, {"resourceType": "Patient", "id": pid})
    person = create(
        client, {"resourceType": "Person", "link": [{"target": {"reference": f"Patient/{pid}"}}]}
    )
    assert ids(search(client, f"/Person?patient={pid}")) == {person["id"]}
    versioned = search(client, f"/Person?patient=Patient/{pid}/_history/1")
    assert ids(versioned) == {person["id"]}
