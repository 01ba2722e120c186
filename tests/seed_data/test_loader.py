"""`python -m seed_data load` against the running test server, and `python -m seed_data serve`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from seed_data import demo_app
from tests.smart_auth.browser import Browser, forms
from tests.support import (
    ROOT,
    TLS,
    BearerAuth,
    free_port,
    register_backend,
    serving,
    wait_until,
)

SYNTHEA = ROOT / "tests" / "data" / "synthea"
DEMO = ROOT / "seed_data" / "demo"


@pytest.fixture(autouse=True)
def loader_client(server, monkeypatch) -> None:
    """`--url` loads authenticate as a backend client (PHR_CLIENT_ID / PHR_CLIENT_SECRET)."""
    backend = server.auth().client
    monkeypatch.setenv("PHR_CLIENT_ID", backend.client_id)
    monkeypatch.setenv("PHR_CLIENT_SECRET", backend.secret)


def run_loader(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seed_data", "load", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def summary(output: str) -> dict[str, tuple[int, int, int]]:
    """The summary table: resource type -> (loaded, unchanged, failed), or (valid, invalid)."""
    rows: dict[str, tuple[int, int, int]] = {}
    for line in output.splitlines():
        match = re.fullmatch(r"([A-Za-z-]+)((?:\s+[\d,]+){2,3})", line.strip())
        if match and match.group(1) != "total":
            numbers = [int(n.replace(",", "")) for n in match.group(2).split()]
            rows[match.group(1)] = (*numbers, 0)[:3]  # type: ignore[assignment]
    return rows


def by_type(bundle: dict) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = defaultdict(list)
    for e in bundle["entry"]:
        ids[e["resource"]["resourceType"]].append(e["resource"]["id"])
    return ids


def stored(client: httpx.Client, rtype: str, ids: list[str]) -> list[dict]:
    found = client.get(f"/{rtype}", params={"_id": ",".join(ids), "_count": 1000}).json()
    return [e["resource"] for e in found.get("entry", [])]


def test_synthea_bundle_loads_twice_without_duplicates_or_versions(client, fhir_base):
    path = next(SYNTHEA.glob("*.json"))
    bundle = json.loads(path.read_text())
    ids = by_type(bundle)

    first = run_loader(path, "--url", fhir_base, "--workers", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "files 1/1" in first.stderr  # plain progress lines when stderr is not a terminal
    table = summary(first.stdout)
    assert {t: table[t][0] + table[t][1] for t in table} == {t: len(v) for t, v in ids.items()}
    assert table["Patient"] == (1, 0, 0)

    second = run_loader(path, "--url", fhir_base)
    assert second.returncode == 0, second.stdout + second.stderr
    assert summary(second.stdout) == {t: (0, len(v), 0) for t, v in ids.items()}

    for rtype, wanted in ids.items():
        resources = stored(client, rtype, wanted)
        assert sorted(r["id"] for r in resources) == sorted(wanted), rtype
        assert {r["meta"]["versionId"] for r in resources} == {"1"}, rtype
    # references to the bundle's urn:uuid fullUrls now name the stored ids
    patient_id = ids["Patient"][0]
    observations = client.get("/Observation", params={"patient": patient_id, "_count": 1}).json()
    assert observations["total"] == len(ids["Observation"])
    assert observations["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
    org = ids["Organization"][0]
    assert client.get(f"/Organization/{org}/_history").json()["total"] == 1


def test_ndjson_and_collection_bundles(client, fhir_base, tmp_path):
    tag = uuid.uuid4().hex[:10]
    pid = f"nd-{tag}"
    system = f"http://example.org/test/{tag}"
    lines = [{"resourceType": "Patient", "id": pid, "name": [{"family": tag}]}]
    lines += [
        {
            "resourceType": "Observation",
            "id": f"{pid}-o{i}",
            "status": "final",
            "code": {"text": tag},
            "subject": {"reference": f"Patient/{pid}"},
            "valueQuantity": {"value": "DECIMAL", "unit": "kg"},
        }
        for i in range(3)
    ]
    # no id: created once, found by its identifier afterwards
    lines.append(
        {"resourceType": "Practitioner", "identifier": [{"system": system, "value": "p&1"}]}
    )
    ndjson = tmp_path / "export" / "data.ndjson"
    ndjson.parent.mkdir()
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    ndjson.write_text(text.replace('"DECIMAL"', "1.50"))  # decimals stay as written
    collection = tmp_path / "export" / "collection.json"
    cid = f"col-{tag}"
    collection.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {
                        "fullUrl": f"urn:uuid:{cid}",
                        "resource": {"resourceType": "Patient", "id": cid},
                    },
                    *[
                        {
                            "fullUrl": f"urn:uuid:{cid}-o{i}",
                            "resource": {
                                "resourceType": "Observation",
                                "id": f"{cid}-o{i}",
                                "status": "final",
                                "code": {"text": tag},
                                "subject": {"reference": f"urn:uuid:{cid}"},
                            },
                        }
                        for i in range(3)
                    ],
                ],
            }
        )
    )

    for attempt in range(2):
        result = run_loader(tmp_path / "export", "--url", fhir_base, "--batch-size", "2")
        assert result.returncode == 0, result.stdout + result.stderr
        table = summary(result.stdout)
        if attempt == 0:
            assert table == {
                "Patient": (2, 0, 0),
                "Observation": (6, 0, 0),
                "Practitioner": (1, 0, 0),
            }
            assert "(5 Bundles posted)" in result.stdout  # 3 NDJSON batches, 2 collection parts
        else:
            assert table == {
                "Patient": (0, 2, 0),
                "Observation": (0, 6, 0),
                "Practitioner": (0, 1, 0),
            }

    found = client.get("/Practitioner", params={"identifier": f"{system}|p&1"}).json()
    assert found["total"] == 1
    obs = stored(client, "Observation", [f"{p}-o{i}" for p in (pid, cid) for i in range(3)])
    assert len(obs) == 6
    subjects = {r["subject"]["reference"] for r in obs}
    assert subjects == {f"Patient/{pid}", f"Patient/{cid}"}
    raw = client.get(f"/Observation/{pid}-o0").text
    assert '"value":1.50' in raw.replace(" ", "")
    assert client.get(f"/Patient/{cid}/_history").json()["total"] == 1


def test_current_synthea_shape_with_shared_files_and_conditional_references(
    client, fhir_base, tmp_path
):
    """Current Synthea writes hospitals and practitioners to their own batch files (ifNoneExist
    entries) and points at them from patient bundles with conditional references."""
    tag = uuid.uuid4().hex[:12]
    org_id, npi, pid = f"org-{tag}", f"99{tag}", f"pat-{tag}"
    synthea = "https://github.com/synthetichealth/synthea"
    org = {
        "resourceType": "Organization",
        "id": org_id,
        "name": f"Hospital {tag}",
        "identifier": [{"system": synthea, "value": org_id}],
    }
    practitioner = {
        "resourceType": "Practitioner",
        "id": f"pr-{tag}",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}],
    }

    def shared(resource, key):
        return {
            "fullUrl": f"urn:uuid:{resource['id']}",
            "resource": resource,
            "request": {
                "method": "POST",
                "url": resource["resourceType"],
                "ifNoneExist": f"identifier={key}",
            },
        }

    (tmp_path / f"hospitalInformation{tag}.json").write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [shared(org, f"{synthea}|{org_id}")],
            }
        )
    )
    (tmp_path / f"practitionerInformation{tag}.json").write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [shared(practitioner, f"http://hl7.org/fhir/sid/us-npi|{npi}")],
            }
        )
    )
    # sorts before the shared files ("J" < "h"): the loader still loads those first
    (tmp_path / f"Jane_Doe_{tag}.json").write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "fullUrl": f"urn:uuid:{pid}",
                        "resource": {"resourceType": "Patient", "id": pid},
                        "request": {"method": "POST", "url": "Patient"},
                    },
                    {
                        "fullUrl": f"urn:uuid:enc-{tag}",
                        "resource": {
                            "resourceType": "Encounter",
                            "id": f"enc-{tag}",
                            "status": "finished",
                            "class": {"code": "AMB"},
                            "subject": {"reference": f"urn:uuid:{pid}"},
                            "participant": [
                                {
                                    "individual": {
                                        "reference": f"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|{npi}"
                                    }
                                }
                            ],
                            "serviceProvider": {
                                "reference": f"Organization?identifier={synthea}|{org_id}"
                            },
                        },
                        "request": {"method": "POST", "url": "Encounter"},
                    },
                ],
            }
        )
    )

    for attempt in range(2):
        result = run_loader(tmp_path, "--url", fhir_base, "--workers", "3")
        assert result.returncode == 0, result.stdout + result.stderr
        loaded = 0 if attempt else 1
        assert summary(result.stdout) == {
            t: (loaded, 1 - loaded, 0)
            for t in ("Organization", "Practitioner", "Patient", "Encounter")
        }
    encounter = client.get(f"/Encounter/enc-{tag}").json()
    assert encounter["subject"]["reference"] == f"Patient/{pid}"
    assert encounter["participant"][0]["individual"]["reference"] == f"Practitioner/pr-{tag}"
    assert encounter["serviceProvider"]["reference"] == f"Organization/{org_id}"
    assert (
        client.get("/Organization", params={"identifier": f"{synthea}|{org_id}"}).json()["total"]
        == 1
    )


def test_a_broken_file_fails_and_the_rest_loads(client, fhir_base, tmp_path):
    tag = uuid.uuid4().hex[:10]
    (tmp_path / "a-broken.json").write_text('{"resourceType": "Bundle", "type": ')
    (tmp_path / "b-invalid.json").write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {"resourceType": "Patient", "id": f"bad-{tag}"},
                        "request": {"method": "PUT", "url": f"Patient/bad-{tag}"},
                    },
                    {
                        "resource": {
                            "resourceType": "Observation",
                            "id": f"bad-{tag}-o",
                            "code": {"text": "no status"},
                        },
                        "request": {"method": "PUT", "url": f"Observation/bad-{tag}-o"},
                    },
                ],
            }
        )
    )
    (tmp_path / "c-good.ndjson").write_text(
        json.dumps({"resourceType": "Patient", "id": f"good-{tag}"}) + "\n"
    )

    result = run_loader(tmp_path, "--url", fhir_base)
    assert result.returncode == 1
    assert summary(result.stdout) == {"Patient": (1, 0, 1), "Observation": (0, 0, 1)}
    failed = result.stdout.split("Failed (")[1]
    assert "a-broken.json" in failed and "not JSON" in failed
    assert "b-invalid.json (HTTP 400)" in failed
    assert "Observation.status" in failed  # the server's OperationOutcome diagnostics
    assert result.stdout.rstrip().endswith("FAILED")
    assert client.get(f"/Patient/good-{tag}").status_code == 200
    assert client.get(f"/Patient/bad-{tag}").status_code == 404  # the transaction wrote nothing


def test_dry_run_validates_and_writes_nothing(client, fhir_base, tmp_path):
    tag = uuid.uuid4().hex[:10]
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Patient",
                            "id": f"dry-{tag}",
                            "birthDate": "2001-02-03",
                        },
                        "request": {"method": "POST", "url": "Patient"},
                    }
                ],
            }
        )
    )
    result = run_loader(good, SYNTHEA, "--dry-run", "--url", fhir_base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing was written" in result.stdout
    assert summary(result.stdout)["Patient"][:2] == (2, 0)
    assert client.get(f"/Patient/dry-{tag}").status_code == 404

    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Patient",
                            "id": f"dry-{tag}",
                            "birthDate": "yesterday",
                        },
                        "request": {"method": "PUT", "url": f"Patient/other-{tag}"},
                    },
                    {
                        "resource": {
                            "resourceType": "Observation",
                            "status": "final",
                            "code": {"text": "x"},
                        },
                        "request": {"method": "POST", "url": "Patient"},
                    },
                ],
            }
        )
    )
    result = run_loader(bad, "--dry-run")
    assert result.returncode == 1
    assert summary(result.stdout) == {"Patient": (0, 1, 0), "Observation": (0, 1, 0)}
    assert "birthDate" in result.stdout
    assert f"does not match 'Patient/other-{tag}'" in result.stdout
    assert "resourceType 'Observation' does not match" in result.stdout
    assert client.get(f"/Patient/dry-{tag}").status_code == 404


def test_demo_scenario_loads_the_family(client, fhir_base):
    entries = [e for f in sorted(DEMO.glob("*.json")) for e in json.loads(f.read_text())["entry"]]
    expected = Counter(e["resource"]["resourceType"] for e in entries)
    assert 300 <= len(entries) <= 1000
    assert all(e["request"]["method"] == "PUT" for e in entries)

    result = run_loader(DEMO, "--url", fhir_base)
    assert result.returncode == 0, result.stdout + result.stderr
    table = summary(result.stdout)
    assert {t: sum(n) for t, n in table.items()} == dict(expected)
    assert all(failed == 0 for _, _, failed in table.values())

    today = date(2026, 11, 27)
    patients = {
        p["id"]: p
        for p in stored(
            client, "Patient", ["demo-parent", "demo-child-12", "demo-child-15", "demo-grandparent"]
        )
    }
    assert len(patients) == 4

    def age(pid: str, on: date = today) -> int:
        born = date.fromisoformat(patients[pid]["birthDate"])
        return on.year - born.year - ((on.month, on.day) < (born.month, born.day))

    assert age("demo-child-12") == 12
    assert age("demo-child-15") == 15
    sixteenth = date.fromisoformat(patients["demo-child-15"]["birthDate"]).replace(year=2027)
    assert 0 < (sixteenth - today).days <= 62  # reaches the age of self-consent (16) soon
    assert age("demo-grandparent") >= 75

    related = client.get(
        "/RelatedPerson",
        params={
            "_count": 100,
            "_id": ",".join(
                r["id"]
                for r in (e["resource"] for e in entries)
                if r["resourceType"] == "RelatedPerson"
            ),
        },
    ).json()
    codes = {
        e["resource"]["id"]: {c["code"] for r in e["resource"]["relationship"] for c in r["coding"]}
        for e in related["entry"]
    }
    assert codes["demo-rp-mother-of-child-12"] == {"MTH"}
    assert codes["demo-rp-mother-of-child-15"] == {"MTH"}
    assert "GRFTH" in codes["demo-rp-grandparent-of-child-12"]
    assert "demo-rp-carer" in codes

    consents = {
        c["id"]: c
        for c in stored(
            client,
            "Consent",
            [
                "demo-consent-guardian-child-12",
                "demo-consent-guardian-child-15",
                "demo-consent-carer",
                "demo-consent-neighbour-revoked",
                "demo-consent-grandparent-expired",
            ],
        )
    }
    assert len(consents) == 5
    for consent in consents.values():
        assert consent["scope"]["coding"][0]["code"] == "patient-privacy"
        assert consent["category"][0]["coding"][0] == {
            "system": "http://loinc.org",
            "code": "59284-0",
            "display": "Patient Consent",
        }
        assert consent["provision"]["actor"][0]["reference"]["reference"].startswith(
            "RelatedPerson/"
        )
    for child in ("12", "15"):
        guardian = consents[f"demo-consent-guardian-child-{child}"]
        assert guardian["status"] == "active"
        assert guardian["patient"]["reference"] == f"Patient/demo-child-{child}"
        assert guardian["provision"]["type"] == "permit"
    carer = consents["demo-consent-carer"]
    assert carer["status"] == "active"
    assert (
        carer["provision"]["period"]["start"]
        <= today.isoformat()
        < carer["provision"]["period"]["end"]
    )
    assert {c["code"] for c in carer["provision"]["class"]} >= {
        "Observation",
        "MedicationRequest",
        "Appointment",
    }
    deny = carer["provision"]["provision"][0]
    assert deny["type"] == "deny"
    assert {label["code"] for label in deny["securityLabel"]} >= {"R", "PSY", "ETH"}
    assert consents["demo-consent-neighbour-revoked"]["status"] == "inactive"
    expired = consents["demo-consent-grandparent-expired"]
    assert (
        expired["status"] == "active" and expired["provision"]["period"]["end"] < today.isoformat()
    )

    # believable clinical data: vital signs and labs over several years, sensitive data labelled
    obs = client.get("/Observation", params={"patient": "demo-grandparent", "_count": 1000}).json()
    years = {e["resource"]["effectiveDateTime"][:4] for e in obs["entry"]}
    assert len(years) >= 5
    labelled = [
        e["resource"] for e in obs["entry"] if e["resource"].get("meta", {}).get("security")
    ]
    assert labelled
    for rtype in (
        "Condition",
        "AllergyIntolerance",
        "MedicationRequest",
        "Immunization",
        "Encounter",
        "Appointment",
    ):
        assert expected[rtype] > 0, rtype


def _answers(url: str, auth: httpx.Auth | None = None) -> bool:
    try:
        return httpx.get(url, timeout=2, verify=TLS, auth=auth).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_serve_loads_the_demo_once(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PHR_MONGODB_URI"}
    env.update(
        {"PHR_DATA_DIR": str(tmp_path / "db"), "PHR_PORT": str(port), "PHR_LOG_LEVEL": "INFO"}
    )
    base = f"http://127.0.0.1:{port}"

    def start(log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "seed_data", "serve"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(process: subprocess.Popen[bytes], log: Path) -> None:
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert process.wait(60) in (0, 130, -signal.SIGINT)
        port_line = next(
            line for line in log.read_text().splitlines() if "embedded database" in line
        )
        db_port = json.loads(port_line)["port"]
        assert not _answers_tcp(db_port), "the embedded database outlived the server"

    first_log = tmp_path / "first.log"
    process = start(first_log)
    try:
        wait_until(
            lambda: "demo scenario loaded" in first_log.read_text(),
            120,
            interval=0.2,
            what="the demo scenario to load",
        )
        uri = (tmp_path / "db.uri").read_text().strip()
        auth = BearerAuth(register_backend(uri, "phr", base + "/auth/token"))
        assert _answers(base + "/fhir/Patient/demo-child-15", auth)
        consents = httpx.get(
            base + "/fhir/Consent", params={"_summary": "count"}, verify=TLS, auth=auth
        ).json()
        assert consents["total"] == 5
        wait_until(
            lambda: "demo logins created" in first_log.read_text(),
            60,
            interval=0.2,
            what="the demo logins",
        )
        page = connect_with_the_demo_app(f"http://localhost:{port}", "helen")
        assert "Helen Marsh" in page and "Latest observations" in page
        assert "<td>" in page, "the app read Helen's Observations with its token"
        page = connect_with_the_demo_app(f"http://localhost:{port}", "helen-for-ruby")
        assert "Ruby Marsh" in page and "<td>" in page, "a guardian acts for the child"
    finally:
        stop(process, first_log)

    second_log = tmp_path / "second.log"
    process = start(second_log)
    try:
        wait_until(
            lambda: "demo scenario not loaded" in second_log.read_text(),
            120,
            interval=0.2,
            what="the seeder to find the demo",
        )
        history = httpx.get(
            base + "/fhir/Patient/demo-parent/_history", verify=TLS, auth=auth
        ).json()
        assert history["total"] == 1
    finally:
        stop(process, second_log)


def connect_with_the_demo_app(server: str, username: str) -> str:
    """`python -m seed_data app`'s journey: launch, log in as a demo user, approve, read."""
    accounts = json.loads((ROOT / "seed_data" / "accounts.json").read_text())
    port = free_port()
    app = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    browser = Browser(server)
    with serving(demo_app.create_app(server + "/fhir", port), port):
        launch = app.get("/launch")
        assert launch.status_code == 303
        login = browser.open(launch.headers["location"])
        assert forms(login.text), login.text
        values = {"username": username, "password": accounts["password"]}
        approval = browser.submit(login, values)
        assert len(forms(approval.text)) == 1, approval.text
        answer = browser.submit(approval, button=("decision", "approve"), follow=False)
        assert answer.status_code == 303, answer.text[:300]
        callback = urlsplit(answer.headers["location"])
        assert callback.path == "/callback"
        page = app.get(f"/callback?{callback.query}")
        assert page.status_code == 200, page.text
    browser.close()
    app.close()
    return page.text


def _answers_tcp(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
