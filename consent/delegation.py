"""Delegated access through FHIR Consent: https://hl7.org/fhir/R4/consent.html.

A family member, carer or guardian is a RelatedPerson of the patient. What they may do is what an
active Consent says: scope `patient-privacy`, `provision.actor` naming that RelatedPerson, and
permit/deny provisions (nested) limited by period, action, resource class and security label (the
other conditions fail closed, `UNTESTED_CONDITIONS`). Deny overrides permit. A guardian's consent
for a minor lapses when the minor reaches the age of self-consent (ARCHITECTURE.md item 8). Pure:
the caller loads the Consents and passes them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from consent.decision import Decision, deny, deny_overrides, permit

PRIVACY_SCOPE = "patient-privacy"
ACTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentaction"
# SMART permission letters -> Consent actions (http://terminology.hl7.org/CodeSystem/consentaction).
LETTER_ACTIONS = {
    "r": {"access", "use"},
    "s": {"access", "use"},
    "c": {"collect"},
    "u": {"correct"},
    "d": {"correct"},
}
GUARDIAN_ROLES = frozenset({"GUARD", "PRN", "MTH", "FTH", "PRNINLAW", "STPPRN", "NPRN"})
# Provision conditions this server does not test (the data's clinical period, codes or instances,
# the purpose of use). Ignoring one would widen what the patient allowed, so it fails closed: a
# permit limited by one grants nothing, and a deny limited by one denies without the limit.
UNTESTED_CONDITIONS = ("dataPeriod", "data", "code", "purpose")


@dataclass(frozen=True)
class Request:
    """What a delegate wants to do, on which resource."""

    actor: str  # "RelatedPerson/<id>"
    patient: str  # the patient whose data it is (id)
    letter: str  # SMART permission letter: c r u d s
    resource_type: str
    security_labels: frozenset[str] = frozenset()  # codes from meta.security


def _codes(concepts: Any) -> set[str]:
    out: set[str] = set()
    for concept in concepts if isinstance(concepts, list) else [concepts]:
        if isinstance(concept, dict):
            for coding in concept.get("coding") or ([concept] if "code" in concept else []):
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    out.add(coding["code"])
    return out


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text + "T00:00:00+00:00")
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def in_period(period: Any, now: datetime) -> bool:
    if not isinstance(period, dict):
        return True
    start, end = _instant(period.get("start")), _instant(period.get("end"))
    if start is not None and now < start:
        return False
    return not (end is not None and now > end)


def _reference(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return str(value["reference"]).split("/_history/")[0]
    return None


def _names_actor(provision: Mapping[str, Any], actor: str) -> bool:
    return any(
        _reference(a.get("reference")) == actor
        for a in provision.get("actor") or []
        if isinstance(a, dict)
    )


def _actor_roles(provision: Mapping[str, Any], actor: str) -> set[str]:
    roles: set[str] = set()
    for a in provision.get("actor") or []:
        if isinstance(a, dict) and _reference(a.get("reference")) == actor:
            roles |= _codes(a.get("role"))
    return roles


def _applies(provision: Mapping[str, Any], request: Request, now: datetime) -> bool:
    """Does this provision's own conditions cover the request (actor handled by the caller)?"""
    if not in_period(provision.get("period"), now):
        return False
    actions = _codes(provision.get("action"))
    if actions and not actions & LETTER_ACTIONS.get(request.letter, set()):
        return False
    classes = {c.get("code") for c in provision.get("class") or [] if isinstance(c, dict)}
    if classes and request.resource_type not in classes:
        return False
    labels = {s.get("code") for s in provision.get("securityLabel") or [] if isinstance(s, dict)}
    return not (labels and not labels & request.security_labels)


def _evaluate(
    provision: Mapping[str, Any], request: Request, now: datetime, rule: str, inherited_actor: bool
) -> Decision | None:
    """A provision's decision for the request, or None if it does not apply. Nested provisions
    are exceptions to their parent: when some apply, they decide (deny overriding permit among
    them); otherwise the provision's own type does."""
    names_actor = inherited_actor or _names_actor(provision, request.actor)
    if not names_actor or not _applies(provision, request, now):
        return None
    if untested := [name for name in UNTESTED_CONDITIONS if provision.get(name)]:
        if provision.get("type") != "deny":
            return None
        return deny(f"Consent provision (deny) limited by {', '.join(untested)}, not tested", rule)
    exceptions = [
        decision
        for index, nested in enumerate(provision.get("provision") or [])
        if isinstance(nested, dict)
        and (decision := _evaluate(nested, request, now, f"{rule}.provision[{index}]", True))
    ]
    if exceptions:
        return deny_overrides(exceptions)
    kind = "deny" if provision.get("type") == "deny" else "permit"
    return (deny if kind == "deny" else permit)(f"Consent provision ({kind})", rule)


def _age(birth_date: date, on: date) -> int:
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


def decide_delegation(
    request: Request,
    consents: Iterable[Mapping[str, Any]],
    now: datetime,
    patient_birth_date: date | None,
    self_consent_age: int = 16,
) -> Decision:
    """Whether `request.actor` may act for `request.patient` under the given Consents."""
    decisions: list[Decision] = []
    for consent in consents:
        cid = consent.get("id", "?")
        rule = f"Consent/{cid}"
        if consent.get("status") != "active":
            continue
        if PRIVACY_SCOPE not in _codes(consent.get("scope")):
            continue
        if _reference(consent.get("patient")) != f"Patient/{request.patient}":
            continue
        provision = consent.get("provision")
        if not isinstance(provision, dict) or not _names_actor(provision, request.actor):
            continue
        if not in_period(provision.get("period"), now):
            continue
        roles = _actor_roles(provision, request.actor)
        if (
            roles & GUARDIAN_ROLES
            and patient_birth_date is not None
            and _age(patient_birth_date, now.date()) >= self_consent_age
        ):
            decisions.append(
                deny(f"guardian consent lapsed at the age of {self_consent_age}", f"{rule}.age")
            )
            continue
        decision = _evaluate(provision, request, now, f"{rule}.provision", False)
        if decision is not None:
            decisions.append(decision)
    if not decisions:
        return deny("no active Consent lets this person act for the patient", "delegation-none")
    return deny_overrides(decisions)
