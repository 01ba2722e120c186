"""HTTP surface of the authorization server: token, introspection, revocation, JWKS; discovery.

Endpoints take the bare `Request` (no FastAPI body parameters, so no 422 ever), read and check the
form here, then hand it to the synchronous server through `run_sync`. Every error is RFC 6749 JSON
with `Cache-Control: no-store`; a database outage is a 503 with `Retry-After`.

CORS is set per route (SMART: token, JWKS and introspection are called from browsers; RFC 7009
section 5 asks the same for revocation; the authorize endpoint of a later slice gets none), with a
wildcard origin and no credentials, and `Authorization` named in the allowed headers because the
wildcard does not cover it (Fetch standard).

SMART discovery: https://hl7.org/fhir/smart-app-launch/STU2.2/conformance.html#metadata
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from authlib.oauth2.rfc6749 import InvalidRequestError
from fastapi import APIRouter
from pymongo.errors import PyMongoError
from starlette.requests import Request
from starlette.responses import Response

from smart_auth.clients import CLIENT_ASSERTION_ALGS
from smart_auth.server import FormRequest, OAuthResponse
from smart_auth.services import AuthServices
from smart_auth.settings import AuthSettings
from smart_auth.store import is_unavailable, run_sync

log = logging.getLogger("phr.auth")

TOKEN_PATH, INTROSPECT_PATH, REVOKE_PATH, JWKS_PATH = (
    "/auth/token",
    "/auth/introspect",
    "/auth/revoke",
    "/auth/jwks",
)
_FORM = "application/x-www-form-urlencoded"
_MAX_FIELDS = 32
MAX_FORM_BYTES = 64 * 1024  # OAuth forms are small; anything bigger is refused unread
_CORS = {"Access-Control-Allow-Origin": "*"}
_UNAVAILABLE = OAuthResponse(
    503,
    {"error": "temporarily_unavailable", "error_description": "Try again shortly."},
    [("Content-Type", "application/json"), ("Cache-Control", "no-store"), ("Retry-After", "5")],
)
_OTHER_METHODS = ["GET", "HEAD", "PUT", "PATCH", "DELETE"]


def smart_configuration(settings: AuthSettings) -> dict[str, Any]:
    """The `.well-known/smart-configuration` fields this slice makes true, and nothing more.

    There is no `authorization_endpoint` yet (it is REQUIRED by SMART: the auth-code slice adds
    it with `code_challenge_methods_supported`, `issuer` and the launch capabilities).
    """
    base = settings.public_base
    secret_and_jwt = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
    return {
        "token_endpoint": base + TOKEN_PATH,
        "jwks_uri": base + JWKS_PATH,
        "introspection_endpoint": base + INTROSPECT_PATH,
        "revocation_endpoint": base + REVOKE_PATH,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": secret_and_jwt,
        "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGS),
        "introspection_endpoint_auth_methods_supported": secret_and_jwt,
        "revocation_endpoint_auth_methods_supported": [*secret_and_jwt, "none"],
        "scopes_supported": ["system/*.rs", "system/*.cruds", "system/*.read", "system/*.write"],
        "capabilities": [
            "client-confidential-asymmetric",
            "client-confidential-symmetric",
            "permission-v1",
            "permission-v2",
        ],
    }


def render(response: OAuthResponse, extra: dict[str, str] | None = None) -> Response:
    headers = {**dict(response.headers), **_CORS, **(extra or {})}
    return Response(orjson.dumps(response.body), response.status, headers)


def _database_error(exc: PyMongoError) -> Response:
    """503 with `Retry-After` while the database is away (ARCHITECTURE.md item 10)."""
    if not is_unavailable(exc):
        raise exc
    log.warning("auth database unavailable: %s", type(exc).__name__)
    return render(_UNAVAILABLE)


def _preflight(methods: str) -> Callable[[Request], Awaitable[Response]]:
    async def preflight(request: Request) -> Response:
        return Response(
            status_code=204,
            headers={
                **_CORS,
                "Access-Control-Allow-Methods": methods,
                "Access-Control-Allow-Headers": "Authorization, Content-Type, Accept",
                "Access-Control-Max-Age": "600",
            },
        )

    return preflight


async def read_form(request: Request, max_bytes: int) -> tuple[tuple[str, str], ...]:
    """The urlencoded body as (name, value) pairs; anything else is `invalid_request`.

    Empty values count as absent (RFC 6749 section 3.1).
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != _FORM:
        raise InvalidRequestError(f"The body must be {_FORM}.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise InvalidRequestError("The request body is too large.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise InvalidRequestError("The request body is too large.")
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FIELDS,
        )
    except ValueError:  # non-ASCII or non-UTF-8 bytes, too many fields
        raise InvalidRequestError("The body is not a valid urlencoded form.") from None
    return tuple(pairs)


def auth_router(services: AuthServices) -> APIRouter:
    """The authorization server's routes; mount with `app.include_router(auth_router(...))`."""
    settings = services.settings
    server = services.server
    router = APIRouter()

    def endpoint(path: str, handle: Callable[[FormRequest], OAuthResponse]) -> None:
        url = settings.public_base + path

        async def post(request: Request) -> Response:
            try:
                form = await read_form(request, MAX_FORM_BYTES)
                oauth = FormRequest("POST", url, request.headers, form)
                return render(await run_sync(handle, oauth))
            except InvalidRequestError as error:
                return render(server.error_response(error))
            except PyMongoError as exc:
                return _database_error(exc)

        async def not_allowed(request: Request) -> Response:
            error = InvalidRequestError("Use POST.", status_code=405)
            return render(server.error_response(error), {"Allow": "POST, OPTIONS"})

        router.add_api_route(path, post, methods=["POST"], include_in_schema=False)
        router.add_api_route(
            path, _preflight("POST, OPTIONS"), methods=["OPTIONS"], include_in_schema=False
        )
        router.add_api_route(path, not_allowed, methods=_OTHER_METHODS, include_in_schema=False)

    endpoint(TOKEN_PATH, server.token_response)
    endpoint(INTROSPECT_PATH, server.introspection_response)
    endpoint(REVOKE_PATH, server.revocation_response)

    async def jwks(request: Request) -> Response:
        """The public signing keys (RFC 7517 JWK Set); resource servers may cache it briefly."""
        try:
            body = await run_sync(services.keys.jwks)
        except PyMongoError as exc:
            return _database_error(exc)
        max_age = int(settings.key_cache_seconds)
        headers = {**_CORS, "Cache-Control": f"public, max-age={max_age}"}
        return Response(orjson.dumps(body), 200, headers, media_type="application/json")

    router.add_api_route(JWKS_PATH, jwks, methods=["GET", "HEAD"], include_in_schema=False)
    router.add_api_route(
        JWKS_PATH, _preflight("GET, HEAD, OPTIONS"), methods=["OPTIONS"], include_in_schema=False
    )
    return router
