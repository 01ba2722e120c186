"""Authorization codes: random, stored hashed, single-use, short-lived, bound to what they grant.

Redemption reads the code (`find`), issues and records the tokens, then spends the code with one
conditional update on `used: false` (`spend`): the issuance's commit (refresh.py). Of concurrent
redemptions exactly one spend wins, and the losers revoke the grant, the winner's tokens included
(catalogue AC-02). A code presented once it is spent is marked `replayed` and reported with its
grant id, so the grant (every token the first redemption issued) can be revoked (RFC 6749 section
4.1.2, RFC 9700 section 4.5, catalogue AC-01).

RFC 6749 section 4.1.2: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin
from pymongo.errors import DuplicateKeyError

from smart_auth.store import AuthStore, Document, digest, utc

MAX_CODE_CHARS = 128


class ChallengeReused(Exception):
    """A code was already issued for this PKCE challenge (catalogue AC-09)."""


class CodeReplayed(Exception):
    """A code was presented again; `grant` is the grant its first redemption opened."""

    def __init__(self, grant: str) -> None:
        super().__init__("authorization code replayed")
        self.grant = grant


@dataclass(frozen=True)
class AuthorizationCode(AuthorizationCodeMixin):  # type: ignore[misc]
    """What an approved authorization request grants, as the token endpoint redeems it."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    sub: str
    fhir_user: str
    patient: str | None
    nonce: str | None
    auth_time: int
    grant: str  # the grant (refresh-token family) id this code opens
    session: str | None  # session key, for online_access
    need_patient_banner: bool

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_document(cls, doc: Document) -> AuthorizationCode:
        return cls(**{name: doc[name] for name in cls.__dataclass_fields__})


class CodeStore:
    """The `codes` collection (blocking calls; see store.py)."""

    def __init__(self, store: AuthStore, lifetime: int) -> None:
        self.store = store
        self.lifetime = lifetime

    def issue(self, code: AuthorizationCode) -> str:
        """A new code; `ChallengeReused` when its PKCE challenge already has one."""
        value = secrets.token_urlsafe(32)
        try:
            self._insert(value, code)
        except DuplicateKeyError:
            raise ChallengeReused from None
        return value

    def _insert(self, value: str, code: AuthorizationCode) -> None:
        self.store.codes.insert_one(
            {
                "_id": digest(value),
                **code.fields(),
                "used": False,
                "replayed": False,
                # Kept past its lifetime so a late replay is still recognised and acted on.
                "valid_until": utc(self.store.clock() + self.lifetime),
                "expires_at": utc(self.store.clock() + max(self.lifetime, 600)),
            }
        )

    def find(self, value: Any, client_id: str) -> AuthorizationCode | None:
        """What an unspent, unexpired code of this client grants; None for anything else.

        Raises `CodeReplayed` when the code was spent already.
        """
        if not isinstance(value, str) or not 0 < len(value) <= MAX_CODE_CHARS:
            return None
        key = digest(value)
        doc = self.store.codes.find_one({"_id": key})
        if doc is None or doc["client_id"] != client_id:
            return None
        if doc["used"]:
            self.store.codes.update_one({"_id": key}, {"$set": {"replayed": True}})
            raise CodeReplayed(doc["grant"])
        if doc["valid_until"].timestamp() <= self.store.clock():
            return None
        return AuthorizationCode.from_document(doc)

    def spend(self, value: str) -> bool:
        """Use the code up: True for the one caller that did. (Not find_one_and_update:
        SecantusDB scans the whole collection for it.)"""
        spent = self.store.codes.update_one(
            {"_id": digest(value), "used": False}, {"$set": {"used": True}}
        )
        return spent.modified_count == 1
