"""Login accounts: username, argon2id password, the FHIR user they are, optional TOTP.

Failed logins are counted in MongoDB per account and per client IP for a fixed window
(`login_failures`, TTL). A locked account answers exactly like a wrong password (no lock oracle,
security catalogue SL-01); too many failures from one IP is a 429 (SL-03). An unknown username costs
the same argon2 verification as a known one (SL-02).

NIST SP 800-63B section 5.2.2 (throttling): https://pages.nist.gov/800-63-3/sp800-63b.html
RFC 6238 (TOTP): https://www.rfc-editor.org/rfc/rfc6238
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyotp
from pymongo.errors import DuplicateKeyError

from smart_auth.cache import Recent
from smart_auth.directory import split_reference
from smart_auth.hashing import SecretHasher, verify_secret
from smart_auth.sealing import Sealer
from smart_auth.store import AuthStore, Document, utc

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
TOTP_ISSUER = "PHR"


class AccountError(ValueError):
    """The account cannot be created as asked; the message says why."""


class TooManyAttempts(Exception):
    """Too many failed logins from this client address; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed logins")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Account:
    username: str
    sub: str  # the stable subject of tokens (never the username: usernames may be renamed)
    fhir_user: str
    password_hash: str
    totp_secret: str | None = None
    created_at: datetime | None = None

    @classmethod
    def from_document(cls, doc: Document, sealer: Sealer) -> Account:
        sealed = doc.get("totp_sealed")
        return cls(
            username=doc["_id"],
            sub=doc["sub"],
            fhir_user=doc["fhir_user"],
            password_hash=doc["password_hash"],
            # In clear when written before sealing (start-up seals those, `seal_stored`).
            totp_secret=(
                sealer.open(sealed, _totp_context(doc["sub"])).decode()
                if sealed
                else doc.get("totp_secret")
            ),
            created_at=doc.get("created_at"),
        )


def _totp_context(sub: str) -> str:
    return f"accounts/{sub}/totp"


def normalize_username(username: Any) -> str | None:
    """The stored form of a username, or None when it cannot be one."""
    if not isinstance(username, str):
        return None
    name = username.strip().lower()
    return name if _USERNAME.match(name) else None


def totp_uri(account: Account) -> str | None:
    """The otpauth:// URI an authenticator app scans, for accounts with TOTP."""
    if account.totp_secret is None:
        return None
    totp = pyotp.TOTP(account.totp_secret)
    return totp.provisioning_uri(name=account.username, issuer_name=TOTP_ISSUER)


class LoginThrottle:
    """Fixed-window failure counters shared by every worker (MongoDB, TTL)."""

    def __init__(self, store: AuthStore, *, window: int, per_account: int, per_ip: int) -> None:
        self.store = store
        self.window = window
        self.per_account = per_account
        self.per_ip = per_ip

    def _live(self, key: str) -> Document | None:
        live = {"_id": key, "expires_at": {"$gt": self.store.now()}}
        return self.store.login_failures.find_one(live)

    def retry_after_ip(self, ip: str) -> int | None:
        """Seconds until `ip` may try again, or None when it may try now."""
        doc = self._live(f"ip:{ip}")
        if doc is None or doc["count"] < self.per_ip:
            return None
        return max(1, int(doc["expires_at"].timestamp() - self.store.clock()) + 1)

    def account_locked(self, username: str) -> bool:
        doc = self._live(f"account:{username}")
        return doc is not None and doc["count"] >= self.per_account

    def record_failure(self, username: str, ip: str) -> None:
        now = self.store.now()
        for key in (f"account:{username}", f"ip:{ip}"):
            # A window that ended but is not yet reaped by the TTL monitor starts afresh.
            self.store.login_failures.delete_one({"_id": key, "expires_at": {"$lte": now}})
            self.store.login_failures.update_one(
                {"_id": key},
                {
                    "$inc": {"count": 1},
                    "$setOnInsert": {"expires_at": utc(self.store.clock() + self.window)},
                },
                upsert=True,
            )

    def clear(self, username: str) -> None:
        self.store.login_failures.delete_one({"_id": f"account:{username}"})


class AccountRegistry:
    """Accounts in the `accounts` collection (blocking calls; see store.py)."""

    def __init__(
        self,
        store: AuthStore,
        hasher: SecretHasher,
        throttle: LoginThrottle,
        staleness: float = 1.0,
    ) -> None:
        self.store = store
        self.hasher = hasher
        self.throttle = throttle
        self._by_sub: Recent[str, Account | None] = Recent(staleness)

    def add(self, username: str, password: str, fhir_user: str, *, totp: bool = False) -> Account:
        name = normalize_username(username)
        if name is None:
            raise AccountError("username must be 1-64 of a-z 0-9 . _ @ - (starting alphanumeric)")
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise AccountError(f"password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")
        if split_reference(fhir_user) is None:
            raise AccountError("fhir_user must be a reference like Patient/x or RelatedPerson/y")
        account = Account(
            username=name,
            sub=secrets.token_urlsafe(16),
            fhir_user=fhir_user,
            password_hash=self.hasher.hash(password),
            totp_secret=pyotp.random_base32() if totp else None,
            created_at=self.store.now(),
        )
        doc = {
            "_id": account.username,
            "sub": account.sub,
            "fhir_user": account.fhir_user,
            "password_hash": account.password_hash,
            "totp_sealed": (
                self.store.sealer.seal(account.totp_secret.encode(), _totp_context(account.sub))
                if account.totp_secret
                else None
            ),
            "totp_last_step": None,
            "created_at": account.created_at,
        }
        try:
            self.store.accounts.insert_one(doc)
        except DuplicateKeyError:
            raise AccountError(f"username {name!r} is taken") from None
        return account

    def get(self, username: Any) -> Account | None:
        name = normalize_username(username)
        doc = self.store.accounts.find_one({"_id": name}) if name else None
        return Account.from_document(doc, self.store.sealer) if doc else None

    def by_sub(self, sub: str) -> Account | None:
        """The account of a token's subject, as read within `staleness` seconds (every refresh
        checks that its user still exists as the same FHIR user)."""

        def read() -> Account | None:
            doc = self.store.accounts.find_one({"sub": sub})
            return Account.from_document(doc, self.store.sealer) if doc else None

        return self._by_sub.fetch(sub, read)

    def list(self) -> list[Account]:
        docs = self.store.accounts.find().sort("_id", 1)
        return [Account.from_document(d, self.store.sealer) for d in docs]

    def seal_stored(self) -> int:
        """Seal the TOTP secrets stored in clear by an earlier version; how many (blocking)."""
        return self.store.seal_clear(
            self.store.accounts,
            "totp_secret",
            "totp_sealed",
            lambda doc: _totp_context(doc["sub"]),
            str.encode,
        )

    def authenticate(self, username: Any, password: Any, totp_code: Any, ip: str) -> Account | None:
        """The account when every factor is right and no throttle applies; None otherwise.

        Raises `TooManyAttempts` when `ip` is throttled (checked before any password work).
        """
        retry_after = self.throttle.retry_after_ip(ip)
        if retry_after is not None:
            raise TooManyAttempts(retry_after)
        password = password if isinstance(password, str) else ""
        name = normalize_username(username) or "-"
        account = self.get(name) if len(password) <= MAX_PASSWORD else None
        if account is None:
            self.hasher.spend_decoy(password[:MAX_PASSWORD])
            self.throttle.record_failure(name, ip)
            return None
        locked = self.throttle.account_locked(account.username)
        ok = verify_secret(account.password_hash, password)  # always spent: same timing
        if ok and not locked and account.totp_secret is not None:
            ok = self._check_totp(account, totp_code)
        if not ok or locked:
            self.throttle.record_failure(account.username, ip)
            return None
        self.throttle.clear(account.username)
        return account

    def _check_totp(self, account: Account, code: Any) -> bool:
        """One code per 30 s step, accepted once (RFC 6238 section 5.2: no replay)."""
        if not isinstance(code, str) or not code.strip().isdigit():
            return False
        code = code.strip()
        totp = pyotp.TOTP(account.totp_secret or "")
        now = self.store.clock()
        for drift in (0, -1, 1):  # one step of clock drift either way
            at = now + drift * totp.interval
            if hmac.compare_digest(totp.at(at), code):
                step = totp.timecode(at)
                claimed = self.store.accounts.update_one(
                    {
                        "_id": account.username,
                        "$or": [{"totp_last_step": None}, {"totp_last_step": {"$lt": step}}],
                    },
                    {"$set": {"totp_last_step": step}},
                )
                return claimed.modified_count == 1
        return False
