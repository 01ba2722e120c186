"""Type level: create, conditional create (https://hl7.org/fhir/R4/http.html#create)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.access import access
from fhir_server.http import negotiate, parse_prefer, require_json_body, write_response
from fhir_server.interactions import conditional
from fhir_server.interactions.common import json_body, path_type
from fhir_server.services import services
from fhir_server.validation import validate_resource


async def create(request: Request) -> Response:
    """POST [base]/[type]: the server assigns the id; a client id in the body is ignored."""
    svc = services(request)
    media, prefer = negotiate(request), parse_prefer(request)
    resource_type = path_type(request)
    require_json_body(request)
    resource = validate_resource(await json_body(request, svc), resource_type)
    access(request).check_write("c", resource_type, resource)
    criteria = request.headers.get("if-none-exist")
    if criteria is not None:
        existing = await conditional.create_if_none_exist(
            request, svc, resource_type, resource, criteria
        )
        if existing is not None:
            return existing
    version = await svc.repository.create(resource_type, resource)
    message = f"{resource_type}/{version.id} created"
    return write_response(version, 201, prefer, media, svc.base, message)
