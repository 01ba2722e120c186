"""SMART scope grammar, v1 and v2: a table per rule."""

from __future__ import annotations

import pytest

from consent.scopes import narrow, parse_scope, parse_scopes, within


@pytest.mark.parametrize(
    ("token", "context", "rtype", "letters", "query"),
    [
        ("patient/Observation.read", "patient", "Observation", "rs", ()),
        ("patient/Observation.write", "patient", "Observation", "cud", ()),
        ("patient/*.*", "patient", "*", "cruds", ()),
        ("user/Patient.rs", "user", "Patient", "rs", ()),
        ("system/*.cruds", "system", "*", "cruds", ()),
        ("patient/Observation.s", "patient", "Observation", "s", ()),
        (
            "patient/Condition.rs?category=http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern",
            "patient",
            "Condition",
            "rs",
            (
                (
                    "category",
                    "http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern",
                ),
            ),
        ),
        (
            "patient/Observation.rs?category=laboratory&status=final",
            "patient",
            "Observation",
            "rs",
            (("category", "laboratory"), ("status", "final")),
        ),
    ],
)
def test_valid_scopes(token, context, rtype, letters, query):
    scope = parse_scope(token)
    assert scope is not None
    assert (scope.context, scope.resource_type, scope.permissions, scope.query) == (
        context,
        rtype,
        frozenset(letters),
        query,
    )


@pytest.mark.parametrize(
    "token",
    [
        "patient/Observation.",  # no permission
        "patient/Observation.sr",  # letters out of order
        "patient/Observation.rr",  # repeated letter
        "patient/Observation.x",
        "doctor/Observation.read",  # unknown context
        "patient/observation.read",  # not a type name
        "patient/Observation.read?",  # empty filter
        "patient/Observation",
        "Observation.read",
        "patient/*.read extra",
    ],
)
def test_invalid_scopes(token):
    assert parse_scope(token) is None


def test_parse_scopes_splits_special_and_unknown():
    scopes = parse_scopes(
        "openid fhirUser launch/patient offline_access patient/*.rs bogus patient/*.rs"
    )
    assert scopes.special == {"openid", "fhirUser", "launch/patient", "offline_access"}
    assert [s.text for s in scopes.resources] == ["patient/*.rs"]
    assert scopes.unknown == ("bogus",)


@pytest.mark.parametrize(
    ("requested", "allowed", "ok"),
    [
        ("patient/Observation.rs", "patient/*.cruds", True),
        ("patient/Observation.rs", "patient/Observation.read", True),
        ("patient/Observation.cruds", "patient/Observation.rs", False),
        ("user/Observation.rs", "patient/*.rs", False),
        ("patient/Observation.rs?category=laboratory", "patient/Observation.rs", True),
        ("patient/Observation.rs", "patient/Observation.rs?category=laboratory", False),
        (
            "patient/Observation.rs?category=laboratory&status=final",
            "patient/Observation.rs?category=laboratory",
            True,
        ),
        ("patient/*.rs", "patient/Observation.rs", False),
    ],
)
def test_within(requested, allowed, ok):
    assert within(parse_scope(requested), parse_scope(allowed)) is ok


def test_narrow_keeps_only_allowed():
    requested = parse_scopes(
        "openid launch/patient patient/*.cruds patient/Observation.rs user/Patient.rs"
    )
    allowed = parse_scopes("openid launch/patient offline_access patient/Observation.read")
    granted = narrow(requested, allowed)
    assert [s.text for s in granted.resources] == ["patient/Observation.rs"]
    assert granted.special == {"openid", "launch/patient"}
