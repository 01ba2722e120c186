"""Token introspection (RFC 7662) and revocation (RFC 7009) over JWT access tokens.

Both find a token by verifying it as ours (signature by a known key, `iss`, `typ`), whatever its
expiry; introspection then answers `{"active": false}` and nothing else for anything not active,
and revocation adds the jti to the denylist until the token's own expiry.

Refresh tokens are found too: introspection describes a live one, revocation of one revokes its
whole grant family (its other refresh tokens and its live access tokens). Unknown
`token_type_hint` values are ignored rather than refused: both RFCs tell the server to search
every token type it supports.

RFC 7662: https://www.rfc-editor.org/rfc/rfc7662 ; RFC 7009: https://www.rfc-editor.org/rfc/rfc7009
SMART introspection: https://hl7.org/fhir/smart-app-launch/STU2.2/token-introspection.html
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Request, TokenMixin
from authlib.oauth2.rfc7009 import RevocationEndpoint as BaseRevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as BaseIntrospectionEndpoint

from smart_auth.clients import Client
from smart_auth.refresh import RefreshToken
from smart_auth.tokens import AccessToken

if TYPE_CHECKING:
    from smart_auth.server import SmartAuthorizationServer

CONFIDENTIAL_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")


@dataclass(frozen=True)
class IssuedToken(TokenMixin):  # type: ignore[misc]
    """An access token of ours, as Authlib's endpoints see it."""

    claims: AccessToken
    expired: bool
    revoked: bool

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.claims.client_id

    def get_scope(self) -> str:
        return self.claims.scope

    def get_expires_in(self) -> int:
        return self.claims.exp - self.claims.iat

    def is_expired(self) -> bool:
        return self.expired

    def is_revoked(self) -> bool:
        return self.revoked


def _check_token_param(request: OAuth2Request) -> None:
    if not request.form.get("token"):
        raise InvalidRequestError("Missing 'token' parameter.")


class IntrospectionEndpoint(BaseIntrospectionEndpoint):  # type: ignore[misc]
    """For confidential clients: their own tokens, or any token for a resource server."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(CONFIDENTIAL_METHODS)
    server: SmartAuthorizationServer

    def check_params(self, request: OAuth2Request, client: Client) -> None:
        _check_token_param(request)

    def query_token(
        self, token_string: str, token_type_hint: str | None
    ) -> IssuedToken | RefreshToken | None:
        return self.server.find_token(token_string)

    def check_permission(
        self, token: IssuedToken | RefreshToken, client: Client, request: OAuth2Request
    ) -> bool:
        # RFC 7662 section 4: a client probing other clients' tokens learns nothing.
        return client.resource_server or token.check_client(client)

    def introspect_token(self, token: IssuedToken | RefreshToken) -> dict[str, Any]:
        if isinstance(token, IssuedToken):
            return {"active": True, "token_type": "Bearer", **token.claims.claims()}
        context = token.context
        body: dict[str, Any] = {
            "active": True,
            "token_type": "refresh_token",
            "client_id": context.client_id,
            "scope": token.scope,
            "sub": context.sub,
            "iss": self.server.tokens.issuer,
            "iat": int(token.issued_at),
            "exp": int(token.expires_at),
            "fhirUser": context.fhir_user,
        }
        if context.patient is not None:
            body["patient"] = context.patient
        return body


class RevocationEndpoint(BaseRevocationEndpoint):  # type: ignore[misc]
    """Public clients identify themselves; confidential clients must authenticate."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = [*CONFIDENTIAL_METHODS, "none"]
    server: SmartAuthorizationServer

    def check_params(self, request: OAuth2Request, client: Client) -> None:
        _check_token_param(request)

    def query_token(
        self, token_string: str, token_type_hint: str | None
    ) -> IssuedToken | RefreshToken | None:
        return self.server.find_token(token_string)

    def revoke_token(self, token: IssuedToken | RefreshToken, request: OAuth2Request) -> None:
        if isinstance(token, RefreshToken):
            self.server.grants.revoke_family(token.context.family)
        elif not token.expired:  # an expired token is dead already; nothing to remember
            self.server.revoke_access_token(token.claims)
