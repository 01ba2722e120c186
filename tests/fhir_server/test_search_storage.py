"""The stored search keys are fewer than the logical ones (fhir_server/search/index.py); every
search must still find exactly what the logical keys say.

Left out of the database: derived parameters (Observation `combo-*`), `#|unit` quantity keys,
the `>high` keys of narrow dates, `_lastUpdated` (read from `lu`), patient-prefixed copies of
reference and `:text` keys, and the sort values (`o`, computed from the keys).
"""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from fhir_server.jsonbody import parse_json
from fhir_server.search.index import (
    LAST_UPDATED,
    index_fields,
    logical_keys,
    sort_value,
    stored_fields,
)
from fhir_server.search.query import params_by_code
from fhir_server.search.values import PART, PATIENT, VALUE
from fhir_server.storage.versions import stamp
from tests.fhir_server.helpers import create, put

BASE = "http://test/fhir"
SYNTHEA = Path(__file__).resolve().parents[2] / "bench" / "data" / "synthea"
UCUM = "http://unitsofmeasure.org"


def _synthea_resources() -> list[dict]:
    out = []
    for path in sorted(SYNTHEA.glob("*.json.gz")):
        bundle = parse_json(gzip.decompress(path.read_bytes()), 64)
        out += [e["resource"] for e in bundle["entry"]]
    return out


def _is_date_end(resource_type: str, key: str) -> bool:
    code, _, value = key.partition(VALUE)
    return value.startswith(">") and params_by_code(resource_type)[code].type == "date"


def _code(key: str) -> str:
    """The parameter code of a stored key (`<patient>␝` copies included)."""
    head = key.partition(VALUE)[0]
    return head.rpartition(PATIENT)[2]


def test_stored_keys_give_back_every_logical_key():
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    stored_total = logical_total = 0
    for resource in _synthea_resources():
        rtype = resource["resourceType"]
        resource = stamp(resource, resource["id"], 1, at)
        logical = index_fields(rtype, resource, ["p1"], BASE)
        stored = stored_fields(rtype, resource, ["p1"], BASE)
        # stored keys are logical keys, but for quantity keys merged into one per unit and
        # tokens holding their patient (`code␞<code>␝p1␟<system>`)
        for key in (k for k in stored["k"] if k not in logical["k"]):
            kind = params_by_code(rtype)[_code(key)].type
            assert kind == "quantity" or (kind == "token" and f"{PATIENT}p1{PART}" in key), key
        # every logical key but the `>high` keys of narrow dates, which no predicate tests
        wanted = frozenset(
            k
            for k in logical["k"]
            if PATIENT not in k and (not _is_date_end(rtype, k) or k in stored["k"])
        )
        assert logical_keys(rtype, stored["k"], at) == wanted, rtype
        assert set(stored) == {"k"}, "sort values are computed from the keys, not stored"
        for code, value in logical["o"].items():
            if code != LAST_UPDATED:
                assert sort_value(rtype, wanted, code) == value, (rtype, code)
        stored_total += len(stored["k"])
        logical_total += len(logical["k"])
    assert stored_total < 0.7 * logical_total


def _obs(pid: str, code: str, when: str, **extra) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": f"T {code}"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        **extra,
    }


@pytest.fixture(scope="module")
def record(server):
    """One patient's Observations under codes no other test uses, and a second patient."""
    tag = uuid.uuid4().hex[:8]
    code, component, other_code = f"c-{tag}", f"k-{tag}", f"o-{tag}"
    with httpx.Client(base_url=server.url + "/fhir", timeout=30, auth=server.auth()) as c:
        pid, other = f"s-{tag}", f"t-{tag}"
        for patient in (pid, other):
            assert put(c, {"resourceType": "Patient", "id": patient}).status_code == 201
        enc = create(
            c,
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": f"Patient/{pid}"},
            },
        )
        made = {
            "kg": _obs(
                pid,
                code,
                "2020-06-01T10:00:00Z",
                valueQuantity={"value": 70, "unit": "kg", "system": UCUM, "code": "kg"},
                encounter={"reference": f"Encounter/{enc['id']}"},
            ),
            "component": _obs(
                pid,
                other_code,
                "2020-06-03",
                component=[
                    {
                        "code": {"coding": [{"system": "http://loinc.org", "code": component}]},
                        "valueQuantity": {"value": 120, "unit": "mm[Hg]", "system": UCUM},
                    }
                ],
            ),
            "period": _obs(
                pid,
                other_code,
                "2019-01-01",
                effectivePeriod={"start": "2019-01-01", "end": "2021-12-31"},
            ),
            "other": _obs(
                other,
                code,
                "2020-06-01T10:00:00Z",
                valueQuantity={"value": 70, "unit": "kg", "system": UCUM, "code": "kg"},
            ),
        }
        group = create(c, {"resourceType": "Group", "type": "person", "actual": True})["id"]
        extra_code = f"g-{tag}"
        made |= {
            # `patient` keys are `subject` keys to a Patient, not stored twice
            "group": _obs(pid, extra_code, "2020-01-01", subject={"reference": f"Group/{group}"}),
            "ident": _obs(
                pid,
                extra_code,
                "2020-01-01",
                subject={"type": "Patient", "identifier": {"system": "urn:t", "value": tag}},
            ),
            # stored quantity keys: one per unit, the number first
            "nosys": _obs(
                other, extra_code, "2020-01-01", valueQuantity={"value": 5, "unit": "mg"}
            ),
            "units": _obs(
                other,
                extra_code,
                "2020-01-01",
                valueQuantity={"value": 3, "unit": "milligram", "code": "mg", "system": UCUM},
            ),
        }
        made["period"].pop("effectiveDateTime")
        ids = {name: create(c, body)["id"] for name, body in made.items()}
        yield {
            "client": c,
            "pid": pid,
            "code": code,
            "component": component,
            "other_code": other_code,
            "encounter": enc["id"],
            "other": other,
            "group": group,
            "extra_code": extra_code,
            "tag": tag,
            "ids": ids,
            "since": datetime.now(UTC) - timedelta(minutes=5),
        }


def _found(client: httpx.Client, query: str) -> set[str]:
    r = client.get(f"/Observation?{query}")
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", [])}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # derived parameters: combo-* is code | component-code, value-quantity | component-...
        ("combo-code={code}", {"kg", "other"}),
        ("combo-code={component}", {"component"}),
        ("combo-code={component}&patient={pid}", {"component"}),
        ("combo-code:text=t {code}", {"kg", "other"}),
        ("combo-value-quantity=120&combo-code={component}", {"component"}),
        ("combo-value-quantity=gt100&patient={pid}&code={other_code}", {"component"}),
        # `#|unit` keys (any system) are read through the plain number keys
        ("value-quantity=70||kg&code={code}", {"kg", "other"}),
        ("value-quantity=70||kg&patient={pid}", {"kg"}),
        ("value-quantity=lt71||kg&patient={pid}", {"kg"}),
        ("value-quantity=70||g&patient={pid}", set()),
        ("value-quantity=70|" + UCUM + "|kg&patient={pid}", {"kg"}),
        ("value-quantity=70&code={code}", {"kg", "other"}),
        ("value-quantity=70.0&patient={pid}", {"kg"}),
        ("value-quantity=5||mg&patient={other}", {"nosys"}),
        ("value-quantity=5&patient={other}", {"nosys"}),
        ("value-quantity=5|" + UCUM + "|mg&patient={other}", set()),
        ("value-quantity=3|" + UCUM + "|mg&patient={other}", {"units"}),
        ("value-quantity=3||milligram&patient={other}", {"units"}),
        ("value-quantity=ge3||mg&code={extra_code}", {"nosys", "units"}),
        ("value-quantity=gt3||milligram&code={extra_code}", set()),
        ("value-quantity=ge3&code={extra_code}", {"nosys", "units"}),
        # token keys hold their patients: confined searches read that patient's, others all
        ("patient={pid}&code=http://loinc.org|{code}", {"kg"}),
        ("patient={other}&code=http://loinc.org|{code}", {"other"}),
        ("code=http://loinc.org|{code}", {"kg", "other"}),
        ("code=http://other.org|{code}", set()),
        ("code={code}&_lastUpdated=ge{since}", {"kg", "other"}),
        ("code=http://loinc.org|{extra_code}", {"group", "ident", "nosys", "units"}),
        ("code=http://loinc.org|&patient={other}&value-quantity=5", {"nosys"}),
        # `patient` read through `subject` keys
        ("subject=Group/{group}", {"group"}),
        ("patient={other}&code={extra_code}", {"nosys", "units"}),
        ("subject=Patient/{other}&code={extra_code}", {"nosys", "units"}),
        ("patient:identifier=urn:t|{tag}", {"ident"}),
        ("subject:identifier=urn:t|{tag}", {"ident"}),
        ("code={extra_code}&patient:missing=true", {"group"}),
        ("code={extra_code}&patient:missing=false", {"ident", "nosys", "units"}),
        ("code={extra_code}&_sort=patient", {"group", "ident", "nosys", "units"}),
        # narrow dates have no `>high` key: gt/ge/eb read the `<low` keys
        ("date=ge2020-06-02&patient={pid}", {"component", "period"}),
        ("date=gt2020-06-01&patient={pid}", {"component", "period"}),
        ("date=eb2020-06-02&patient={pid}", {"kg"}),
        ("date=ge2020-06-01T10:00:00Z&code={code}", {"kg", "other"}),
        ("date=gt2020-06-01T10:00:00Z&code={code}", set()),
        ("date=ge2021-06-01&patient={pid}", {"period"}),
        # confined searches driven by keys without patient-prefixed copies
        ("patient={pid}&encounter=Encounter/{encounter}", {"kg"}),
        ("patient={pid}&code:text=t {code}", {"kg"}),
        ("patient={pid}&subject=Patient/{pid}&code={code}", {"kg"}),
        ("patient={pid}&encounter:missing=false", {"kg"}),
        ("patient={pid}&status=final", {"kg", "component", "period"}),
        # a `code` has no system in its key: a system-qualified search does not match it
        ("patient={pid}&status=http://hl7.org/fhir/observation-status|final", set()),
        ("patient={pid}&status:not=final", set()),
        # _lastUpdated comes from `lu`
        ("_lastUpdated=ge{since}&code={code}", {"kg", "other"}),
        ("_lastUpdated=lt{since}&code={code}", set()),
        ("patient={pid}&_lastUpdated=gt{since}", {"kg", "component", "period"}),
        ("patient={pid}&_lastUpdated=le{since}", set()),
    ],
)
def test_searches_over_stored_keys(record, query, expected):
    values = {**record, "since": record["since"].strftime("%Y-%m-%dT%H:%M:%SZ")}
    filled = query.format(**values)
    assert _found(record["client"], filled) == {record["ids"][name] for name in expected}


def test_last_updated_alone_drives_the_lu_index(record):
    """`_lastUpdated` with nothing else reads a range of `lu` (still exact on the instant)."""
    client = record["client"]
    r = client.get(f"/Observation/{record['ids']['kg']}")
    stamp_ = r.json()["meta"]["lastUpdated"]
    found = _found(client, f"_lastUpdated=eq{stamp_}&code={record['code']}")
    assert record["ids"]["kg"] in found
    found = _found(client, f"_lastUpdated={stamp_}")
    assert record["ids"]["kg"] in found
    assert all(
        client.get(f"/Observation/{i}").json()["meta"]["lastUpdated"] == stamp_ for i in found
    )


@pytest.mark.parametrize(("sort", "order"), [("", ["kg", "component"]), ("-", ["component", "kg"])])
def test_sort_by_a_derived_parameter(record, sort, order):
    """Sort values come from the keys, derived parameters' included."""
    query = f"patient={record['pid']}&combo-value-quantity=gt0&_sort={sort}combo-value-quantity"
    r = record["client"].get(f"/Observation?{query}")
    assert r.status_code == 200, r.text
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [record["ids"][n] for n in order]
