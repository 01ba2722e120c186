"""Conditional create, update and delete: https://hl7.org/fhir/R4/http.html#ccreate.

Criteria are ordinary search parameters, matched by the search engine. Zero, one or several
matches decide the outcome; several is 412 (the criteria were not selective enough).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.access import Access, access
from fhir_server.errors import bad_request, not_found, precondition_failed
from fhir_server.http import (
    negotiate,
    parse_prefer,
    require_json_body,
    version_headers,
    write_response,
)
from fhir_server.interactions.common import (
    conflict_error,
    guard_existing,
    if_match,
    json_body,
    path_type,
)
from fhir_server.search.engine import Executor, parse
from fhir_server.services import Services, services
from fhir_server.storage.repository import VersionConflict
from fhir_server.validation import validate_resource


async def matching_ids(
    svc: Services,
    resource_type: str,
    criteria: list[tuple[str, str]],
    acc: Access,
    letter: str,
) -> list[str]:
    """Ids of the current resources matching conditional criteria (unknown parameters: 400),
    among those the caller's `letter` reaches: others' resources never match."""
    if not criteria:
        raise bad_request("A conditional interaction needs search criteria")
    search = parse(resource_type, criteria, svc.base, strict=True)
    if search.result:
        raise bad_request("Conditional criteria cannot use result parameters such as _count")
    acc.restrict(search, letter)
    executor = Executor(svc.repository.db, svc.base, svc.settings.search_max_candidates)
    return [c.id for c in await executor.matching(search)]


async def create_if_none_exist(
    request: Request, svc: Services, resource_type: str, resource: dict[str, Any], header: str
) -> Response | None:
    """If-None-Exist: the existing match (200), 412 for several, or None to go on and create."""
    found = await matching_ids(
        svc,
        resource_type,
        parse_qsl(header.lstrip("?"), keep_blank_values=True),
        access(request),
        "c",
    )
    if not found:
        return None
    if len(found) > 1:
        raise precondition_failed(f"If-None-Exist matched {len(found)} {resource_type} resources")
    version = await svc.repository.read(resource_type, found[0])
    assert version is not None and version.json is not None
    prefer = parse_prefer(request)
    return write_response(version, 200, prefer, negotiate(request), svc.base, "Already exists")


async def update(request: Request) -> Response:
    """PUT [base]/[type]?criteria."""
    svc = services(request)
    media, prefer = negotiate(request), parse_prefer(request)
    resource_type = path_type(request)
    require_json_body(request)
    resource = validate_resource(await json_body(request, svc), resource_type)
    acc = access(request)
    criteria = list(request.query_params.multi_items())
    found = await matching_ids(svc, resource_type, criteria, acc, "u")
    if len(found) > 1:
        raise precondition_failed(f"The criteria matched {len(found)} {resource_type} resources")
    body_id = resource.get("id")
    if found and body_id is not None and body_id != found[0]:
        raise bad_request(f"The body id '{body_id}' is not the id of the matching resource")
    if not found:
        acc.check_write("c", resource_type, resource)
        if body_id is None:
            version = await svc.repository.create(resource_type, resource)
            return write_response(version, 201, prefer, media, svc.base, "Created")
        found = [body_id]
    checked = await guard_existing(request, resource_type, found[0], "u")
    acc.check_write("u", resource_type, resource)
    expected = if_match(request)
    try:
        version, created = await svc.repository.update(
            resource_type, found[0], resource, expected=expected or checked
        )
    except VersionConflict as exc:
        raise conflict_error(expected, exc.current, f"{resource_type}/{found[0]}") from None
    return write_response(version, 201 if created else 200, prefer, media, svc.base, "Saved")


async def delete(request: Request) -> Response:
    """DELETE [base]/[type]?criteria: one match is deleted; none is 404, several 412."""
    svc = services(request)
    negotiate(request)
    resource_type = path_type(request)
    criteria = list(request.query_params.multi_items())
    found = await matching_ids(svc, resource_type, criteria, access(request), "d")
    if not found:
        raise not_found(f"No {resource_type} matches the criteria")
    if len(found) > 1:
        raise precondition_failed(f"The criteria matched {len(found)} {resource_type} resources")
    await guard_existing(request, resource_type, found[0], "d")
    version = await svc.repository.delete(resource_type, found[0])
    assert version is not None
    return Response(status_code=204, headers=version_headers(version))
