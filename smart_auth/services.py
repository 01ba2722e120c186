"""The authorization server's parts, built once per process from `AuthSettings`.

`fhir_server.create_app()` builds one `AuthServices` (passing its `PatientDirectory`), awaits
`start()` in its lifespan, mounts `auth_router(services)`, serves `smart_configuration(settings)`
at `/fhir/.well-known/smart-configuration`, and calls `verify_access_token` on every FHIR request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from authlib.common.security import is_secure_transport

from smart_auth.accounts import AccountRegistry, LoginThrottle
from smart_auth.authorize import PendingRequests
from smart_auth.clients import ClientRegistry
from smart_auth.codes import CodeStore
from smart_auth.directory import PatientDirectory, SelfOnlyDirectory
from smart_auth.hashing import SecretHasher
from smart_auth.id_tokens import IdTokenService
from smart_auth.keys import KeyRing
from smart_auth.launches import LaunchContexts
from smart_auth.refresh import GrantStore
from smart_auth.revocation import Denylist
from smart_auth.server import SmartAuthorizationServer
from smart_auth.sessions import SessionStore
from smart_auth.settings import AuthSettings
from smart_auth.store import AuthStore, Clock, run_sync
from smart_auth.tokens import AccessToken, TokenService

log = logging.getLogger("phr.auth")


@dataclass
class AuthServices:
    settings: AuthSettings
    fhir_base: str
    store: AuthStore
    keys: KeyRing
    denylist: Denylist
    tokens: TokenService
    clients: ClientRegistry
    server: SmartAuthorizationServer
    accounts: AccountRegistry
    sessions: SessionStore
    pending: PendingRequests
    launches: LaunchContexts
    codes: CodeStore
    grants: GrantStore
    directory: PatientDirectory
    reloading: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def create(
        cls,
        settings: AuthSettings,
        *,
        fhir_base: str | None = None,
        store: AuthStore | None = None,
        clock: Clock = time.time,
        key_miss_refresh_interval: float = 1.0,
        directory: PatientDirectory | None = None,
    ) -> AuthServices:
        """Wire the parts; no I/O yet (the MongoClient connects in the background).

        `directory` answers the FHIR questions of the login and approval pages; without one, a
        Patient user acts for itself only (`SelfOnlyDirectory`).
        """
        fhir_base = (fhir_base or settings.fhir_base).rstrip("/")
        if not is_secure_transport(settings.token_endpoint):
            # OAuth needs TLS: Authlib answers every request `insecure_transport` (RFC 6749 1.6).
            log.warning("OAuth endpoints refuse plain http off loopback; set an https base URL")
        store = store or AuthStore.connect(settings, clock)
        keys = KeyRing(
            store,
            rotation_period=settings.key_rotation_period,
            # A retired key verifies until its last token has expired, even if a worker with a
            # stale cache signed with it up to `key_cache_seconds` after retirement.
            verify_grace=max(settings.access_token_lifetime, settings.id_token_lifetime)
            + settings.key_cache_seconds
            + settings.clock_leeway,
            cache_seconds=settings.key_cache_seconds,
            miss_refresh_interval=key_miss_refresh_interval,
        )
        denylist = Denylist(store, settings.revocation_staleness_seconds)
        tokens = TokenService(
            keys,
            denylist,
            issuer=settings.issuer_url,
            lifetime=settings.access_token_lifetime,
            leeway=settings.clock_leeway,
            clock=clock,
        )
        hasher = SecretHasher(settings.argon2_profile)
        clients = ClientRegistry(store, hasher)
        throttle = LoginThrottle(
            store,
            window=settings.login_failure_window,
            per_account=settings.login_max_failures,
            per_ip=settings.login_max_failures_per_ip,
        )
        accounts = AccountRegistry(store, hasher, throttle)
        sessions = SessionStore(
            store,
            idle_timeout=settings.session_idle_timeout,
            lifetime=settings.session_lifetime,
            secure=settings.secure_cookies,
        )
        codes = CodeStore(store, settings.authorization_code_lifetime)
        grants = GrantStore(store, denylist)
        id_tokens = IdTokenService(
            keys, issuer=settings.issuer_url, lifetime=settings.id_token_lifetime, clock=clock
        )
        server = SmartAuthorizationServer(
            settings=settings,
            store=store,
            clients=clients,
            tokens=tokens,
            fhir_base=fhir_base,
            accounts=accounts,
            sessions=sessions,
            codes=codes,
            grants=grants,
            id_tokens=id_tokens,
        )
        return cls(
            settings,
            fhir_base,
            store,
            keys,
            denylist,
            tokens,
            clients,
            server,
            accounts=accounts,
            sessions=sessions,
            pending=PendingRequests(store, settings.authorization_request_lifetime),
            launches=LaunchContexts(store, settings.launch_context_lifetime),
            codes=codes,
            grants=grants,
            directory=directory or SelfOnlyDirectory(),
        )

    async def start(self) -> None:
        """Create the indexes and seal secrets an earlier version stored in clear (idempotent;
        every worker may run it)."""
        await run_sync(self.store.ensure_indexes)
        keys, totps = (
            await run_sync(self.keys.seal_stored),
            await run_sync(self.accounts.seal_stored),
        )
        if keys or totps:
            log.info(
                "sealed secrets stored in clear", extra={"fields": {"keys": keys, "totp": totps}}
            )
        # Under another secret key, start-up fails saying so, rather than every token request.
        await run_sync(self.keys.open_stored)

    def close(self) -> None:
        self.store.close()

    async def verify_access_token(self, token: str, audience: str | None = None) -> AccessToken:
        """The bearer token's claims, or `InvalidToken(reason)`; `audience` defaults to the FHIR
        base. Stale caches are reloaded in the threadpool, so the event loop never blocks, by one
        request at a time: those that find them stale meanwhile wait here and then verify from
        the reloaded caches, rather than each taking a threadpool hop to queue behind a lock."""
        if self.tokens.needs_io(token):
            async with self.reloading:
                if self.tokens.needs_io(token):
                    await run_sync(self.tokens.refresh, token)
        return self.tokens.verify_cached(token, audience or self.fhir_base)
