"""Whole-system interactions: capabilities (https://hl7.org/fhir/R4/http.html#capabilities)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.http import fhir_response, negotiate


async def capabilities(request: Request) -> Response:
    """GET [base]/metadata: the statement built once at start-up."""
    media = negotiate(request)
    return fhir_response(request.app.state.capability_statement, 200, None, media)
