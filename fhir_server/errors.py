"""Typed FHIR errors and their one rendering as an OperationOutcome.

https://hl7.org/fhir/R4/operationoutcome.html
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

FHIR_JSON = "application/fhir+json; charset=utf-8"


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue; `code` is from http://hl7.org/fhir/issue-type."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: list[Issue]) -> bytes:
    return orjson.dumps(
        {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}
    )


@dataclass
class FhirError(Exception):
    """An error answered with `status` and an OperationOutcome."""

    diagnostics: str
    status: int = 400
    code: str = "invalid"
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics)

    def outcome(self) -> bytes:
        return operation_outcome(self.issues or [Issue(self.code, self.diagnostics)])


def bad_request(
    diagnostics: str, code: str = "invalid", issues: list[Issue] | None = None
) -> FhirError:
    return FhirError(diagnostics, 400, code, issues or [])


def not_found(diagnostics: str) -> FhirError:
    return FhirError(diagnostics, 404, "not-found")


def gone(diagnostics: str, headers: dict[str, str] | None = None) -> FhirError:
    return FhirError(diagnostics, 410, "deleted", headers=headers or {})


def conflict(diagnostics: str) -> FhirError:
    return FhirError(diagnostics, 409, "conflict")


def precondition_failed(diagnostics: str) -> FhirError:
    return FhirError(diagnostics, 412, "conflict")


def not_acceptable(diagnostics: str) -> FhirError:
    return FhirError(diagnostics, 406, "not-supported")


def unsupported_media_type(diagnostics: str) -> FhirError:
    return FhirError(diagnostics, 415, "not-supported")


def too_large(diagnostics: str) -> FhirError:
    return FhirError(diagnostics, 413, "too-costly")


def unavailable(diagnostics: str = "The database is unavailable; try again shortly.") -> FhirError:
    return FhirError(diagnostics, 503, "transient", headers={"Retry-After": "5"})
