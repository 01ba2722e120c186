"""The access decision: SMART scopes x patient context x delegation, per resource.

`decide` is pure (ARCHITECTURE.md item 6): the caller passes the token's context, what the request
wants to do (a SMART permission letter) and facts about the resource, and gets a Decision that
names the deciding rule. Default deny.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from consent.decision import DEFAULT_DENY, Decision, deny, permit
from consent.delegation import Request, decide_delegation
from consent.scopes import ResourceScope, Scopes

# Interactions -> the SMART v2 permission letter they need.
LETTERS = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "search-type": "s",
    "history-type": "s",
    "everything": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
}


@dataclass(frozen=True)
class Delegation:
    """What the caller loaded for a delegate acting for one patient."""

    consents: Sequence[Mapping[str, Any]]
    birth_date: date | None


@dataclass(frozen=True)
class AccessContext:
    """Who is asking, as the access token says."""

    client_id: str
    scopes: Scopes
    patient: str | None = None  # launch context: the patient the token is confined to
    fhir_user: str | None = None  # "Patient/1", "RelatedPerson/2", "Practitioner/3"
    delegations: Mapping[str, Delegation] = field(default_factory=dict)  # by patient id
    self_consent_age: int = 16


@dataclass(frozen=True)
class Target:
    """The resource acted on."""

    resource_type: str
    compartment: frozenset[str]  # ids of the patients it is about
    has_compartment: bool  # False for shared types (Practitioner, Organization, Medication...)
    security_labels: frozenset[str] = frozenset()


QueryMatch = Callable[[ResourceScope], bool]


def _scopes(ctx: AccessContext, context: str, rtype: str, letter: str) -> list[ResourceScope]:
    return [s for s in ctx.scopes.resources if s.covers(context, rtype, letter)]


def _granular(scopes: list[ResourceScope], matches: QueryMatch | None) -> bool:
    """Some scope allows it: an unfiltered one, or a granular one the resource matches."""
    return any(not s.query or (matches is not None and matches(s)) for s in scopes)


# Who may act for the patient is the patient's own decision (or an administrator's): a delegate
# never writes the Consents or RelatedPersons that grant delegation (catalogue DL-08).
DELEGATION_RECORDS = frozenset({"Consent", "RelatedPerson"})


def _delegate(
    ctx: AccessContext, patient: str, letter: str, target: Target, now: datetime
) -> Decision:
    assert ctx.fhir_user is not None
    if letter in {"c", "u", "d"} and target.resource_type in DELEGATION_RECORDS:
        return deny("delegates cannot change who may act for the patient", "delegation-records")
    delegation = ctx.delegations.get(patient)
    if delegation is None:
        return deny("no Consent lets this person act for the patient", "delegation-none")
    request = Request(ctx.fhir_user, patient, letter, target.resource_type, target.security_labels)
    return decide_delegation(
        request, delegation.consents, now, delegation.birth_date, ctx.self_consent_age
    )


def _for_patient(
    ctx: AccessContext, patient: str, letter: str, target: Target, now: datetime, rule: str
) -> Decision | None:
    """Access to `patient`'s data by this token's user: themselves, or a delegate under Consent."""
    if patient not in target.compartment:
        return None
    user = ctx.fhir_user or ""
    if user.startswith("RelatedPerson/"):
        return _delegate(ctx, patient, letter, target, now)
    if user and user != f"Patient/{patient}" and rule == "user-scope":
        return None
    return permit(f"{rule} covers the patient's own record", rule)


def decide(
    ctx: AccessContext,
    letter: str,
    target: Target,
    now: datetime,
    matches: QueryMatch | None = None,
) -> Decision:
    """May the token's holder do `letter` (c r u d s) to the target resource?"""
    rtype = target.resource_type
    system = _scopes(ctx, "system", rtype, letter)
    if system and _granular(system, matches):
        return permit("a system scope covers it", "system-scope")

    patient_scopes = _scopes(ctx, "patient", rtype, letter)
    if patient_scopes and ctx.patient is not None and _granular(patient_scopes, matches):
        if not target.has_compartment:
            if letter in {"r", "s"}:
                return permit("shared resources are readable in patient context", "patient-shared")
            return deny("patient context cannot change shared resources", "patient-shared-write")
        decision = _for_patient(ctx, ctx.patient, letter, target, now, "patient-scope")
        if decision is not None:
            return decision

    user_scopes = _scopes(ctx, "user", rtype, letter)
    if user_scopes and ctx.fhir_user and _granular(user_scopes, matches):
        if not target.has_compartment and letter in {"r", "s"}:
            return permit("shared resources are readable by users", "user-shared")
        user = ctx.fhir_user
        patients = (
            [user.removeprefix("Patient/")]
            if user.startswith("Patient/")
            else sorted(ctx.delegations)
        )
        for patient in patients:
            decision = _for_patient(ctx, patient, letter, target, now, "user-scope")
            if decision is not None:
                return decision
    if system or patient_scopes or user_scopes:
        return deny("the granted scopes do not reach this resource", "outside-permission")
    return DEFAULT_DENY
