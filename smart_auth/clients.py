"""The client registry: who may ask for tokens, how they authenticate, which scopes they may get.

A client authenticates with exactly the method it registered (RFC 7591
`token_endpoint_auth_method`): `none` (public), `client_secret_basic` / `client_secret_post` (the
secret kept only as an argon2 hash) or `private_key_jwt` (inline public JWKS, ES384 or RS384;
SMART client-confidential-asymmetric).
Its registered scopes bound every request: the authorization server mediates (SMART backend
services), it never widens.

RFC 7591 client metadata: https://www.rfc-editor.org/rfc/rfc7591#section-2
SMART clients: https://hl7.org/fhir/smart-app-launch/STU2.2/client-confidential-asymmetric.html
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey
from pymongo.errors import DuplicateKeyError

from consent.scopes import Scopes, narrow, parse_scopes
from smart_auth.cache import Recent
from smart_auth.hashing import SecretHasher, VerifiedSecrets, verify_secret
from smart_auth.store import AuthStore, Document

AuthMethod = Literal["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
AUTH_METHODS: tuple[AuthMethod, ...] = (
    "none",
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
)
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})
GRANT_TYPES = frozenset({"client_credentials", "authorization_code", "refresh_token"})
CLIENT_ASSERTION_ALGS = ("ES384", "RS384")  # what SMART (and Inferno) sign client assertions with

# RFC 3986 unreserved characters: safe in URLs, form bodies and Basic credentials as they are.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class RegistrationError(ValueError):
    """The registration is refused; the message says why."""


@dataclass(frozen=True)
class Client(ClientMixin):  # type: ignore[misc]
    """A registered client, with the hooks Authlib's grants call."""

    client_id: str
    name: str
    client_type: Literal["public", "confidential"]
    token_endpoint_auth_method: AuthMethod
    scope: str
    grant_types: tuple[str, ...]
    redirect_uris: tuple[str, ...] = ()
    secret_hash: str | None = None
    jwks: dict[str, Any] | None = None
    resource_server: bool = False  # may introspect any token (RFC 7662 section 4)
    created_at: datetime | None = None
    launch_uri: str | None = None  # where an EHR launch sends the browser (`iss`, `launch`)

    @classmethod
    def from_document(cls, doc: Document) -> Client:
        return cls(
            client_id=doc["_id"],
            name=doc["name"],
            client_type=doc["client_type"],
            token_endpoint_auth_method=doc["token_endpoint_auth_method"],
            scope=doc["scope"],
            grant_types=tuple(doc["grant_types"]),
            redirect_uris=tuple(doc.get("redirect_uris", ())),
            secret_hash=doc.get("secret_hash"),
            jwks=doc.get("jwks"),
            resource_server=bool(doc.get("resource_server", False)),
            created_at=doc.get("created_at"),
            launch_uri=doc.get("launch_uri"),
        )

    def to_document(self) -> Document:
        return {
            "_id": self.client_id,
            "name": self.name,
            "client_type": self.client_type,
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "scope": self.scope,
            "grant_types": list(self.grant_types),
            "redirect_uris": list(self.redirect_uris),
            "secret_hash": self.secret_hash,
            "jwks": self.jwks,
            "resource_server": self.resource_server,
            "created_at": self.created_at,
            "launch_uri": self.launch_uri,
        }

    @property
    def allowed_scopes(self) -> Scopes:
        return parse_scopes(self.scope)

    def public_keys(self) -> KeySet:
        """The client's registered verification keys (private_key_jwt)."""
        return KeySet.import_key_set(cast(Any, self.jwks or {"keys": []}))

    # -- Authlib ClientMixin ---------------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str:
        return narrow(parse_scopes(scope or ""), self.allowed_scopes).text()

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string match (RFC 9700 section 4.1.3), except the port of a loopback URI."""
        return redirect_uri in self.redirect_uris or any(
            loopback_match(registered, redirect_uri) for registered in self.redirect_uris
        )

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret_hash is not None and verify_secret(self.secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


def loopback_match(registered: str, requested: str) -> bool:
    """RFC 8252 section 7.3: a native app's loopback redirect may use any port."""
    try:
        reg, req = urlsplit(registered), urlsplit(requested)
        if reg.scheme != "http" or req.scheme != "http" or req.username or req.password:
            return False
        if not reg.hostname or not ipaddress.ip_address(reg.hostname).is_loopback:
            return False
        req.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    return (reg.hostname, reg.path, reg.query, reg.fragment) == (
        req.hostname,
        req.path,
        req.query,
        req.fragment,
    )


# -- registration checks (one per rule) --------------------------------------------------------


def check_client_id(client_id: str) -> None:
    if not _CLIENT_ID.match(client_id):
        raise RegistrationError("client_id must be 1-128 of A-Z a-z 0-9 . _ ~ -")


def check_redirect_uri(uri: str) -> None:
    """https, or http on a loopback IP literal for native apps (RFC 8252 section 7.3); no
    fragments or wildcards (exact matching only)."""
    parts = urlsplit(uri)
    if parts.fragment or "*" in uri or not parts.hostname:
        raise RegistrationError(f"redirect URI not allowed: {uri}")
    if parts.scheme == "https":
        return
    if parts.scheme == "http":
        try:
            if ipaddress.ip_address(parts.hostname).is_loopback:
                return
        except ValueError:
            pass
    raise RegistrationError(f"redirect URI must be https or a loopback IP: {uri}")


def check_jwks(jwks: Any) -> dict[str, Any]:
    """Public EC P-384 or RSA >= 2048-bit keys only (ES384 / RS384 client assertions)."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise RegistrationError("jwks must be a JWK Set with at least one key")
    for jwk in keys:
        if not isinstance(jwk, dict) or _PRIVATE_MEMBERS & jwk.keys():
            raise RegistrationError("jwks must hold public keys only")
    try:
        key_set = KeySet.import_key_set(cast(Any, {"keys": keys}))
    except (JoseError, ValueError, TypeError) as exc:
        raise RegistrationError(f"jwks is not a valid JWK Set: {exc}") from None
    for key in key_set:
        if isinstance(key, ECKey) and key.curve_name == "P-384":
            continue
        if isinstance(key, RSAKey) and key.public_key.key_size >= 2048:
            continue
        raise RegistrationError("client keys must be EC P-384 (ES384) or RSA >= 2048 (RS384)")
    # Store the kids joserfc derived (RFC 7638 thumbprints) for keys registered without one.
    return {"keys": [{**jwk, "kid": key.kid} for jwk, key in zip(keys, key_set, strict=True)]}


def check_scope(scope: str) -> str:
    parsed = parse_scopes(scope)
    if parsed.unknown:
        raise RegistrationError(f"not SMART scopes: {' '.join(parsed.unknown)}")
    if not parsed.resources and not parsed.special:
        raise RegistrationError("at least one scope is required")
    return " ".join(dict.fromkeys(scope.split()))


class ClientRegistry:
    """Clients in the `clients` collection (blocking calls; see store.py)."""

    def __init__(self, store: AuthStore, hasher: SecretHasher, staleness: float = 1.0) -> None:
        self.store = store
        self.hasher = hasher
        self.verified = VerifiedSecrets()
        self._recent: Recent[str, Client | None] = Recent(staleness)

    def register(
        self,
        *,
        name: str,
        token_endpoint_auth_method: AuthMethod,
        scope: str,
        jwks: dict[str, Any] | None = None,
        redirect_uris: Iterable[str] = (),
        grant_types: Iterable[str] | None = None,
        client_id: str | None = None,
        resource_server: bool = False,
        launch_uri: str | None = None,
    ) -> tuple[Client, str | None]:
        """Store a new client; returns it and its secret, shown this once and never stored."""
        method = token_endpoint_auth_method
        if method not in AUTH_METHODS:
            raise RegistrationError(f"token_endpoint_auth_method must be one of {AUTH_METHODS}")
        if not name.strip() or len(name) > 200:
            raise RegistrationError("name must be 1-200 characters")
        client_id = client_id or secrets.token_urlsafe(16)
        check_client_id(client_id)
        uris = tuple(dict.fromkeys(redirect_uris))
        for uri in uris:
            check_redirect_uri(uri)
        if launch_uri is not None:
            check_redirect_uri(launch_uri)  # the same rules: https, or loopback http
        public = method == "none"
        # An app that users launch gets codes and refresh tokens; a backend gets client_credentials.
        user_app = public or bool(uris)
        defaults = ("authorization_code", "refresh_token") if user_app else ("client_credentials",)
        grants = tuple(grant_types or defaults)
        if unknown := set(grants) - GRANT_TYPES:
            raise RegistrationError(f"unsupported grant types: {sorted(unknown)}")
        if public and "client_credentials" in grants:
            raise RegistrationError("client_credentials needs a confidential client")
        if (method == "private_key_jwt") != (jwks is not None):
            raise RegistrationError("jwks is required for, and only for, private_key_jwt")
        secret = secrets.token_urlsafe(32) if method in SECRET_METHODS else None
        client = Client(
            client_id=client_id,
            name=name.strip(),
            client_type="public" if public else "confidential",
            token_endpoint_auth_method=method,
            scope=check_scope(scope),
            grant_types=grants,
            redirect_uris=uris,
            secret_hash=self.hasher.hash(secret) if secret else None,
            jwks=check_jwks(jwks) if jwks is not None else None,
            resource_server=resource_server,
            created_at=self.store.now(),
            launch_uri=launch_uri,
        )
        try:
            self.store.clients.insert_one(client.to_document())
        except DuplicateKeyError:
            raise RegistrationError(f"client_id {client_id!r} is already registered") from None
        self._recent.forget(client_id)
        return client, secret

    def get(self, client_id: Any) -> Client | None:
        """The registered client, as read within the last `staleness` seconds (cache.py)."""
        if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
            return None  # not a client id we could have issued: no query
        return self._recent.fetch(client_id, lambda: self._read(client_id))

    def _read(self, client_id: str) -> Client | None:
        doc = self.store.clients.find_one({"_id": client_id})
        return Client.from_document(doc) if doc else None

    def list(self) -> list[Client]:
        return [Client.from_document(d) for d in self.store.clients.find().sort("_id", 1)]

    def authenticate_secret(self, client_id: str, secret: str) -> Client | None:
        """The client when `secret` is its secret; equal work whether or not it exists."""
        client = self.get(client_id)
        if client is None or client.secret_hash is None:
            self.hasher.spend_decoy(secret)
            return None
        return client if self.verified.check(client.secret_hash, secret) else None
