"""The access decision, one row per rule: scopes x patient context x delegation."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from consent.policy import AccessContext, Delegation, Target, decide
from consent.scopes import parse_scopes
from tests.consent.test_delegation import CARER, GUARDIAN

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def ctx(scopes, patient=None, user=None, delegations=None):
    return AccessContext("app", parse_scopes(scopes), patient, user, delegations or {})


def obs(*patients, labels=()):
    return Target("Observation", frozenset(patients), True, frozenset(labels))


PRACTITIONER = Target("Practitioner", frozenset(), False)
MUM = {"child": Delegation([GUARDIAN], date(2014, 5, 1))}
CARER_OF_GRAN = {"gran": Delegation([CARER], None)}


@pytest.mark.parametrize(
    ("context", "letter", "target", "effect", "rule"),
    [
        # patient context: own compartment only
        (ctx("patient/*.rs", "A"), "r", obs("A"), "permit", "patient-scope"),
        (ctx("patient/*.rs", "A"), "r", obs("B"), "deny", "outside-permission"),
        (ctx("patient/*.rs", "A"), "r", obs("A", "B"), "permit", "patient-scope"),
        (ctx("patient/*.rs", "A"), "c", obs("A"), "deny", "default-deny"),
        (
            ctx("patient/Observation.rs", "A"),
            "r",
            Target("Condition", frozenset({"A"}), True),
            "deny",
            "default-deny",
        ),
        (ctx("patient/*.rs"), "r", obs("A"), "deny", "outside-permission"),  # no patient context
        (ctx("patient/*.cruds", "A"), "u", obs("A"), "permit", "patient-scope"),
        (ctx("patient/Observation.read", "A"), "s", obs("A"), "permit", "patient-scope"),  # v1
        (ctx("patient/Observation.write", "A"), "r", obs("A"), "deny", "default-deny"),
        # shared resources: readable, never writable, in patient context
        (ctx("patient/*.rs", "A"), "r", PRACTITIONER, "permit", "patient-shared"),
        (ctx("patient/*.cruds", "A"), "u", PRACTITIONER, "deny", "patient-shared-write"),
        # system scopes
        (ctx("system/*.rs"), "r", obs("B"), "permit", "system-scope"),
        (ctx("system/Observation.rs"), "d", obs("B"), "deny", "default-deny"),
        # user scopes: a patient user reads their own record only
        (ctx("user/*.rs", user="Patient/A"), "r", obs("A"), "permit", "user-scope"),
        (ctx("user/*.rs", user="Patient/A"), "r", obs("B"), "deny", "outside-permission"),
        (ctx("user/*.rs", user="Patient/A"), "r", PRACTITIONER, "permit", "user-shared"),
        # delegates: as their Consent says, in patient context or as a user
        (
            ctx("patient/*.rs", "child", "RelatedPerson/mum", MUM),
            "r",
            obs("child"),
            "permit",
            "Consent/guardian.provision",
        ),
        (
            ctx("patient/*.rs", "child", "RelatedPerson/mum", {}),
            "r",
            obs("child"),
            "deny",
            "delegation-none",
        ),
        (
            ctx("user/*.rs", user="RelatedPerson/mum", delegations=MUM),
            "r",
            obs("child"),
            "permit",
            "Consent/guardian.provision",
        ),
        (
            ctx("user/*.rs", user="RelatedPerson/mum", delegations=MUM),
            "r",
            obs("other"),
            "deny",
            "outside-permission",
        ),
        (
            ctx("user/*.rs", user="RelatedPerson/carer", delegations=CARER_OF_GRAN),
            "r",
            obs("gran", labels=["PSY"]),
            "deny",
            "Consent/carer.provision.provision[0]",
        ),
        (
            ctx("user/*.rs", user="RelatedPerson/carer", delegations=CARER_OF_GRAN),
            "r",
            Target("Condition", frozenset({"gran"}), True),
            "deny",
            "delegation-none",
        ),
        # a delegate never edits who may act for the patient (catalogue DL-08)
        (
            ctx("user/*.cruds", user="RelatedPerson/mum", delegations=MUM),
            "u",
            Target("Consent", frozenset({"child"}), True),
            "deny",
            "delegation-records",
        ),
        (
            ctx("patient/*.cruds", "child", "RelatedPerson/mum", MUM),
            "c",
            Target("RelatedPerson", frozenset({"child"}), True),
            "deny",
            "delegation-records",
        ),
        (
            ctx("user/*.rs", user="RelatedPerson/mum", delegations=MUM),
            "r",
            Target("Consent", frozenset({"child"}), True),
            "permit",
            "Consent/guardian.provision",
        ),
        # nothing granted
        (ctx("openid fhirUser", "A"), "r", obs("A"), "deny", "default-deny"),
    ],
)
def test_decide(context, letter, target, effect, rule):
    decision = decide(context, letter, target, NOW)
    assert (decision.effect, decision.rule) == (effect, rule)


@pytest.mark.parametrize(
    ("category", "effect"), [("laboratory", "permit"), ("vital-signs", "deny")]
)
def test_granular_scope(category, effect):
    context = ctx("patient/Observation.rs?category=laboratory", "A")

    def matches(scope):
        return dict(scope.query).get("category") == category

    assert decide(context, "r", obs("A"), NOW, matches).effect == effect
    assert decide(context, "r", obs("A"), NOW, None).effect == "deny", (
        "no matcher: no granular permit"
    )
