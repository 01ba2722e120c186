"""HTTP surface of the authorization server: token, introspection, revocation, JWKS; discovery.

Endpoints take the bare `Request` (no FastAPI body parameters, so no 422 ever), read and check the
form here, then hand it to the synchronous server through `run_sync`. Every error is RFC 6749 JSON
with `Cache-Control: no-store`; a database outage is a 503 with `Retry-After`.

CORS is set per route (SMART: token, JWKS, userinfo and introspection are called from browsers;
RFC 7009 section 5 asks the same for revocation; the authorization pages get none, RFC 9700
section 2.6), with a wildcard origin and no credentials, and `Authorization` named in the allowed
headers because the wildcard does not cover it (Fetch standard). The pages of the authorization
flow are in `interaction.py`.

SMART discovery: https://hl7.org/fhir/smart-app-launch/STU2.2/conformance.html#metadata
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from authlib.oauth2.rfc6749 import InvalidRequestError
from fastapi import APIRouter
from pymongo.errors import PyMongoError
from starlette.requests import Request
from starlette.responses import Response

from smart_auth.clients import CLIENT_ASSERTION_ALGS
from smart_auth.forms import MAX_FORM_BYTES, read_form
from smart_auth.interaction import AUTHORIZE_PATH, interaction_router
from smart_auth.keys import ID_TOKEN
from smart_auth.server import FormRequest, OAuthResponse
from smart_auth.services import AuthServices
from smart_auth.settings import AuthSettings
from smart_auth.store import is_unavailable, run_sync
from smart_auth.tokens import InvalidToken

log = logging.getLogger("phr.auth")

TOKEN_PATH, INTROSPECT_PATH, REVOKE_PATH, JWKS_PATH, USERINFO_PATH, STYLE_PATH = (
    "/auth/token",
    "/auth/introspect",
    "/auth/revoke",
    "/auth/jwks",
    "/auth/userinfo",
    "/auth/smart-style.json",
)
_CORS = {"Access-Control-Allow-Origin": "*"}
_UNAVAILABLE = OAuthResponse(
    503,
    {"error": "temporarily_unavailable", "error_description": "Try again shortly."},
    [("Content-Type", "application/json"), ("Cache-Control", "no-store"), ("Retry-After", "5")],
)
_OTHER_METHODS = ["GET", "HEAD", "PUT", "PATCH", "DELETE"]


SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.rs",
    "patient/*.cruds",
    "patient/*.read",
    "patient/*.write",
    "user/*.rs",
    "user/*.cruds",
    "user/*.read",
    "user/*.write",
    "system/*.rs",
    "system/*.cruds",
    "system/*.read",
    "system/*.write",
]
CAPABILITIES = [
    "launch-standalone",
    "launch-ehr",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-standalone-patient",
    "context-ehr-patient",
    "context-banner",
    "context-style",
    "permission-v1",
    "permission-v2",
    "permission-patient",
    "permission-user",
    "permission-offline",
    "permission-online",
    "sso-openid-connect",
]
_SECRET_AND_JWT = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


def smart_configuration(settings: AuthSettings) -> dict[str, Any]:
    """The `.well-known/smart-configuration` document; each claim here has a passing test.

    The FHIR side serves it at `{fhir base}/.well-known/smart-configuration` (SMART checklist 1).
    """
    base = settings.public_base
    return {
        "issuer": settings.issuer_url,
        "jwks_uri": base + JWKS_PATH,
        "authorization_endpoint": base + AUTHORIZE_PATH,
        "token_endpoint": base + TOKEN_PATH,
        "userinfo_endpoint": base + USERINFO_PATH,
        "introspection_endpoint": base + INTROSPECT_PATH,
        "revocation_endpoint": base + REVOKE_PATH,
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [*_SECRET_AND_JWT, "none"],
        "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGS),
        "introspection_endpoint_auth_methods_supported": _SECRET_AND_JWT,
        "revocation_endpoint_auth_methods_supported": [*_SECRET_AND_JWT, "none"],
        "authorization_response_iss_parameter_supported": True,
        "scopes_supported": SCOPES_SUPPORTED,
        "capabilities": CAPABILITIES,
    }


def openid_configuration(settings: AuthSettings) -> dict[str, Any]:
    """OpenID Provider Metadata, served at `{issuer}/.well-known/openid-configuration`.

    https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderMetadata
    """
    smart = smart_configuration(settings)
    fields = (
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
        "response_types_supported",
        "grant_types_supported",
        "code_challenge_methods_supported",
        "token_endpoint_auth_methods_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        "authorization_response_iss_parameter_supported",
        "scopes_supported",
    )
    return {
        **{name: smart[name] for name in fields},
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ID_TOKEN.alg],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"],
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


def openid_configuration_path(settings: AuthSettings) -> str:
    """OIDC Discovery section 4: the document lives under the issuer's path."""
    return urlsplit(settings.issuer_url).path.rstrip("/") + "/.well-known/openid-configuration"


SMART_STYLE = {
    "color_background": "#ffffff",
    "color_error": "#b3261e",
    "color_highlight": "#1f5fa8",
    "color_modal_backdrop": "rgba(0, 0, 0, 0.4)",
    "color_success": "#2e7d32",
    "color_text": "#1b1f24",
    "dim_border_radius": "6px",
    "dim_font_size": "16px",
    "dim_spacing_size": "16px",
    "font_family_body": "system-ui, -apple-system, 'Segoe UI', sans-serif",
    "font_family_heading": "system-ui, -apple-system, 'Segoe UI', sans-serif",
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

    async def userinfo(request: Request) -> Response:
        """OIDC UserInfo (Core section 5.3): `sub`, and `fhirUser` when granted; Bearer only."""
        scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _bearer_error(401, None)
        try:
            claims = await services.verify_access_token(token.strip())
        except InvalidToken as exc:
            return _bearer_error(401, "invalid_token", exc.reason)
        except PyMongoError as exc:
            return _database_error(exc)
        scopes = claims.scopes.special
        if "openid" not in scopes:
            return _bearer_error(403, "insufficient_scope", "The token lacks the openid scope.")
        body: dict[str, Any] = {"sub": claims.sub}
        if claims.fhir_user and scopes & {"fhirUser", "profile"}:
            body["fhirUser"] = claims.fhir_user
        headers = {**_CORS, "Cache-Control": "no-store"}
        return Response(orjson.dumps(body), 200, headers, media_type="application/json")

    router.add_api_route(USERINFO_PATH, userinfo, methods=["GET", "POST"], include_in_schema=False)

    def document(path: str, body: dict[str, Any], cache: str) -> None:
        async def serve(request: Request) -> Response:
            headers = {**_CORS, "Cache-Control": cache}
            return Response(orjson.dumps(body), 200, headers, media_type="application/json")

        router.add_api_route(path, serve, methods=["GET", "HEAD"], include_in_schema=False)

    document(openid_configuration_path(settings), openid_configuration(settings), "max-age=300")
    document(STYLE_PATH, SMART_STYLE, "public, max-age=3600")
    for path, methods in (
        (JWKS_PATH, "GET, HEAD, OPTIONS"),
        (USERINFO_PATH, "GET, POST, OPTIONS"),
        (openid_configuration_path(settings), "GET, HEAD, OPTIONS"),
    ):
        router.add_api_route(
            path, _preflight(methods), methods=["OPTIONS"], include_in_schema=False
        )
    router.include_router(interaction_router(services))
    return router


def _bearer_error(status: int, error: str | None, description: str | None = None) -> Response:
    """RFC 6750 section 3: the error travels in `WWW-Authenticate` (and the JSON body)."""
    challenge = "Bearer"
    body: dict[str, str] = {}
    if error is not None:
        challenge += f' error="{error}"'
        body["error"] = error
        if description:
            challenge += f', error_description="{description}"'
            body["error_description"] = description
    headers = {**_CORS, "WWW-Authenticate": challenge, "Cache-Control": "no-store"}
    return Response(orjson.dumps(body), status, headers, media_type="application/json")
