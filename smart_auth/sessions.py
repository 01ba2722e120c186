"""Browser sessions of the authorization server: server-side in MongoDB, an opaque cookie.

The cookie holds 256 random bits; MongoDB holds only their SHA-256. A session exists from the first
page (anonymous, to carry the CSRF token of the login form) and is replaced by a new one on login,
so an identifier planted before login is worthless after it (session fixation, catalogue SL-08).
It ends after `session_idle_timeout` without use, after `session_lifetime` in any case, and on
logout. Every form carries the session's CSRF token (synchronizer token pattern).

Cookie prefixes: https://datatracker.ietf.org/doc/html/draft-ietf-httpbis-rfc6265bis#section-4.1.3.2
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from smart_auth.accounts import Account
from smart_auth.store import AuthStore, Document, digest, utc


@dataclass(frozen=True)
class Session:
    """One browser session; `sub` is None until the user logs in."""

    key: str  # SHA-256 of the cookie value
    csrf: str
    created_at: float
    absolute_expiry: float
    sub: str | None = None
    username: str | None = None
    fhir_user: str | None = None
    auth_time: int | None = None

    @property
    def authenticated(self) -> bool:
        return self.sub is not None

    def check_csrf(self, token: Any) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token, self.csrf)

    @classmethod
    def from_document(cls, doc: Document) -> Session:
        return cls(
            key=doc["_id"],
            csrf=doc["csrf"],
            created_at=doc["created_at"].timestamp(),
            absolute_expiry=doc["absolute_expiry"].timestamp(),
            sub=doc.get("sub"),
            username=doc.get("username"),
            fhir_user=doc.get("fhir_user"),
            auth_time=doc.get("auth_time"),
        )


class SessionStore:
    """Sessions in the `sessions` collection (blocking calls; see store.py)."""

    def __init__(self, store: AuthStore, *, idle_timeout: int, lifetime: int, secure: bool) -> None:
        self.store = store
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self.cookie_name = "__Host-phr_session" if secure else "phr_session"
        self.secure = secure

    def _expiry(self, now: float, absolute: float) -> float:
        return min(now + self.idle_timeout, absolute)

    def create(self, account: Account | None = None) -> tuple[str, Session]:
        """A new session (anonymous, or signed in as `account`) and its cookie value."""
        value = secrets.token_urlsafe(32)
        now = self.store.clock()
        absolute = now + self.lifetime
        doc: Document = {
            "_id": digest(value),
            "csrf": secrets.token_urlsafe(32),
            "created_at": utc(now),
            "absolute_expiry": utc(absolute),
            "expires_at": utc(self._expiry(now, absolute)),
        }
        if account is not None:
            doc |= {
                "sub": account.sub,
                "username": account.username,
                "fhir_user": account.fhir_user,
                "auth_time": int(now),
            }
        self.store.sessions.insert_one(doc)
        return value, Session.from_document(doc)

    def get(self, value: str | None) -> Session | None:
        """The live session for a cookie value, its idle timer restarted; None when gone."""
        if not value or len(value) > 128:
            return None
        now = self.store.clock()
        doc = self.store.sessions.find_one({"_id": digest(value), "expires_at": {"$gt": utc(now)}})
        if doc is None:
            return None
        expiry = self._expiry(now, doc["absolute_expiry"].timestamp())
        touched = self.store.sessions.update_one(
            {"_id": doc["_id"], "expires_at": {"$gt": utc(now)}},
            {"$set": {"expires_at": utc(expiry)}},
        )
        if touched.matched_count != 1:
            return None  # ended meanwhile (logout, expiry)
        return Session.from_document({**doc, "expires_at": utc(expiry)})

    def alive(self, key: str) -> Session | None:
        """The session stored under `key` if it has not ended (no timer restart: online_access
        refreshes are the app's activity, not the user's)."""
        doc = self.store.sessions.find_one({"_id": key, "expires_at": {"$gt": self.store.now()}})
        return Session.from_document(doc) if doc else None

    def login(self, old: Session | None, account: Account) -> tuple[str, Session]:
        """Replace `old` by a new signed-in session (a new identifier: no fixation)."""
        if old is not None:
            self.end(old)
        return self.create(account)

    def end(self, session: Session) -> None:
        self.store.sessions.delete_one({"_id": session.key})

    def cookie(self, value: str) -> str:
        """The Set-Cookie value; `__Host-` needs Secure, Path=/ and no Domain."""
        parts = [f"{self.cookie_name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def clearing_cookie(self) -> str:
        return self.cookie("") + "; Max-Age=0"
