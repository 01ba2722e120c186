"""Steps every interaction shares: path parameters, bodies, version checks."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request

from fhir_server.access import access
from fhir_server.errors import FhirError, bad_request, gone, not_found, precondition_failed
from fhir_server.http import parse_etag, version_headers
from fhir_server.jsonbody import parse_json, read_body
from fhir_server.services import Services, services
from fhir_server.storage.versions import Version
from fhir_server.validation import check_type

_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")


def path_type(request: Request) -> str:
    resource_type: str = request.path_params["type"]
    check_type(resource_type)
    return resource_type


def path_id(request: Request) -> str:
    resource_id: str = request.path_params["id"]
    if not _ID.fullmatch(resource_id):  # `$` would let a trailing newline through
        problem = f"'{resource_id}' is not a valid resource id"
        # nothing can exist there, but an update would create it: that is a bad request
        raise bad_request(problem) if request.method == "PUT" else not_found(problem)
    return resource_id


async def json_body(request: Request, svc: Services) -> Any:
    body = await read_body(request, svc.settings.max_body_bytes)
    return parse_json(body, svc.settings.max_json_depth)


def if_match(request: Request) -> int | None:
    header = request.headers.get("if-match")
    return None if header is None else parse_etag(header, "If-Match")


def live(version: Version | None, what: str) -> Version:
    """The version if it exists and is not deleted: else 404, or 410 for a deleted resource."""
    if version is None:
        raise not_found(f"{what} is not known")
    if version.deleted:
        raise gone(f"{what} was deleted", version_headers(version))
    return version


def conflict_error(expected: int | None, current: int | None, what: str) -> FhirError:
    if current is None and expected is not None:
        return precondition_failed(f"If-Match version {expected} does not match: {what} is absent")
    if expected is not None:
        return precondition_failed(
            f"If-Match version {expected} does not match the current version {current} of {what}"
        )
    return FhirError(f"{what} was changed concurrently; retry", 409, "conflict")


def check_body_id(resource: dict[str, Any], resource_id: str) -> None:
    """Update bodies must carry the URL's id: https://hl7.org/fhir/R4/http.html#update."""
    body_id = resource.get("id")
    if body_id is None:
        raise bad_request("The resource must have an id matching the URL", "required")
    if body_id != resource_id:
        raise bad_request(f"The body id '{body_id}' does not match the URL id '{resource_id}'")


def readable(request: Request, version: Version | None, what: str, letter: str = "r") -> Version:
    """`live(version)` that the caller may read; otherwise 404, as if it did not exist (a
    tombstone tells nothing to a caller who cannot see every resource of its type)."""
    acc = access(request)
    if version is not None and version.deleted and not acc.sees_all(version.resource_type, letter):
        version = None
    version = live(version, what)
    assert version.json is not None
    acc.check_read(letter, version.resource_type, version.id, version.json, version.patients)
    return version


async def guard_existing(
    request: Request, resource_type: str, resource_id: str, letter: str
) -> int | None:
    """Check the caller may `letter` (u, d) the current version (404 if it may not even read
    it, 403 otherwise). Returns that version, to pin the write to what was checked."""
    acc = access(request)
    if acc.sees_all(resource_type, letter):
        return None
    current = await services(request).repository.read(resource_type, resource_id)
    if current is None or current.json is None:
        return None
    acc.check_existing(letter, resource_type, current.json)
    return current.version
