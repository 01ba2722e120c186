"""Token grants: small Authlib subclasses with SMART's rules as named checks.

This slice has `client_credentials` (SMART Backend Services). The authorization-code grant (PKCE
S256 only, `aud` = FHIR base, single-use codes), refresh with rotation and reuse detection, and
CIBA register here the same way: a subclass per grant, `server.register_grant(...)`, tokens minted
through `server.generate_token` and recorded through `server.save_token`.

Backend services: https://hl7.org/fhir/smart-app-launch/STU2.2/backend-services.html
"""

from __future__ import annotations

from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import InvalidScopeError, UnauthorizedClientError, grants

from consent.scopes import parse_scopes, within
from smart_auth.clients import Client

MAX_SCOPE_CHARS = 4096


def check_system_scopes(requested: str | None, client: Client) -> str:
    """The granted scope text: `system/` resource scopes only, each within the registration.

    SMART: the server "SHALL mediate" what a backend client may get, so a request beyond the
    registration is refused (`invalid_scope`), not silently narrowed (security catalogue TE-12).
    """
    if not requested or not requested.strip():
        raise InvalidScopeError("scope is required.")
    if len(requested) > MAX_SCOPE_CHARS:
        raise InvalidScopeError("scope is too long.")
    scopes = parse_scopes(requested)
    if scopes.unknown:
        raise InvalidScopeError("scope holds values that are not SMART scopes.")
    if scopes.special or any(s.context != "system" for s in scopes.resources):
        raise InvalidScopeError("client_credentials grants system/ scopes only.")
    allowed = client.allowed_scopes.resources
    if not all(any(within(s, a) for a in allowed) for s in scopes.resources):
        raise InvalidScopeError("scope exceeds what the client is registered for.")
    return " ".join(s.text for s in scopes.resources)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """RFC 6749 section 4.4 for SMART backend services; no refresh token (SMART SHOULD NOT)."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ]

    def validate_token_request(self) -> None:
        client: Client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("The client may not use grant_type=client_credentials.")
        self.request.client = client
        self.request.scope = check_system_scopes(self.request.payload.scope, client)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        # Authlib's version mints with the requested scope text; mint with the granted one.
        token = self.generate_token(scope=self.request.scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER
