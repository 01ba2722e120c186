"""Writes the demo scenario, `seed_data/demo/*.json`: `python -m seed_data.build_demo`.

The scenario (seed_data/README.md) is written by hand in the tables below: who the family are,
who may see what, their conditions, medicines, allergies and vaccinations, and the visits where they
were recorded. Only the measurement series (growth, blood pressure, lab results) are filled in
from a seeded random generator around the trends written here, so the output is the same on every
run.
The JSON files are committed: loading them needs none of this code. Edit here, re-run, commit both.

Every resource has a stable id (`demo-...`) and every entry is a `PUT Type/id`, so loading the files
again changes nothing. All dates are fixed; the story is told as of 2026-11-27.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

OUT = Path(__file__).resolve().parent / "demo"
AS_OF = date(2026, 11, 27)

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CONTACT_ROLE = "http://terminology.hl7.org/CodeSystem/v2-0131"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
MRN = "http://example.org/fhir/sid/riverside-mrn"
DEMO_TAG = {"system": "http://example.org/fhir/CodeSystem/phr-demo", "code": "demo"}

# security labels (meta.security) of sensitive records: restricted, plus the kind of sensitivity
RESTRICTED = {"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}
PSY = {"system": ACT_CODE, "code": "PSY", "display": "psychiatry disorder information sensitivity"}
ETH = {"system": ACT_CODE, "code": "ETH", "display": "substance abuse information sensitivity"}

ORG_GP = "demo-org-riverside"
ORG_HOSPITAL = "demo-org-st-marys"
ORG_CARE = "demo-org-brightside"
GP = "demo-practitioner-osei"
PAEDIATRICIAN = "demo-practitioner-weber"
NURSE = "demo-practitioner-lindqvist"


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def concept(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    return {"coding": [coding(system, code, display)], "text": text or display}


def ref(rtype: str, rid: str, display: str | None = None) -> dict[str, str]:
    out = {"reference": f"{rtype}/{rid}"}
    if display:
        out["display"] = display
    return out


def instant(day: date, hour: int = 9, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute).isoformat() + "Z"


def quantity(value: float, unit: str, code: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


def narrative(text: str) -> dict[str, str]:
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{text}</div>'}


def years_between(born: date, on: date) -> float:
    return (on - born).days / 365.25


# -- the people --------------------------------------------------------------------------------


@dataclass
class Person:
    key: str  # the Patient id
    given: str
    family: str
    gender: str
    born: date
    mrn: str
    seed: int
    practitioner: str = GP
    resources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"

    @property
    def subject(self) -> dict[str, str]:
        return ref("Patient", self.key, self.name)

    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        self.resources.append(resource)
        return resource


HELEN = Person("demo-parent", "Helen", "Marsh", "female", date(1984, 3, 22), "RFP-100231", 1)
OLIVER = Person(
    "demo-child-15", "Oliver", "Marsh", "male", date(2011, 1, 15), "RFP-100232", 2, PAEDIATRICIAN
)
RUBY = Person(
    "demo-child-12", "Ruby", "Marsh", "female", date(2014, 6, 9), "RFP-100233", 3, PAEDIATRICIAN
)
ARTHUR = Person("demo-grandparent", "Arthur", "Bell", "male", date(1945, 8, 2), "RFP-004417", 4)

ADDRESS = {
    "use": "home",
    "line": ["14 Orchard Lane"],
    "city": "Springfield",
    "state": "IL",
    "postalCode": "62704",
    "country": "US",
}
ARTHUR_ADDRESS = {**ADDRESS, "line": ["3 Mill Cottages, Station Road"], "postalCode": "62702"}


def patient(
    p: Person,
    telecom: list[dict[str, str]],
    address: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": p.key,
        "identifier": [
            {
                "use": "usual",
                "type": concept(
                    "http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number"
                ),
                "system": MRN,
                "value": p.mrn,
            }
        ],
        "active": True,
        "name": [{"use": "official", "family": p.family, "given": [p.given]}],
        "telecom": telecom,
        "gender": p.gender,
        "birthDate": p.born.isoformat(),
        "address": [address],
        "communication": [
            {
                "language": concept("urn:ietf:bcp:47", "en-US", "English (United States)"),
                "preferred": True,
            }
        ],
        "generalPractitioner": [ref("Practitioner", p.practitioner)],
        "managingOrganization": ref("Organization", ORG_GP, "Riverside Family Practice"),
        **(extra or {}),
    }


def related_person(
    rid: str,
    p: Person,
    who: tuple[str, str],
    gender: str,
    relationship: list[dict[str, Any]],
    start: date,
    telecom: list[dict[str, str]],
    born: date | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "id": rid,
        "active": True,
        "patient": p.subject,
        "relationship": relationship,
        "name": [{"use": "official", "family": who[1], "given": [who[0]]}],
        "telecom": telecom,
        "gender": gender,
        "period": {"start": start.isoformat()},
    }
    if born:
        out["birthDate"] = born.isoformat()
    return out


HELEN_PHONE = [
    {"system": "phone", "value": "+1-217-555-0142", "use": "mobile"},
    {"system": "email", "value": "helen.marsh@example.org"},
]
ARTHUR_PHONE = [{"system": "phone", "value": "+1-217-555-0187", "use": "home"}]
GRACE_PHONE = [
    {"system": "phone", "value": "+1-217-555-0163", "use": "work"},
    {"system": "email", "value": "grace.adeyemi@brightside.example.org"},
]
MARGARET_PHONE = [{"system": "phone", "value": "+1-217-555-0119", "use": "home"}]


def family() -> list[dict[str, Any]]:
    """Organizations, practitioners, the four patients, their related persons, persons, consents."""
    out: list[dict[str, Any]] = [
        {
            "resourceType": "Organization",
            "id": ORG_GP,
            "active": True,
            "type": [
                concept(
                    "http://terminology.hl7.org/CodeSystem/organization-type",
                    "prov",
                    "Healthcare Provider",
                )
            ],
            "name": "Riverside Family Practice",
            "telecom": [{"system": "phone", "value": "+1-217-555-0100"}],
            "address": [
                {
                    "line": ["220 River Road"],
                    "city": "Springfield",
                    "state": "IL",
                    "postalCode": "62701",
                    "country": "US",
                }
            ],
        },
        {
            "resourceType": "Organization",
            "id": ORG_HOSPITAL,
            "active": True,
            "type": [
                concept(
                    "http://terminology.hl7.org/CodeSystem/organization-type",
                    "prov",
                    "Healthcare Provider",
                )
            ],
            "name": "St Mary's Hospital",
            "telecom": [{"system": "phone", "value": "+1-217-555-0150"}],
            "address": [
                {
                    "line": ["800 East Carpenter Street"],
                    "city": "Springfield",
                    "state": "IL",
                    "postalCode": "62769",
                    "country": "US",
                }
            ],
        },
        {
            "resourceType": "Organization",
            "id": ORG_CARE,
            "active": True,
            "type": [
                concept(
                    "http://terminology.hl7.org/CodeSystem/organization-type",
                    "other",
                    "Other",
                    "Home care agency",
                )
            ],
            "name": "Brightside Home Care",
            "telecom": [{"system": "phone", "value": "+1-217-555-0160"}],
        },
    ]
    for pid, given, family_name, gender, npi, qualification in (
        (GP, "Amara", "Osei", "female", "9990000011", "Family medicine"),
        (PAEDIATRICIAN, "Jonas", "Weber", "male", "9990000029", "Pediatrics"),
        (NURSE, "Ingrid", "Lindqvist", "female", "9990000037", "Registered nurse"),
    ):
        out.append(
            {
                "resourceType": "Practitioner",
                "id": pid,
                "active": True,
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}],
                "name": [
                    {
                        "family": family_name,
                        "given": [given],
                        **({"prefix": ["Dr."]} if pid != NURSE else {}),
                    }
                ],
                "gender": gender,
                "qualification": [{"code": {"text": qualification}}],
            }
        )
    out += [
        patient(
            HELEN,
            HELEN_PHONE,
            ADDRESS,
            {
                "maritalStatus": concept(
                    "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "D", "Divorced"
                )
            },
        ),
        patient(OLIVER, HELEN_PHONE, ADDRESS),
        patient(RUBY, HELEN_PHONE, ADDRESS),
        patient(
            ARTHUR,
            ARTHUR_PHONE,
            ARTHUR_ADDRESS,
            {
                "maritalStatus": concept(
                    "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "W", "Widowed"
                ),
                "contact": [
                    {
                        "relationship": [concept(CONTACT_ROLE, "N", "Next-of-Kin")],
                        "name": {"family": "Marsh", "given": ["Helen"]},
                        "telecom": HELEN_PHONE,
                    }
                ],
            },
        ),
    ]
    mother = [concept(ROLE_CODE, "MTH", "mother")]
    out += [
        related_person(
            "demo-rp-mother-of-child-12",
            RUBY,
            ("Helen", "Marsh"),
            "female",
            mother,
            RUBY.born,
            HELEN_PHONE,
            HELEN.born,
        ),
        related_person(
            "demo-rp-mother-of-child-15",
            OLIVER,
            ("Helen", "Marsh"),
            "female",
            mother,
            OLIVER.born,
            HELEN_PHONE,
            HELEN.born,
        ),
        related_person(
            "demo-rp-daughter-of-grandparent",
            ARTHUR,
            ("Helen", "Marsh"),
            "female",
            [
                concept(ROLE_CODE, "DAU", "natural daughter"),
                concept(CONTACT_ROLE, "N", "Next-of-Kin"),
            ],
            date(2019, 5, 2),
            HELEN_PHONE,
            HELEN.born,
        ),
        related_person(
            "demo-rp-grandparent-of-child-12",
            RUBY,
            ("Arthur", "Bell"),
            "male",
            [concept(ROLE_CODE, "GRFTH", "grandfather")],
            date(2025, 6, 25),
            ARTHUR_PHONE,
            ARTHUR.born,
        ),
        related_person(
            "demo-rp-carer",
            ARTHUR,
            ("Grace", "Adeyemi"),
            "female",
            [concept(ROLE_CLASS, "CAREGIVER", "caregiver", "Home carer (Brightside Home Care)")],
            date(2026, 9, 1),
            GRACE_PHONE,
        ),
        related_person(
            "demo-rp-neighbour",
            ARTHUR,
            ("Margaret", "Dunn"),
            "female",
            [concept(ROLE_CODE, "NBOR", "neighbor")],
            date(2025, 2, 3),
            MARGARET_PHONE,
        ),
    ]
    out[-1]["active"] = False
    out[-1]["period"]["end"] = "2026-03-14"
    out += persons() + consents()
    return out


def persons() -> list[dict[str, Any]]:
    """One Person per (future) login account, linking the records that person may act as."""

    def person(
        pid: str, name: tuple[str, str], links: list[tuple[str, str]], telecom: list[dict[str, str]]
    ) -> dict[str, Any]:
        return {
            "resourceType": "Person",
            "id": pid,
            "active": True,
            "name": [{"family": name[1], "given": [name[0]]}],
            "telecom": telecom,
            "link": [{"target": ref(t, i), "assurance": "level3"} for t, i in links],
        }

    return [
        person(
            "demo-person-helen",
            ("Helen", "Marsh"),
            [
                ("Patient", HELEN.key),
                ("RelatedPerson", "demo-rp-mother-of-child-12"),
                ("RelatedPerson", "demo-rp-mother-of-child-15"),
                ("RelatedPerson", "demo-rp-daughter-of-grandparent"),
            ],
            HELEN_PHONE,
        ),
        person("demo-person-oliver", ("Oliver", "Marsh"), [("Patient", OLIVER.key)], []),
        person(
            "demo-person-arthur",
            ("Arthur", "Bell"),
            [
                ("Patient", ARTHUR.key),
                ("RelatedPerson", "demo-rp-grandparent-of-child-12"),
            ],
            ARTHUR_PHONE,
        ),
        person(
            "demo-person-grace",
            ("Grace", "Adeyemi"),
            [("RelatedPerson", "demo-rp-carer")],
            GRACE_PHONE,
        ),
        person(
            "demo-person-margaret",
            ("Margaret", "Dunn"),
            [("RelatedPerson", "demo-rp-neighbour")],
            MARGARET_PHONE,
        ),
    ]


def consent(
    cid: str,
    status: str,
    p: Person,
    performer: dict[str, str],
    signed: date,
    text: str,
    provision: dict[str, Any],
) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": cid,
        "text": narrative(text),
        "status": status,
        "scope": concept(
            "http://terminology.hl7.org/CodeSystem/consentscope",
            "patient-privacy",
            "Privacy Consent",
        ),
        "category": [concept(LOINC, "59284-0", "Patient Consent")],
        "patient": p.subject,
        "dateTime": instant(signed, 10, 30),
        "performer": [performer],
        "organization": [ref("Organization", ORG_GP, "Riverside Family Practice")],
        "policyRule": concept(ACT_CODE, "OPTIN", "opt-in"),
        "provision": provision,
    }


def actor(role: dict[str, Any], rid: str, display: str) -> list[dict[str, Any]]:
    return [{"role": role, "reference": ref("RelatedPerson", rid, display)}]


def actions(*codes: str) -> list[dict[str, Any]]:
    system = "http://terminology.hl7.org/CodeSystem/consentaction"
    return [concept(system, c, c.capitalize()) for c in codes]


def classes(*types: str) -> list[dict[str, str]]:
    return [{"system": "http://hl7.org/fhir/resource-types", "code": t} for t in types]


GUARDIAN = concept(ROLE_CLASS, "GUARD", "guardian")
CAREGIVER = concept(ROLE_CLASS, "CAREGIVER", "caregiver")
RECIPIENT = concept(PARTICIPATION, "IRCP", "information recipient")


def consents() -> list[dict[str, Any]]:
    helen_for_ruby = ref("RelatedPerson", "demo-rp-mother-of-child-12", "Helen Marsh (mother)")
    return [
        consent(
            "demo-consent-guardian-child-12",
            "active",
            RUBY,
            helen_for_ruby,
            date(2014, 6, 20),
            "Helen Marsh, Ruby's mother and guardian, may see and correct Ruby's whole record.",
            {
                "type": "permit",
                "period": {"start": RUBY.born.isoformat()},
                "actor": actor(GUARDIAN, "demo-rp-mother-of-child-12", "Helen Marsh (mother)"),
                "action": actions("access", "correct"),
            },
        ),
        consent(
            "demo-consent-guardian-child-15",
            "active",
            OLIVER,
            ref("RelatedPerson", "demo-rp-mother-of-child-15", "Helen Marsh (mother)"),
            date(2011, 1, 20),
            "Helen Marsh, Oliver's mother and guardian, may see and correct Oliver's whole record"
            " until he reaches the age of self-consent (16, on 2027-01-15).",
            {
                "type": "permit",
                "period": {"start": OLIVER.born.isoformat()},
                "actor": actor(GUARDIAN, "demo-rp-mother-of-child-15", "Helen Marsh (mother)"),
                "action": actions("access", "correct"),
            },
        ),
        consent(
            "demo-consent-carer",
            "active",
            ARTHUR,
            ARTHUR.subject,
            date(2026, 8, 28),
            "Grace Adeyemi (Brightside Home Care) may read Arthur's observations, medication"
            " requests, allergies and appointments from 2026-09-01 to 2027-02-28, except"
            " restricted, mental health and substance use information.",
            {
                "type": "permit",
                "period": {"start": "2026-09-01", "end": "2027-02-28"},
                "actor": actor(CAREGIVER, "demo-rp-carer", "Grace Adeyemi (home carer)"),
                "action": actions("access"),
                "class": classes(
                    "Observation", "MedicationRequest", "AllergyIntolerance", "Appointment"
                ),
                "provision": [{"type": "deny", "securityLabel": [RESTRICTED, PSY, ETH]}],
            },
        ),
        consent(
            "demo-consent-neighbour-revoked",
            "inactive",
            ARTHUR,
            ARTHUR.subject,
            date(2025, 2, 3),
            "Margaret Dunn, Arthur's neighbour, could read his appointments and medication"
            " requests; Arthur revoked this consent on 2026-03-14.",
            {
                "type": "permit",
                "period": {"start": "2025-02-03", "end": "2027-02-03"},
                "actor": actor(RECIPIENT, "demo-rp-neighbour", "Margaret Dunn (neighbour)"),
                "action": actions("access"),
                "class": classes("Appointment", "MedicationRequest"),
            },
        ),
        consent(
            "demo-consent-grandparent-expired",
            "active",
            RUBY,
            helen_for_ruby,
            date(2025, 6, 25),
            "Arthur Bell, Ruby's grandfather, could read her allergies, conditions, medication"
            " requests and immunizations while she stayed with him in summer 2025"
            " (2025-07-01 to 2025-08-31); the consent has expired.",
            {
                "type": "permit",
                "period": {"start": "2025-07-01", "end": "2025-08-31"},
                "actor": actor(
                    RECIPIENT, "demo-rp-grandparent-of-child-12", "Arthur Bell (grandfather)"
                ),
                "action": actions("access"),
                "class": classes(
                    "AllergyIntolerance", "Condition", "MedicationRequest", "Immunization"
                ),
            },
        ),
    ]


# -- clinical records ----------------------------------------------------------------------------

ENCOUNTER_TYPES = {
    "checkup": ("AMB", "ambulatory", "185349003", "Encounter for check up"),
    "well-child": ("AMB", "ambulatory", "410620009", "Well child visit"),
    "symptom": ("AMB", "ambulatory", "185345009", "Encounter for symptom"),
    "follow-up": ("AMB", "ambulatory", "390906007", "Follow-up encounter"),
    "emergency": ("EMER", "emergency", "50849002", "Emergency room admission"),
    "immunization": (
        "AMB",
        "ambulatory",
        "33879002",
        "Administration of vaccine to produce active immunity",
    ),
}


def encounter(
    p: Person,
    day: date,
    kind: str,
    hour: int = 9,
    minutes: int = 20,
    practitioner: str | None = None,
    reason: dict[str, Any] | None = None,
    organization: str = ORG_GP,
) -> str:
    act, act_display, code, display = ENCOUNTER_TYPES[kind]
    eid = f"{p.key}-enc-{day.isoformat()}-{kind}"
    start = datetime(day.year, day.month, day.day, hour, 0)
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", act, act_display),
        "type": [concept(SNOMED, code, display)],
        "subject": p.subject,
        "participant": [{"individual": ref("Practitioner", practitioner or p.practitioner)}],
        "period": {
            "start": start.isoformat() + "Z",
            "end": (start + timedelta(minutes=minutes)).isoformat() + "Z",
        },
        "serviceProvider": ref("Organization", organization),
    }
    if reason:
        resource["reasonCode"] = [reason]
    p.add(resource)
    return eid


@dataclass(frozen=True)
class Test:
    code: str
    display: str
    unit: str
    category: str = "laboratory"
    low: float | None = None
    high: float | None = None
    decimals: int = 1
    ucum: str | None = None


BODY_WEIGHT = Test("29463-7", "Body weight", "kg", "vital-signs")
BODY_HEIGHT = Test("8302-2", "Body height", "cm", "vital-signs")
BMI = Test("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", "vital-signs")
HEART_RATE = Test("8867-4", "Heart rate", "/min", "vital-signs", decimals=0)
TEMPERATURE = Test("8310-5", "Body temperature", "Cel", "vital-signs")
HBA1C = Test("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", low=4.0, high=5.6)
TSH = Test(
    "3016-3",
    "Thyrotropin [Units/volume] in Serum or Plasma",
    "m[IU]/L",
    low=0.4,
    high=4.0,
    decimals=2,
)
FREE_T4 = Test(
    "3024-7",
    "Thyroxine (T4) free [Mass/volume] in Serum or Plasma",
    "ng/dL",
    low=0.8,
    high=1.8,
    decimals=2,
)
CHOLESTEROL = Test(
    "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", high=200, decimals=0
)
HDL = Test(
    "2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", low=40, decimals=0
)
LDL = Test(
    "18262-6",
    "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay",
    "mg/dL",
    high=130,
    decimals=0,
)
TRIGLYCERIDES = Test(
    "2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", high=150, decimals=0
)
CREATININE = Test(
    "2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", low=0.7, high=1.3, decimals=2
)
EGFR = Test(
    "33914-3",
    "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in"
    " Serum or Plasma by Creatinine-based formula (MDRD)",
    "mL/min/{1.73_m2}",
    low=60,
    decimals=0,
)
POTASSIUM = Test(
    "2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", low=3.5, high=5.1
)
GLUCOSE = Test(
    "2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", low=70, high=99, decimals=0
)
HEMOGLOBIN = Test("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", low=12.0, high=17.5)
PHQ9 = Test(
    "44261-6",
    "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
    "{score}",
    "survey",
    decimals=0,
)
AUDIT_C = Test("75626-2", "Total score [AUDIT-C]", "{score}", "survey", decimals=0)
CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "laboratory": "Laboratory", "survey": "Survey"}


def observation(
    p: Person,
    eid: str,
    day: date,
    slug: str,
    test: Test,
    value: float,
    hour: int = 9,
    security: list[dict[str, str]] | None = None,
) -> None:
    rounded = round(value, test.decimals) if test.decimals else round(value)
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"{p.key}-obs-{day.isoformat()}-{slug}",
        "status": "final",
        "category": [concept(OBS_CATEGORY, test.category, CATEGORY_DISPLAY[test.category])],
        "code": concept(LOINC, test.code, test.display),
        "subject": p.subject,
        "encounter": ref("Encounter", eid),
        "effectiveDateTime": instant(day, hour, 15),
        "issued": instant(day + timedelta(days=1 if test.category == "laboratory" else 0), 16),
        "valueQuantity": quantity(rounded, test.unit, test.ucum),
    }
    if test.category == "laboratory":
        resource["performer"] = [ref("Organization", ORG_HOSPITAL, "St Mary's Hospital laboratory")]
    if test.low is not None or test.high is not None:
        bound: dict[str, Any] = {}
        if test.low is not None:
            bound["low"] = quantity(test.low, test.unit, test.ucum)
        if test.high is not None:
            bound["high"] = quantity(test.high, test.unit, test.ucum)
        resource["referenceRange"] = [bound]
        flag = (
            ("H", "High")
            if test.high is not None and rounded > test.high
            else (("L", "Low") if test.low is not None and rounded < test.low else ("N", "Normal"))
        )
        resource["interpretation"] = [
            concept("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", *flag)
        ]
    if security:
        resource["meta"] = {"security": security}
    p.add(resource)


def blood_pressure(p: Person, eid: str, day: date, systolic: float, diastolic: float) -> None:
    def component(code: str, display: str, value: float) -> dict[str, Any]:
        return {
            "code": concept(LOINC, code, display),
            "valueQuantity": quantity(round(value), "mm[Hg]"),
        }

    p.add(
        {
            "resourceType": "Observation",
            "id": f"{p.key}-obs-{day.isoformat()}-bp",
            "status": "final",
            "category": [concept(OBS_CATEGORY, "vital-signs", "Vital Signs")],
            "code": concept(
                LOINC,
                "85354-6",
                "Blood pressure panel with all children optional",
                "Blood pressure",
            ),
            "subject": p.subject,
            "encounter": ref("Encounter", eid),
            "effectiveDateTime": instant(day, 9, 10),
            "component": [
                component("8480-6", "Systolic blood pressure", systolic),
                component("8462-4", "Diastolic blood pressure", diastolic),
            ],
        }
    )


def condition(
    p: Person,
    slug: str,
    code: str,
    display: str,
    onset: date,
    eid: str | None = None,
    abated: date | None = None,
    status: str | None = None,
    security: list[dict[str, str]] | None = None,
) -> str:
    clinical = status or ("resolved" if abated else "active")
    cid = f"{p.key}-cond-{slug}"
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": concept(
            "http://terminology.hl7.org/CodeSystem/condition-clinical",
            clinical,
            clinical.capitalize(),
        ),
        "verificationStatus": concept(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"
        ),
        "category": [
            concept(
                "http://terminology.hl7.org/CodeSystem/condition-category",
                "problem-list-item" if not abated else "encounter-diagnosis",
                "Problem List Item" if not abated else "Encounter Diagnosis",
            )
        ],
        "code": concept(SNOMED, code, display),
        "subject": p.subject,
        "onsetDateTime": onset.isoformat(),
        "recordedDate": onset.isoformat(),
        "recorder": ref("Practitioner", p.practitioner),
    }
    if eid:
        resource["encounter"] = ref("Encounter", eid)
    if abated:
        resource["abatementDateTime"] = abated.isoformat()
    if security:
        resource["meta"] = {"security": security}
    p.add(resource)
    return cid


def allergy(
    p: Person,
    slug: str,
    category: str,
    substance: tuple[str, str],
    onset: date,
    criticality: str,
    reactions: list[tuple[str, str]],
    severity: str,
) -> None:
    p.add(
        {
            "resourceType": "AllergyIntolerance",
            "id": f"{p.key}-allergy-{slug}",
            "clinicalStatus": concept(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                "active",
                "Active",
            ),
            "verificationStatus": concept(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                "confirmed",
                "Confirmed",
            ),
            "type": "allergy",
            "category": [category],
            "criticality": criticality,
            "code": concept(SNOMED, *substance),
            "patient": p.subject,
            "onsetDateTime": onset.isoformat(),
            "recordedDate": onset.isoformat(),
            "recorder": ref("Practitioner", p.practitioner),
            "reaction": [
                {
                    "manifestation": [
                        concept(SNOMED, code, display) for code, display in reactions
                    ],
                    "severity": severity,
                }
            ],
        }
    )


def medication(
    p: Person,
    slug: str,
    rxnorm: tuple[str, str],
    authored: date,
    eid: str | None,
    dosage: str,
    status: str = "active",
    reason: str | None = None,
    as_needed: bool = False,
    security: list[dict[str, str]] | None = None,
) -> None:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": f"{p.key}-med-{slug}",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept(RXNORM, *rxnorm),
        "subject": p.subject,
        "authoredOn": instant(authored, 10, 5),
        "requester": ref("Practitioner", p.practitioner),
        "dosageInstruction": [{"text": dosage, "asNeededBoolean": as_needed}],
    }
    if eid:
        resource["encounter"] = ref("Encounter", eid)
    if reason:
        resource["reasonReference"] = [ref("Condition", reason)]
    if security:
        resource["meta"] = {"security": security}
    p.add(resource)


VACCINES = {
    "hepb": ("08", "Hep B, adolescent or pediatric"),
    "rv": ("116", "rotavirus, pentavalent"),
    "dtap": ("20", "DTaP"),
    "hib": ("49", "Hib (PRP-OMP)"),
    "pcv13": ("133", "Pneumococcal conjugate PCV 13"),
    "ipv": ("10", "IPV"),
    "flu": ("140", "Influenza, seasonal, injectable, preservative free"),
    "flu-hd": ("135", "Influenza, high dose seasonal"),
    "mmr": ("03", "MMR"),
    "var": ("21", "varicella"),
    "hepa": ("83", "Hep A, ped/adol, 2 dose"),
    "tdap": ("115", "Tdap"),
    "td": ("113", "Td (adult) preservative free"),
    "hpv": ("165", "HPV9"),
    "menacwy": ("114", "meningococcal MCV4P"),
    "covid": (
        "208",
        "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free,"
        " 30 mcg/0.3mL dose",
    ),
    "ppsv23": ("33", "pneumococcal polysaccharide PPV23"),
    "zoster": ("187", "zoster recombinant"),
}


def immunize(p: Person, eid: str | None, day: date, *vaccines: str) -> None:
    for vaccine in vaccines:
        code, display = VACCINES[vaccine]
        resource: dict[str, Any] = {
            "resourceType": "Immunization",
            "id": f"{p.key}-imm-{day.isoformat()}-{vaccine}",
            "status": "completed",
            "vaccineCode": concept(CVX, code, display),
            "patient": p.subject,
            "occurrenceDateTime": instant(day, 9, 40),
            "primarySource": True,
            "performer": [{"actor": ref("Practitioner", NURSE)}],
        }
        if eid:
            resource["encounter"] = ref("Encounter", eid)
        p.add(resource)


# growth references (approximate CDC 50th percentiles): age in years -> value
GIRL_HEIGHT = {
    0: 50,
    0.17: 57,
    0.33: 62,
    0.5: 66,
    1: 74,
    1.25: 77,
    1.5: 80,
    2: 86,
    3: 95,
    4: 102,
    5: 109,
    6: 115,
    7: 122,
    8: 128,
    9: 133,
    10: 138,
    11: 144,
    12: 151,
}
GIRL_WEIGHT = {
    0: 3.3,
    0.17: 5.1,
    0.33: 6.4,
    0.5: 7.3,
    1: 9.2,
    1.25: 9.8,
    1.5: 10.4,
    2: 12,
    3: 14,
    4: 16,
    5: 18,
    6: 20.5,
    7: 23,
    8: 25.5,
    9: 28.5,
    10: 32,
    11: 36,
    12: 41,
}
BOY_HEIGHT = {
    0: 50,
    0.17: 58,
    0.33: 64,
    0.5: 68,
    1: 76,
    1.25: 79,
    1.5: 82,
    2: 88,
    3: 96,
    4: 103,
    5: 110,
    6: 116,
    7: 122,
    8: 128,
    9: 133,
    10: 138,
    11: 143,
    12: 149,
    13: 156,
    14: 164,
    15: 170,
    16: 174,
}
BOY_WEIGHT = {
    0: 3.5,
    0.17: 5.6,
    0.33: 7.0,
    0.5: 7.9,
    1: 10,
    1.25: 10.6,
    1.5: 11.2,
    2: 12.5,
    3: 14.3,
    4: 16.3,
    5: 18.4,
    6: 20.7,
    7: 23,
    8: 25.6,
    9: 28.6,
    10: 32,
    11: 35.6,
    12: 40,
    13: 45,
    14: 51,
    15: 56,
    16: 61,
}


def interpolate(table: Mapping[float, float], age: float) -> float:
    points = sorted(table.items())
    for (a0, v0), (a1, v1) in itertools.pairwise(points):
        if a0 <= age <= a1:
            return v0 + (v1 - v0) * (age - a0) / (a1 - a0)
    return points[-1][1]


def child_vitals(
    p: Person,
    rng: random.Random,
    eid: str,
    day: date,
    height_table: Mapping[float, float],
    weight_table: Mapping[float, float],
    height_factor: float,
    weight_factor: float,
) -> None:
    age = years_between(p.born, day)
    height = interpolate(height_table, age) * height_factor + rng.uniform(-0.4, 0.4)
    weight = interpolate(weight_table, age) * weight_factor + rng.uniform(-0.2, 0.2)
    observation(p, eid, day, "height", BODY_HEIGHT, height)
    observation(p, eid, day, "weight", BODY_WEIGHT, weight)
    if age >= 2:
        observation(p, eid, day, "bmi", BMI, weight / (height / 100) ** 2)
    heart = 140 - 25 * min(age, 2) - 3.5 * max(0.0, min(age, 16) - 2)
    observation(p, eid, day, "heart-rate", HEART_RATE, heart + rng.uniform(-6, 6))
    if age >= 3:
        blood_pressure(
            p, eid, day, 92 + 1.4 * age + rng.uniform(-5, 5), 54 + 0.9 * age + rng.uniform(-4, 4)
        )


def well_child_days(born: date, month: int, until: date) -> list[date]:
    """Well-child visits at 2, 4, 6, 12, 15 and 18 months, then once a year in `month`."""
    days = [born + timedelta(days=d) for d in (63, 124, 185, 368, 460, 550)]
    year = born.year + 2
    while date(year, month, 12) <= until:
        days.append(date(year, month, 12 + (year % 5)))
        year += 1
    return days


def childhood_immunizations(p: Person, visits: dict[float, tuple[str, date]]) -> None:
    """The US childhood schedule, given at the well-child visit nearest each age (in years)."""
    schedule = {
        0.17: ("hepb", "rv", "dtap", "hib", "pcv13", "ipv"),
        0.33: ("rv", "dtap", "hib", "pcv13", "ipv"),
        0.5: ("hepb", "rv", "dtap", "pcv13", "ipv"),
        1: ("mmr", "var", "hepa", "hib", "pcv13"),
        1.25: ("dtap",),
        1.5: ("hepa",),
        5: ("dtap", "ipv", "mmr", "var"),
        11: ("tdap", "hpv", "menacwy"),
        12: ("hpv",),
    }
    for age, vaccines in schedule.items():
        if age in visits:
            immunize(p, *visits[age], *vaccines)


def flu_seasons(p: Person, rng: random.Random, first: int, last: int, vaccine: str = "flu") -> None:
    """A flu shot at a nurse visit every October."""
    for year in range(first, last + 1):
        day = date(year, 10, 3 + rng.randrange(20))
        eid = encounter(p, day, "immunization", hour=15, minutes=10, practitioner=NURSE)
        immunize(p, eid, day, vaccine)


def child_record(p: Person, month: int, girl: bool) -> dict[float, tuple[str, date]]:
    """Well-child visits with growth and vital signs, the vaccination schedule, flu shots.
    Returns the well-child visits by age in years (0.17, 0.33, 0.5, then quarter years)."""
    rng = random.Random(p.seed)  # noqa: S311 - demo values, not security
    heights, weights = (GIRL_HEIGHT, GIRL_WEIGHT) if girl else (BOY_HEIGHT, BOY_WEIGHT)
    factors = (1.02, 0.98) if girl else (1.01, 1.03)
    visits: dict[float, tuple[str, date]] = {}
    for day in well_child_days(p.born, month, AS_OF):
        eid = encounter(p, day, "well-child", hour=10, minutes=30)
        exact = years_between(p.born, day)
        if exact < 0.75:
            age = min((0.17, 0.33, 0.5), key=lambda a: abs(a - exact))
        else:
            age = round(exact * 4) / 4
        visits[age] = (eid, day)
        child_vitals(p, rng, eid, day, heights, weights, *factors)
    childhood_immunizations(p, visits)
    immunize(p, None, p.born + timedelta(days=1), "hepb")  # given in hospital at birth
    first_flu = p.born.year if (date(p.born.year, 10, 1) - p.born).days >= 182 else p.born.year + 1
    flu_seasons(p, rng, first_flu, AS_OF.year)
    return visits


def ruby() -> None:
    p = RUBY
    child_record(p, 6, girl=True)
    ear = date(2016, 2, 8)
    eid = encounter(p, ear, "symptom", hour=16, reason=concept(SNOMED, "301354004", "Pain of ear"))
    observation(p, eid, ear, "temp", TEMPERATURE, 38.6)
    otitis = condition(
        p, "otitis-2016", "65363002", "Otitis media", ear, eid, abated=date(2016, 2, 22)
    )
    medication(
        p,
        "amoxicillin-2016",
        ("308182", "amoxicillin 250 MG Oral Capsule"),
        ear,
        eid,
        "250 mg by mouth three times a day for 10 days",
        "completed",
        otitis,
    )
    peanut = date(2017, 5, 20)
    eid = encounter(
        p,
        peanut,
        "emergency",
        hour=13,
        minutes=240,
        practitioner=PAEDIATRICIAN,
        reason=concept(SNOMED, "39579001", "Anaphylaxis"),
        organization=ORG_HOSPITAL,
    )
    allergy(
        p,
        "peanut",
        "food",
        ("762952008", "Peanut (substance)"),
        peanut,
        "high",
        [("39579001", "Anaphylaxis"), ("247472004", "Wheal (finding)")],
        "severe",
    )
    medication(
        p,
        "epinephrine",
        ("1870230", "NDA020800 0.3 ML Epinephrine 1 MG/ML Auto-Injector"),
        peanut,
        eid,
        "Inject 0.3 mg into the outer thigh at once if anaphylaxis; call 911",
        as_needed=True,
    )
    allergy(
        p,
        "dust-mite",
        "environment",
        ("260147004", "House dust mite (organism)"),
        date(2018, 10, 2),
        "low",
        [("49727002", "Cough (finding)"), ("267036007", "Dyspnea (finding)")],
        "mild",
    )
    wheeze = date(2018, 10, 2)
    eid = encounter(p, wheeze, "symptom", hour=11, reason=concept(SNOMED, "56018004", "Wheezing"))
    asthma = condition(p, "asthma", "233678006", "Childhood asthma", wheeze, eid)
    medication(
        p,
        "albuterol",
        ("745679", "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
        wheeze,
        eid,
        "2 puffs every 4 hours as needed for wheeze, with spacer",
        reason=asthma,
        as_needed=True,
    )
    medication(
        p,
        "fluticasone",
        ("895994", "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler"),
        wheeze,
        eid,
        "2 puffs twice a day, rinse mouth after use",
        reason=asthma,
    )
    for day in (date(2019, 4, 15), date(2021, 11, 3), date(2024, 2, 19)):
        eid = encounter(
            p,
            day,
            "follow-up",
            hour=14,
            practitioner=PAEDIATRICIAN,
            reason=concept(SNOMED, "195967001", "Asthma"),
        )
        observation(p, eid, day, "heart-rate", HEART_RATE, 92 - (day.year - 2019) * 2)
    throat = date(2023, 1, 23)
    eid = encounter(p, throat, "symptom", hour=9)
    observation(p, eid, throat, "temp", TEMPERATURE, 38.2)
    condition(
        p,
        "pharyngitis-2023",
        "195662009",
        "Acute viral pharyngitis",
        throat,
        eid,
        abated=date(2023, 2, 1),
    )


def oliver() -> None:
    p = OLIVER
    visits = child_record(p, 1, girl=False)
    fall = date(2019, 8, 10)
    eid = encounter(
        p,
        fall,
        "emergency",
        hour=17,
        minutes=180,
        practitioner=PAEDIATRICIAN,
        reason=concept(SNOMED, "58150001", "Fracture of clavicle"),
        organization=ORG_HOSPITAL,
    )
    fracture = condition(
        p, "clavicle-2019", "58150001", "Fracture of clavicle", fall, eid, abated=date(2019, 10, 4)
    )
    medication(
        p,
        "ibuprofen-2019",
        ("310965", "Ibuprofen 200 MG Oral Tablet"),
        fall,
        eid,
        "200 mg by mouth every 6 hours as needed for pain, with food",
        "completed",
        fracture,
        as_needed=True,
    )
    review = date(2019, 9, 20)
    encounter(
        p,
        review,
        "follow-up",
        hour=11,
        practitioner=PAEDIATRICIAN,
        organization=ORG_HOSPITAL,
        reason=concept(SNOMED, "58150001", "Fracture of clavicle"),
    )
    hay = date(2020, 5, 14)
    eid = encounter(p, hay, "symptom", hour=15)
    rhinitis = condition(p, "hay-fever", "367498001", "Seasonal allergic rhinitis", hay, eid)
    allergy(
        p,
        "grass-pollen",
        "environment",
        ("256277009", "Grass pollen (substance)"),
        hay,
        "low",
        [("76067001", "Sneezing"), ("267101005", "Nasal discharge")],
        "mild",
    )
    medication(
        p,
        "cetirizine",
        ("1014678", "cetirizine hydrochloride 10 MG Oral Tablet"),
        hay,
        eid,
        "10 mg by mouth once a day in the pollen season",
        reason=rhinitis,
    )
    throat = date(2023, 3, 6)
    eid = encounter(p, throat, "symptom", hour=9)
    observation(p, eid, throat, "temp", TEMPERATURE, 38.4)
    condition(
        p,
        "pharyngitis-2023",
        "195662009",
        "Acute viral pharyngitis",
        throat,
        eid,
        abated=date(2023, 3, 15),
    )
    skin = date(2025, 3, 11)
    eid = encounter(p, skin, "symptom", hour=16)
    condition(p, "acne", "88616000", "Acne vulgaris", skin, eid)
    eid, visit = visits[10.0]  # universal lipid screening at 9-11 years, a week after the visit
    lipids = visit + timedelta(days=7)
    for slug, test, value in (
        ("chol", CHOLESTEROL, 158),
        ("hdl", HDL, 52),
        ("ldl", LDL, 88),
        ("tg", TRIGLYCERIDES, 74),
    ):
        observation(p, eid, lipids, slug, test, value, hour=8)


def helen() -> None:
    p = HELEN
    rng = random.Random(p.seed)  # noqa: S311 - demo values, not security
    hypothyroid = None
    for year in range(2018, 2027):
        day = date(year, 3, 6 + year % 7)
        eid = encounter(p, day, "checkup", minutes=25)
        weight = 63.5 + 0.45 * (year - 2018) + rng.uniform(-0.6, 0.6)
        observation(p, eid, day, "height", BODY_HEIGHT, 166.0)
        observation(p, eid, day, "weight", BODY_WEIGHT, weight)
        observation(p, eid, day, "bmi", BMI, weight / 1.66**2)
        observation(p, eid, day, "heart-rate", HEART_RATE, rng.uniform(62, 76))
        blood_pressure(p, eid, day, rng.uniform(108, 124), rng.uniform(68, 80))
        tsh = {2018: 8.9, 2019: 3.4}.get(year, rng.uniform(1.1, 2.9))
        observation(p, eid, day, "tsh", TSH, tsh, hour=8)
        if year == 2018:
            observation(p, eid, day, "ft4", FREE_T4, 0.71, hour=8)
            hypothyroid = condition(p, "hypothyroidism", "40930008", "Hypothyroidism", day, eid)
            medication(
                p,
                "levothyroxine",
                ("966222", "Levothyroxine Sodium 0.075 MG Oral Tablet"),
                day,
                eid,
                "75 micrograms by mouth every morning before breakfast",
                reason=hypothyroid,
            )
        if year in (2018, 2021, 2024):
            for slug, test, value in (
                ("chol", CHOLESTEROL, rng.uniform(178, 204)),
                ("hdl", HDL, rng.uniform(54, 66)),
                ("ldl", LDL, rng.uniform(98, 124)),
                ("tg", TRIGLYCERIDES, rng.uniform(78, 125)),
            ):
                observation(p, eid, day, slug, test, value, hour=8)
        if year in (2022, 2025):
            observation(p, eid, day, "hba1c", HBA1C, rng.uniform(5.1, 5.4), hour=8)
            observation(p, eid, day, "glucose", GLUCOSE, rng.uniform(82, 95), hour=8)
        if year == 2019:
            immunize(p, eid, day, "tdap")
    condition(p, "hay-fever", "367498001", "Seasonal allergic rhinitis", date(2009, 4, 20))
    medication(
        p,
        "cetirizine",
        ("1014678", "cetirizine hydrochloride 10 MG Oral Tablet"),
        date(2023, 4, 11),
        None,
        "10 mg by mouth once a day from April to June",
        reason=f"{p.key}-cond-hay-fever",
    )
    headache = date(2016, 9, 27)
    eid = encounter(p, headache, "symptom", hour=14, reason=concept(SNOMED, "25064002", "Headache"))
    migraine = condition(p, "migraine", "37796009", "Migraine", headache, eid)
    medication(
        p,
        "ibuprofen",
        ("310965", "Ibuprofen 200 MG Oral Tablet"),
        headache,
        eid,
        "400 mg by mouth at the start of a migraine, at most 3 times a day",
        reason=migraine,
        as_needed=True,
    )
    allergy(
        p,
        "penicillin",
        "medication",
        ("764146007", "Penicillin (substance)"),
        date(1999, 7, 1),
        "low",
        [("271807003", "Eruption of skin (disorder)")],
        "moderate",
    )
    for day in (date(2021, 4, 17), date(2021, 5, 8)):
        eid = encounter(p, day, "immunization", hour=11, minutes=15, practitioner=NURSE)
        immunize(p, eid, day, "covid")
    flu_seasons(p, rng, 2018, 2026)


def arthur() -> None:
    p = ARTHUR
    rng = random.Random(p.seed)  # noqa: S311 - demo values, not security
    condition(p, "hypertension", "59621000", "Essential hypertension", date(2005, 11, 2))
    condition(p, "diabetes", "44054006", "Diabetes mellitus type 2", date(2012, 6, 14))
    condition(p, "knee-oa", "239873007", "Osteoarthritis of knee", date(2016, 2, 9))
    condition(
        p,
        "alcohol",
        "15167005",
        "Alcohol abuse",
        date(2008, 3, 1),
        abated=date(2010, 9, 1),
        status="remission",
        security=[RESTRICTED, ETH],
    )
    allergy(
        p,
        "sulfonamide",
        "medication",
        ("387406002", "Sulfonamide (substance)"),
        date(2003, 5, 12),
        "low",
        [("271807003", "Eruption of skin (disorder)")],
        "moderate",
    )
    start = date(2022, 1, 11)
    phq9 = {5: 14, 6: 9, 8: 6, 12: 4, 16: 3}  # by quarterly visit: depression from visit 5
    quarter = 0
    while (day := start + timedelta(days=91 * quarter)) <= AS_OF:
        eid = encounter(p, day, "checkup" if day.month < 4 else "follow-up", minutes=20)
        t = years_between(start, day)
        observation(p, eid, day, "weight", BODY_WEIGHT, 84.5 - 1.2 * t + rng.uniform(-0.8, 0.8))
        observation(p, eid, day, "heart-rate", HEART_RATE, rng.uniform(66, 88))  # AF, controlled
        blood_pressure(p, eid, day, 146 - 2.5 * t + rng.uniform(-6, 6), 84 - t + rng.uniform(-4, 4))
        if quarter % 2 == 0:
            observation(
                p, eid, day, "hba1c", HBA1C, 7.5 - 0.15 * t + rng.uniform(-0.2, 0.2), hour=8
            )
            creatinine = 1.12 + 0.05 * t + rng.uniform(-0.05, 0.05)
            observation(p, eid, day, "creatinine", CREATININE, creatinine, hour=8)
            observation(
                p, eid, day, "egfr", EGFR, 186 * creatinine**-1.154 * (76 + t) ** -0.203, hour=8
            )
        if day.month < 4:  # the annual review
            observation(p, eid, day, "potassium", POTASSIUM, rng.uniform(4.2, 4.9), hour=8)
            observation(p, eid, day, "hemoglobin", HEMOGLOBIN, rng.uniform(13.1, 14.2), hour=8)
            for slug, test, value in (
                ("chol", CHOLESTEROL, rng.uniform(148, 172)),
                ("hdl", HDL, rng.uniform(40, 47)),
                ("ldl", LDL, rng.uniform(68, 92)),
                ("tg", TRIGLYCERIDES, rng.uniform(128, 172)),
            ):
                observation(p, eid, day, slug, test, value, hour=8)
            observation(
                p,
                eid,
                day,
                "audit-c",
                AUDIT_C,
                1 if day.year > 2023 else 2,
                security=[RESTRICTED, ETH],
            )
        if quarter in phq9:
            observation(p, eid, day, "phq9", PHQ9, phq9[quarter], security=[RESTRICTED, PSY])
        if quarter == 5:
            depression = condition(
                p,
                "depression",
                "35489007",
                "Depressive disorder",
                day,
                eid,
                security=[RESTRICTED, PSY],
            )
            medication(
                p,
                "sertraline",
                ("312940", "sertraline 50 MG Oral Tablet"),
                day,
                eid,
                "50 mg by mouth once a day",
                reason=depression,
                security=[RESTRICTED, PSY],
            )
        quarter += 1
    medication(
        p,
        "metformin",
        ("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"),
        date(2012, 6, 14),
        None,
        "1000 mg by mouth once a day with the evening meal",
        reason=f"{p.key}-cond-diabetes",
    )
    medication(
        p,
        "lisinopril",
        ("314076", "lisinopril 10 MG Oral Tablet"),
        date(2005, 11, 2),
        None,
        "10 mg by mouth once a day",
        reason=f"{p.key}-cond-hypertension",
    )
    medication(
        p,
        "amlodipine",
        ("197361", "amlodipine 5 MG Oral Tablet"),
        date(2019, 3, 5),
        None,
        "5 mg by mouth once a day",
        reason=f"{p.key}-cond-hypertension",
    )
    medication(
        p,
        "atorvastatin",
        ("617310", "atorvastatin 20 MG Oral Tablet"),
        date(2012, 7, 2),
        None,
        "20 mg by mouth once a day at night",
    )
    medication(
        p,
        "paracetamol",
        ("313782", "Acetaminophen 325 MG Oral Tablet"),
        date(2016, 2, 9),
        None,
        "650 mg by mouth every 6 hours as needed for knee pain, at most 8 tablets a day",
        reason=f"{p.key}-cond-knee-oa",
        as_needed=True,
    )
    palpitations = date(2021, 5, 26)
    eid = encounter(
        p,
        palpitations,
        "emergency",
        hour=7,
        minutes=300,
        practitioner=GP,
        reason=concept(SNOMED, "80313002", "Palpitations"),
        organization=ORG_HOSPITAL,
    )
    observation(p, eid, palpitations, "heart-rate", HEART_RATE, 124)
    blood_pressure(p, eid, palpitations, 152, 94)
    af = condition(p, "af", "49436004", "Atrial fibrillation", palpitations, eid)
    medication(
        p,
        "apixaban",
        ("1364445", "apixaban 5 MG Oral Tablet"),
        palpitations,
        eid,
        "5 mg by mouth twice a day",
        reason=af,
    )
    immunize(p, None, date(2011, 10, 4), "ppsv23")
    immunize(p, None, date(2015, 6, 2), "td")
    for day in (date(2019, 3, 12), date(2019, 6, 11)):
        immunize(p, None, day, "zoster")
    for day in (date(2021, 1, 28), date(2021, 2, 18), date(2021, 10, 7)):
        eid = encounter(p, day, "immunization", hour=10, minutes=15, practitioner=NURSE)
        immunize(p, eid, day, "covid")
    flu_seasons(p, rng, 2021, 2026, "flu-hd")
    appointments(p)


def appointments(p: Person) -> None:
    for day, hour, minutes, what, kind, status in (
        (
            date(2026, 9, 15),
            10,
            20,
            "Medication review with the home carer present",
            "FOLLOWUP",
            "fulfilled",
        ),
        (date(2026, 10, 20), 8, 10, "Blood tests (HbA1c, kidney function)", "ROUTINE", "fulfilled"),
        (date(2026, 12, 8), 10, 20, "Diabetes review", "FOLLOWUP", "booked"),
        (
            date(2027, 1, 12),
            8,
            10,
            "Blood tests (HbA1c, kidney function, lipids)",
            "ROUTINE",
            "booked",
        ),
        (date(2027, 1, 19), 14, 30, "Podiatry: diabetic foot check", "ROUTINE", "booked"),
        (date(2027, 2, 2), 11, 30, "Diabetic eye screening", "ROUTINE", "booked"),
    ):
        begin = datetime(day.year, day.month, day.day, hour, 0)
        p.add(
            {
                "resourceType": "Appointment",
                "id": f"{p.key}-appt-{day.isoformat()}",
                "status": status,
                "appointmentType": concept(
                    "http://terminology.hl7.org/CodeSystem/v2-0276",
                    kind,
                    "A follow up visit" if kind == "FOLLOWUP" else "Routine appointment",
                ),
                "serviceType": [{"text": what}],
                "description": what,
                "start": begin.isoformat() + "Z",
                "end": (begin + timedelta(minutes=minutes)).isoformat() + "Z",
                "minutesDuration": minutes,
                "created": instant(day - timedelta(days=35), 12),
                "participant": [
                    {"actor": p.subject, "required": "required", "status": "accepted"},
                    {
                        "actor": ref("Practitioner", GP if "Podiatry" not in what else NURSE),
                        "required": "required",
                        "status": "accepted",
                    },
                ],
            }
        )


# -- writing -------------------------------------------------------------------------------------


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    entries = []
    for resource in resources:
        resource.setdefault("meta", {}).setdefault("tag", []).append(DEMO_TAG)
        entries.append(
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def build() -> dict[str, dict[str, Any]]:
    for person in (HELEN, OLIVER, RUBY, ARTHUR):
        person.resources.clear()
    helen()
    oliver()
    ruby()
    arthur()
    return {
        "01-family.json": transaction(family()),
        "02-parent-helen.json": transaction(HELEN.resources),
        "03-child-15-oliver.json": transaction(OLIVER.resources),
        "04-child-12-ruby.json": transaction(RUBY.resources),
        "05-grandparent-arthur.json": transaction(ARTHUR.resources),
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, bundle in build().items():
        (OUT / name).write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"{OUT / name}: {len(bundle['entry'])} resources")


if __name__ == "__main__":
    main()
