"""Grants and their tokens: refresh rotation with reuse detection, revocation of a whole family.

A grant is what one approval produced; its id is the refresh-token *family*, and it exists as the
`tokens` documents of its issuances. Every issuance (the code exchange, then each refresh) first
inserts one `tokens` document recording the access token's jti and, when a refresh token is
returned, that token's SHA-256 as `_id`. Then it *commits* by spending what was presented (the
code, or the previous refresh token) with one conditional update. A commit that finds it spent
(a replay, a concurrent use, a revocation) revokes the whole family, its own issuance included.

Revocation kills every refresh token of the family first, then denies every recorded live access
token. An issuance whose commit came before the kill had inserted its record before it, so the
revoker finds and denies it; one whose commit comes after finds its refresh token killed (or its
code spent) and revokes itself: no token escapes a concurrent revocation. Two database writes per
issuance (insert and commit), no grant document to maintain: the token endpoint's cost.

Refresh tokens rotate on every use: the presented one is spent (`used: true`) and a new one
issued. Presenting a spent one again is reuse: the whole family is revoked (RFC 9700 section
4.14.2, catalogue IR-05). An `online_access` token also dies with the login session it was issued
in.

RFC 6749 section 6: https://www.rfc-editor.org/rfc/rfc6749#section-6
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import TokenMixin

from smart_auth.revocation import Denylist
from smart_auth.store import AuthStore, Document, digest, utc
from smart_auth.tokens import AccessToken

log = logging.getLogger("phr.auth")
MAX_REFRESH_CHARS = 128


class GrantRevoked(Exception):
    """The grant was revoked (replay, reuse, revocation) while or before issuing."""


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
    """Grants as their `tokens` documents (blocking calls; see store.py)."""

    def __init__(self, store: AuthStore, denylist: Denylist) -> None:
        self.store = store
        self.denylist = denylist

    def issue(
        self,
        context: GrantContext,
        *,
        scope: str,
        access: AccessToken,
        refresh_until: float | None,
        commit: Callable[[], bool],
    ) -> str | None:
        """Record an issuance (and its refresh token when `refresh_until` is given), then
        `commit` (True when it spent what was presented).

        Returns the refresh token, or None when none was asked for. `GrantRevoked` when the commit
        fails: the family, this issuance included, is then revoked and nothing is returned.
        """
        refresh = secrets.token_urlsafe(32) if refresh_until is not None else None
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
                "expires_at": utc(max(float(access.exp), refresh_until or 0.0)),
            }
        )
        if not commit():
            log.warning("authorization code or refresh token used twice: revoking grant family")
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

    def spend(self, token: RefreshToken) -> bool:
        """Use `token` up (rotation): True for the one caller that did, while it was alive. (Not
        find_one_and_update: SecantusDB scans the collection for it.)"""
        spent = self.store.tokens.update_one(
            {"_id": token.key, "used": False, "revoked": False}, {"$set": {"used": True}}
        )
        return spent.modified_count == 1

    def revoke_family(self, family: str) -> None:
        """Revoke the grant: its refresh tokens die, then its live access tokens are denied (in
        that order: see the module docstring)."""
        self.store.tokens.update_many({"family": family}, {"$set": {"revoked": True}})
        now = self.store.clock()
        for doc in self.store.tokens.find(
            {"family": family}, {"access_jti": 1, "access_exp": 1, "client_id": 1}
        ):
            exp = doc["access_exp"].timestamp()
            if exp > now:
                self.denylist.revoke(doc["access_jti"], exp, doc["client_id"])
