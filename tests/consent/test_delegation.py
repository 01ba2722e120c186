"""Delegation through FHIR Consent, one row per rule."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from consent.delegation import Request, decide_delegation

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PRIVACY = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
    ]
}


def role(code):
    return [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": code}]}
    ]


def consent(
    cid, actor, provision=None, status="active", patient="child", role_code="GUARD", **root
):
    prov = {
        "type": "permit",
        "actor": [{"role": role(role_code), "reference": {"reference": actor}}],
        **root,
    }
    if provision:
        prov["provision"] = provision
    return {
        "resourceType": "Consent",
        "id": cid,
        "status": status,
        "scope": PRIVACY,
        "patient": {"reference": f"Patient/{patient}"},
        "provision": prov,
    }


def action(code):
    return [
        {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": code}
            ]
        }
    ]


GUARDIAN = consent("guardian", "RelatedPerson/mum")
CARER = consent(
    "carer",
    "RelatedPerson/carer",
    patient="gran",
    role_code="CAREGIVER",
    period={"start": "2026-01-01", "end": "2026-12-31"},
    action=action("access"),
    **{
        "class": [
            {"system": "http://hl7.org/fhir/resource-types", "code": "Observation"},
            {"system": "http://hl7.org/fhir/resource-types", "code": "MedicationRequest"},
        ]
    },
    provision=[
        {
            "type": "deny",
            "securityLabel": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"},
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"},
            ],
        }
    ],
)
REVOKED = consent("revoked", "RelatedPerson/ex", status="inactive")
EXPIRED = consent(
    "expired", "RelatedPerson/aunt", period={"start": "2020-01-01", "end": "2021-01-01"}
)
DENY_BASE = consent(
    "denybase",
    "RelatedPerson/dad",
    provision=[{"type": "permit", "class": [{"code": "Immunization"}]}],
    type="deny",
)
OTHER_SCOPE = {**GUARDIAN, "id": "research", "scope": {"coding": [{"code": "research"}]}}
ALL = [GUARDIAN, CARER, REVOKED, EXPIRED, DENY_BASE, OTHER_SCOPE]


@pytest.mark.parametrize(
    ("actor", "patient", "letter", "rtype", "labels", "birth", "effect", "rule"),
    [
        (
            "RelatedPerson/mum",
            "child",
            "r",
            "Observation",
            (),
            date(2014, 5, 1),
            "permit",
            "Consent/guardian.provision",
        ),
        (
            "RelatedPerson/mum",
            "child",
            "u",
            "Patient",
            (),
            date(2014, 5, 1),
            "permit",
            "Consent/guardian.provision",
        ),
        (
            "RelatedPerson/mum",
            "other",
            "r",
            "Observation",
            (),
            date(2014, 5, 1),
            "deny",
            "delegation-none",
        ),
        # the guardian's consent lapses at the age of self-consent (16)
        (
            "RelatedPerson/mum",
            "child",
            "r",
            "Observation",
            (),
            date(2010, 11, 27),
            "deny",
            "Consent/guardian.age",
        ),
        (
            "RelatedPerson/mum",
            "child",
            "r",
            "Observation",
            (),
            date(2010, 11, 28),
            "permit",
            "Consent/guardian.provision",
        ),
        # the carer: reading Observations and MedicationRequests this year, nothing sensitive
        (
            "RelatedPerson/carer",
            "gran",
            "r",
            "Observation",
            (),
            None,
            "permit",
            "Consent/carer.provision",
        ),
        (
            "RelatedPerson/carer",
            "gran",
            "s",
            "MedicationRequest",
            (),
            None,
            "permit",
            "Consent/carer.provision",
        ),
        ("RelatedPerson/carer", "gran", "r", "Condition", (), None, "deny", "delegation-none"),
        ("RelatedPerson/carer", "gran", "u", "Observation", (), None, "deny", "delegation-none"),
        (
            "RelatedPerson/carer",
            "gran",
            "r",
            "Observation",
            ("PSY",),
            None,
            "deny",
            "Consent/carer.provision.provision[0]",
        ),
        (
            "RelatedPerson/carer",
            "gran",
            "r",
            "Observation",
            ("R",),
            None,
            "deny",
            "Consent/carer.provision.provision[0]",
        ),
        (
            "RelatedPerson/carer",
            "gran",
            "r",
            "Observation",
            ("N",),
            None,
            "permit",
            "Consent/carer.provision",
        ),
        # revoked and expired consents give nothing; other consent scopes are not delegation
        ("RelatedPerson/ex", "child", "r", "Observation", (), None, "deny", "delegation-none"),
        ("RelatedPerson/aunt", "child", "r", "Observation", (), None, "deny", "delegation-none"),
        # a deny base with a permit exception
        (
            "RelatedPerson/dad",
            "child",
            "r",
            "Immunization",
            (),
            None,
            "permit",
            "Consent/denybase.provision.provision[0]",
        ),
        (
            "RelatedPerson/dad",
            "child",
            "r",
            "Observation",
            (),
            None,
            "deny",
            "Consent/denybase.provision",
        ),
        ("Patient/child", "child", "r", "Observation", (), None, "deny", "delegation-none"),
    ],
)
def test_delegation(actor, patient, letter, rtype, labels, birth, effect, rule):
    request = Request(actor, patient, letter, rtype, frozenset(labels))
    decision = decide_delegation(request, ALL, NOW, birth)
    assert (decision.effect, decision.rule) == (effect, rule)


def test_carer_access_ends_with_the_period():
    request = Request("RelatedPerson/carer", "gran", "r", "Observation")
    later = datetime(2027, 1, 2, tzinfo=UTC)
    assert decide_delegation(request, [CARER], later, None).effect == "deny"


def test_deny_in_one_consent_overrides_permit_in_another():
    deny_all = consent("deny-all", "RelatedPerson/mum", type="deny")
    request = Request("RelatedPerson/mum", "child", "r", "Observation")
    decision = decide_delegation(request, [GUARDIAN, deny_all], NOW, None)
    assert (decision.effect, decision.rule) == ("deny", "Consent/deny-all.provision")


UNTESTED = [
    ("dataPeriod", {"start": "2020-01-01", "end": "2021-01-01"}),
    ("data", [{"meaning": "instance", "reference": {"reference": "Observation/1"}}]),
    ("code", [{"coding": [{"system": "http://loinc.org", "code": "8302-2"}]}]),
    (
        "purpose",
        [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
    ),
]


@pytest.mark.parametrize(("name", "value"), UNTESTED)
def test_a_permit_limited_by_an_untested_condition_grants_nothing(name, value):
    limited = consent("limited", "RelatedPerson/mum", **{name: value})
    request = Request("RelatedPerson/mum", "child", "r", "Observation")
    decision = decide_delegation(request, [limited], NOW, None)
    assert (decision.effect, decision.rule) == ("deny", "delegation-none")


@pytest.mark.parametrize(("name", "value"), UNTESTED)
def test_a_deny_limited_by_an_untested_condition_denies_without_the_limit(name, value):
    limited = consent("limited", "RelatedPerson/mum", provision=[{"type": "deny", name: value}])
    request = Request("RelatedPerson/mum", "child", "r", "Observation")
    decision = decide_delegation(request, [limited], NOW, None)
    assert (decision.effect, decision.rule) == ("deny", "Consent/limited.provision.provision[0]")
    assert name in decision.reason


def test_a_deny_limited_to_a_class_and_an_untested_condition_keeps_its_class():
    limited = consent(
        "limited",
        "RelatedPerson/mum",
        provision=[{"type": "deny", "class": [{"code": "Condition"}], "code": UNTESTED[2][1]}],
    )
    allowed = Request("RelatedPerson/mum", "child", "r", "Observation")
    assert decide_delegation(allowed, [limited], NOW, None).effect == "permit"
    denied = Request("RelatedPerson/mum", "child", "r", "Condition")
    assert decide_delegation(denied, [limited], NOW, None).effect == "deny"
