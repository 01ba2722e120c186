"""A read is decided from the compartment stored beside the resource (`pat`); the stored JSON is
parsed only when the decision needs its content (granular scopes, a delegate's security labels,
a Binary's `securityContext`, versions stored without `pat`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consent.policy import AccessContext, Delegation
from consent.scopes import parse_scopes
from fhir_server import access as access_module
from fhir_server.access import Access
from fhir_server.errors import FhirError
from fhir_server.jsonbody import dumps
from tests.consent.test_delegation import CARER

BASE = "http://example.org/fhir"
NOW = datetime(2026, 11, 27, tzinfo=UTC)  # within the carer's Consent period
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def observation(patient: str, category: str = "laboratory", labels: tuple[str, ...] = ()) -> bytes:
    return dumps(
        {
            "resourceType": "Observation",
            "id": "o",
            "meta": {"security": [{"code": code} for code in labels]},
            "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{patient}"},
        }
    )


def access(scopes: str, patient=None, user=None, delegations=None) -> Access:
    acc = Access(AccessContext("app", parse_scopes(scopes), patient, user, delegations or {}), BASE)
    acc.now = NOW
    return acc


@pytest.fixture
def parses(monkeypatch) -> list[bytes]:
    """The stored bodies `Access` parsed."""
    calls: list[bytes] = []
    real = access_module.loads

    def counting(data: bytes):
        calls.append(data)
        return real(data)

    monkeypatch.setattr(access_module, "loads", counting)
    return calls


def test_a_patient_read_is_decided_from_the_stored_compartment(parses):
    acc = access("patient/*.rs", "A")
    acc.check_read("r", "Observation", "o", observation("A"), ("A",))
    with pytest.raises(FhirError) as refused:
        acc.check_read("r", "Observation", "o", observation("B"), ("B",))
    assert refused.value.status == 404
    assert parses == [] and acc.patients == {"A", "B"}  # both named in the audit record


def test_a_system_read_records_the_stored_compartment(parses):
    acc = access("system/*.rs")
    acc.check_read("r", "Observation", "o", observation("B"), ("B",))
    assert parses == [] and acc.patients == {"B"}


@pytest.mark.parametrize(("category", "allowed"), [("laboratory", True), ("vital-signs", False)])
def test_a_granular_scope_is_checked_on_the_content(parses, category, allowed):
    acc = access("patient/Observation.rs?category=laboratory", "A")
    assert acc.allows("r", "Observation", observation("A", category), ("A",)) is allowed
    assert len(parses) == 1


def test_a_delegate_s_deny_labels_are_read_from_the_content(parses):
    acc = access(
        "user/*.rs", user="RelatedPerson/carer", delegations={"gran": Delegation([CARER], None)}
    )
    assert acc.allows("r", "Observation", observation("gran"), ("gran",))
    assert not acc.allows("r", "Observation", observation("gran", labels=("R",)), ("gran",))
    assert len(parses) == 2


def test_a_binary_follows_its_security_context_not_the_stored_compartment(parses):
    binary = {"resourceType": "Binary", "id": "b", "contentType": "text/plain"}
    mine = dumps({**binary, "securityContext": {"reference": "Patient/A"}})
    assert access("patient/*.rs", "A").allows("r", "Binary", mine, ())
    assert len(parses) == 1


def test_without_a_stored_compartment_the_content_decides(parses):
    acc = access("patient/*.rs", "A")  # history versions carry no `pat`
    assert not acc.allows("r", "Observation", observation("B"), None)
    assert len(parses) == 1 and acc.patients == {"A", "B"}
