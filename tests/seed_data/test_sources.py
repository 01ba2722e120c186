"""The loader's pure parts: idempotent rewriting, splitting, and reading the server's answers."""

from __future__ import annotations

import json
from decimal import Decimal

from seed_data.loader import Answer, classify
from seed_data.sources import Chunk, dump_json, idempotent, identifier_criteria, parse_json, prepare


def entry(resource, method="POST", full_url=None, **request):
    e = {
        "resource": resource,
        "request": {"method": method, "url": resource["resourceType"], **request},
    }
    if full_url:
        e["fullUrl"] = full_url
    return e


def test_post_with_id_becomes_put_and_keeps_full_url():
    e = entry({"resourceType": "Patient", "id": "abc"}, full_url="urn:uuid:abc", ifNoneExist="x=1")
    out = idempotent(e)
    assert out["request"] == {"method": "PUT", "url": "Patient/abc"}
    assert out["fullUrl"] == "urn:uuid:abc"


def test_post_without_id_gets_if_none_exist_on_first_full_identifier():
    resource = {
        "resourceType": "Practitioner",
        "identifier": [
            {"value": "no-system"},
            {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9 9&1"},
        ],
    }
    out = idempotent(entry(resource))
    assert out["request"]["ifNoneExist"] == "identifier=http://hl7.org/fhir/sid/us-npi|9%209%261"
    assert identifier_criteria({"identifier": [{"value": "x"}]}) is None
    # an entry's own condition, other methods and odd ids are left alone
    own = entry(resource, ifNoneExist="identifier=a|b")
    assert idempotent(own) == own
    put = entry({"resourceType": "Patient", "id": "p"}, method="PUT")
    assert idempotent(put) == put
    odd = entry({"resourceType": "Patient", "id": "not valid!"})
    assert idempotent(odd) == odd


def test_decimals_are_sent_as_written():
    value = parse_json(b'{"value": 1.50, "big": 123456789012345678901234567890}')
    assert value["value"] == Decimal("1.50")
    assert dump_json(value) == b'{"value":1.50,"big":123456789012345678901234567890}'


def test_collection_is_split_with_references_rewritten(tmp_path):
    patient = {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1"}}
    observations = [
        {
            "fullUrl": f"urn:uuid:o{i}",
            "resource": {
                "resourceType": "Observation",
                "id": f"o{i}",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": "urn:uuid:p1"},
            },
        }
        for i in range(3)
    ]
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {"resourceType": "Bundle", "type": "collection", "entry": [patient, *observations]}
        )
    )
    prepared = prepare(path, batch_size=2)
    assert [c.kind for c in prepared.chunks] == ["transaction", "transaction"]
    assert [len(c.entries) for c in prepared.chunks] == [2, 2]
    last = prepared.chunks[1].entries[-1]
    assert last["request"] == {"method": "PUT", "url": "Observation/o2"}
    assert last["resource"]["subject"]["reference"] == "Patient/p1"


def test_collection_with_references_to_server_assigned_ids_stays_whole(tmp_path):
    entries = [{"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient"}}] + [
        {"resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:p1"}}}
        for _ in range(3)
    ]
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    assert [len(c.entries) for c in prepare(path, batch_size=2).chunks] == [4]


def test_ndjson_lines(tmp_path):
    path = tmp_path / "r.ndjson"
    path.write_text(
        '{"resourceType": "Patient", "id": "a"}\n\nnot json\n{"id": "x"}\n'
        '{"resourceType": "Patient", "id": "b"}\n'
    )
    prepared = prepare(path, batch_size=1)
    assert [c.where for c in prepared.chunks] == [["line 1"], ["line 5"]]
    assert [p.where for p in prepared.problems] == ["line 3", "line 4"]


def test_classify_reads_created_unchanged_and_failed():
    entries = [
        entry({"resourceType": "Patient", "id": "a"}, method="PUT"),
        entry({"resourceType": "Patient", "id": "b"}, method="PUT"),
        entry({"resourceType": "Patient", "id": "c"}, method="PUT"),
        entry({"resourceType": "Patient"}, ifNoneExist="identifier=s|v"),
        entry({"resourceType": "Patient"}),
        entry({"resourceType": "Patient", "id": "d"}, method="PUT"),
    ]
    for e in entries[:3] + entries[5:]:
        e["request"]["url"] += "/" + e["resource"]["id"]
    chunk = Chunk("batch", entries, [f"entry[{i}]" for i in range(6)])
    sent_at = 1_800_000_000.0
    answer = Answer(
        200,
        {
            "resourceType": "Bundle",
            "entry": [
                {"response": {"status": "201 Created", "lastModified": "2027-01-15T08:00:00.000Z"}},
                {"response": {"status": "200 OK", "lastModified": "2027-01-15T07:59:59.998Z"}},
                {
                    "response": {
                        "status": "200 OK",
                        "etag": 'W/"3"',
                        "lastModified": "Fri, 15 Jan 2027 08:00:00 GMT",
                    }
                },
                {"response": {"status": "200 OK"}},
                {
                    "response": {
                        "status": "400",
                        "outcome": {
                            "resourceType": "OperationOutcome",
                            "issue": [
                                {"severity": "error", "code": "invalid", "diagnostics": "bad"}
                            ],
                        },
                    }
                },
                # version 1 answered 200: not an update, whatever the clock says
                {
                    "response": {
                        "status": "200",
                        "etag": 'W/"1"',
                        "lastModified": "Fri, 15 Jan 2027 08:00:00 GMT",
                    }
                },
            ],
        },
        sent_at,
    )
    outcomes, messages = classify(chunk, answer)
    # 2027-01-15T08:00:00Z is 1800000000 in epoch seconds; HTTP dates have 1 s resolution
    assert outcomes == ["loaded", "unchanged", "loaded", "unchanged", "failed", "unchanged"]
    assert messages == ["entry[4] (Patient): bad"]
    failed, why = classify(
        chunk,
        Answer(
            400,
            {
                "resourceType": "OperationOutcome",
                "issue": [
                    {"severity": "error", "code": "invalid", "diagnostics": "Bundle.entry[1]: no"}
                ],
            },
            sent_at,
        ),
    )
    assert failed == ["failed"] * 6 and why == ["Bundle.entry[1]: no"]
