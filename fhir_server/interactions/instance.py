"""Instance level: read, vread, update, patch, delete (https://hl7.org/fhir/R4/http.html)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.access import access
from fhir_server.errors import Issue, not_found, operation_outcome
from fhir_server.http import (
    fhir_response,
    negotiate,
    parse_etag,
    parse_prefer,
    require_json_body,
    version_headers,
    write_response,
)
from fhir_server.interactions.common import (
    check_body_id,
    conflict_error,
    guard_existing,
    if_match,
    json_body,
    live,
    path_id,
    path_type,
    readable,
)
from fhir_server.jsonbody import loads
from fhir_server.patch import apply_patch
from fhir_server.services import services
from fhir_server.storage.repository import VersionConflict
from fhir_server.storage.versions import Version
from fhir_server.validation import validate_resource

JSON_PATCH = frozenset({"application/json-patch+json"})


def _not_modified(request: Request, version: Version) -> bool:
    header = request.headers.get("if-none-match")
    return header is not None and parse_etag(header, "If-None-Match") == version.version


async def read(request: Request) -> Response:
    """GET [base]/[type]/[id]: the stored bytes as they are."""
    media = negotiate(request)
    resource_type, resource_id = path_type(request), path_id(request)
    version = await services(request).repository.read(resource_type, resource_id)
    version = readable(request, version, f"{resource_type}/{resource_id}")
    if _not_modified(request, version):
        return Response(status_code=304, headers=version_headers(version))
    assert version.json is not None
    return fhir_response(version.json, 200, version_headers(version), media)


async def vread(request: Request) -> Response:
    """GET [base]/[type]/[id]/_history/[vid]."""
    media = negotiate(request)
    resource_type, resource_id = path_type(request), path_id(request)
    vid = request.path_params["vid"]
    what = f"{resource_type}/{resource_id}/_history/{vid}"
    if not (vid.isascii() and vid.isdigit()) or len(vid) > 18:
        raise not_found(f"{what} is not known")
    version = await services(request).repository.vread(resource_type, resource_id, int(vid))
    version = readable(request, version, what)
    assert version.json is not None
    return fhir_response(version.json, 200, version_headers(version), media)


async def update(request: Request) -> Response:
    """PUT [base]/[type]/[id]: a new version, or creation under the client's id."""
    svc = services(request)
    media, prefer = negotiate(request), parse_prefer(request)
    resource_type, resource_id = path_type(request), path_id(request)
    require_json_body(request)
    expected = if_match(request)
    resource = validate_resource(await json_body(request, svc), resource_type)
    check_body_id(resource, resource_id)
    what = f"{resource_type}/{resource_id}"
    acc = access(request)
    checked = await guard_existing(request, resource_type, resource_id, "u")
    creates = not acc.sees_all(resource_type, "u") and checked is None
    acc.check_write("c" if creates else "u", resource_type, resource)
    try:
        version, created = await svc.repository.update(
            resource_type, resource_id, resource, expected=expected or checked
        )
    except VersionConflict as exc:
        raise conflict_error(expected, exc.current, what) from None
    status = 201 if created else 200
    return write_response(version, status, prefer, media, svc.base, f"{what} saved")


async def patch(request: Request) -> Response:
    """PATCH [base]/[type]/[id] with a JSON Patch document."""
    svc = services(request)
    media, prefer = negotiate(request), parse_prefer(request)
    resource_type, resource_id = path_type(request), path_id(request)
    require_json_body(request, JSON_PATCH)
    expected = if_match(request)
    operations = await json_body(request, svc)
    what = f"{resource_type}/{resource_id}"

    def patched(current: Version) -> dict[str, Any]:
        assert current.json is not None
        access(request).check_existing("u", resource_type, current.json)
        result = apply_patch(loads(current.json), operations)
        validate_resource(result, resource_type)
        check_body_id(result, resource_id)
        access(request).check_write("u", resource_type, result)
        return result

    readable(request, await svc.repository.read(resource_type, resource_id), what)
    try:
        version, _ = await svc.repository.update(
            resource_type, resource_id, patched, expected=expected, method="PATCH"
        )
    except VersionConflict as exc:
        if exc.current is None and expected is None:
            live(await svc.repository.read(resource_type, resource_id), what)
        raise conflict_error(expected, exc.current, what) from None
    return write_response(version, 200, prefer, media, svc.base, f"{what} patched")


async def delete(request: Request) -> Response:
    """DELETE [base]/[type]/[id]: a logical delete; history keeps every version."""
    svc = services(request)
    media, prefer = negotiate(request), parse_prefer(request)
    resource_type, resource_id = path_type(request), path_id(request)
    what = f"{resource_type}/{resource_id}"
    await guard_existing(request, resource_type, resource_id, "d")
    version = await svc.repository.delete(resource_type, resource_id)
    if version is None:
        raise not_found(f"{what} is not known")
    headers = version_headers(version)
    if prefer.return_ == "OperationOutcome":
        body = operation_outcome([Issue("informational", f"{what} deleted", "information")])
        return fhir_response(body, 200, headers, media)
    return Response(status_code=204, headers=headers)
