"""Grants and their tokens: refresh rotation with reuse detection, revocation of a whole family.

A grant is what one approval produced (its id is the refresh-token *family*). Every issuance under
it (the code exchange, then each refresh) inserts one `tokens` document recording the access
token's jti and, when a refresh token is returned, that token's SHA-256 as `_id`. Then it
*commits* by an atomic update of the grant that only matches while the grant is not revoked.

Revocation marks the grant revoked first, then denies every recorded access token and kills every
refresh token of the family. So an issuance that committed before the mark is visible to the
revoker, and one that tries to commit after it fails and revokes its own tokens: no token escapes
a concurrent revocation.

Refresh tokens rotate on every use: the presented one is consumed atomically (`used: true`) and a
new one issued. Presenting a consumed one again is reuse: the whole family is revoked (RFC 9700
section 4.14.2, catalogue IR-05). An `online_access` token also dies with the login session it
was issued in.

RFC 6749 section 6: https://www.rfc-editor.org/rfc/rfc6749#section-6
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import TokenMixin
from pymongo.errors import DuplicateKeyError

from smart_auth.revocation import Denylist
from smart_auth.store import AuthStore, Document, digest, utc
from smart_auth.tokens import AccessToken

log = logging.getLogger("phr.auth")
MAX_REFRESH_CHARS = 128


class GrantRevoked(Exception):
    """The grant was revoked (replay, reuse, revocation) while or before issuing."""


class RefreshReused(Exception):
    """A superseded refresh token was presented: its family has been revoked."""


@dataclass(frozen=True)
class GrantContext:
    """Who and what a grant is for; copied onto every token of the grant."""

    family: str
    client_id: str
    sub: str
    fhir_user: str
    patient: str | None
    need_patient_banner: bool
    session: str | None  # session key when the refresh token is online_access

    def get_user_id(self) -> str:  # Authlib's user hook (server._generate_token)
        return self.sub

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class RefreshToken(TokenMixin):  # type: ignore[misc]
    """A stored refresh token, as the refresh grant, introspection and revocation see it."""

    key: str
    context: GrantContext
    scope: str
    issued_at: float
    expires_at: float
    used: bool
    revoked: bool

    @classmethod
    def from_document(cls, doc: Document) -> RefreshToken:
        context = GrantContext(**{n: doc[n] for n in GrantContext.__dataclass_fields__})
        return cls(
            key=doc["_id"],
            context=context,
            scope=doc["scope"],
            issued_at=doc["issued_at"].timestamp(),
            expires_at=doc["expires_at"].timestamp(),
            used=doc["used"],
            revoked=doc.get("revoked", False),
        )

    def check_client(self, client: Any) -> bool:
        return bool(client.client_id == self.context.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - self.issued_at)

    def is_expired(self) -> bool:
        return False  # `GrantStore` never returns an expired one

    def is_revoked(self) -> bool:
        return self.revoked or self.used


class GrantStore:
    """The `grants` and `tokens` collections (blocking calls; see store.py)."""

    def __init__(self, store: AuthStore, denylist: Denylist) -> None:
        self.store = store
        self.denylist = denylist

    def open(self, context: GrantContext) -> None:
        """Create the grant; `GrantRevoked` if a replayed code already revoked it."""
        try:
            self.store.grants.insert_one(
                {
                    "_id": context.family,
                    "client_id": context.client_id,
                    "sub": context.sub,
                    "revoked": False,
                    "created_at": self.store.now(),
                    # Raised by each issuance; meanwhile long enough not to be reaped mid-way.
                    "expires_at": utc(self.store.clock() + 600),
                }
            )
        except DuplicateKeyError:
            raise GrantRevoked from None

    def issue(
        self,
        context: GrantContext,
        *,
        scope: str,
        access: AccessToken,
        refresh_until: float | None,
    ) -> str | None:
        """Record an issuance (and its refresh token when `refresh_until` is given), then commit.

        Returns the refresh token, or None when none was asked for. `GrantRevoked` when the grant
        was revoked first: the access token is then denied and nothing is returned.
        """
        refresh = secrets.token_urlsafe(32) if refresh_until is not None else None
        expires = max(float(access.exp), refresh_until or 0.0)
        self.store.tokens.insert_one(
            {
                "_id": digest(refresh or secrets.token_urlsafe(32)),
                **context.fields(),
                "family": context.family,
                "scope": scope,
                "access_jti": access.jti,
                "access_exp": utc(access.exp),
                "used": refresh is None,  # nothing to redeem without a refresh token
                "revoked": False,
                "issued_at": self.store.now(),
                "expires_at": utc(expires),
            }
        )
        committed = self.store.grants.update_one(
            {"_id": context.family, "revoked": False},
            {"$max": {"expires_at": utc(expires)}},
        )
        if committed.matched_count != 1:
            self.revoke_family(context.family)
            raise GrantRevoked
        return refresh

    def find(self, value: Any) -> RefreshToken | None:
        """A live (unexpired) refresh token, whatever its state; None for anything else."""
        if not isinstance(value, str) or not 0 < len(value) <= MAX_REFRESH_CHARS:
            return None
        doc = self.store.tokens.find_one(
            {"_id": digest(value), "expires_at": {"$gt": self.store.now()}}
        )
        return RefreshToken.from_document(doc) if doc else None

    def consume(self, token: RefreshToken) -> None:
        """Spend `token` (rotation). `RefreshReused` (family revoked) if it was spent already;
        `GrantRevoked` if its family is revoked."""
        if token.revoked or self.is_revoked(token.context.family):
            raise GrantRevoked
        spent = self.store.tokens.update_one(  # not find_one_and_update: SecantusDB scans for it
            {"_id": token.key, "used": False, "revoked": False}, {"$set": {"used": True}}
        )
        if spent.modified_count != 1:
            log.warning("refresh token reuse: revoking grant family")
            self.revoke_family(token.context.family)
            raise RefreshReused

    def is_revoked(self, family: str) -> bool:
        doc = self.store.grants.find_one({"_id": family}, {"revoked": 1})
        return doc is None or bool(doc["revoked"])

    def revoke_family(self, family: str) -> None:
        """Revoke the grant: its refresh tokens die and its live access tokens are denied."""
        self.store.grants.update_one(
            {"_id": family},
            {
                "$set": {"revoked": True},
                "$max": {"expires_at": utc(self.store.clock() + 3600)},
            },
            upsert=True,
        )
        now = self.store.clock()
        for doc in self.store.tokens.find(
            {"family": family}, {"access_jti": 1, "access_exp": 1, "client_id": 1}
        ):
            exp = doc["access_exp"].timestamp()
            if exp > now:
                self.denylist.revoke(doc["access_jti"], exp, doc["client_id"])
        self.store.tokens.update_many({"family": family}, {"$set": {"revoked": True}})
