"""How the loader gets its bearer tokens.

Against a running server (`--url`): a token given as it is (`PHR_ACCESS_TOKEN`), or a backend
client's client_credentials (`--client-id` with `PHR_CLIENT_SECRET`; secrets stay out of argv and
the process list), at the token endpoint the server's SMART discovery document names. In-process
and for the demo scenario, the loader is the server's own tool with the server's database: it
mints a short-lived `system/*.cruds` token with the server's signing keys, renewed as it ages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable

import httpx

from smart_auth.services import AuthServices

LOADER_SCOPE = "system/*.cruds"
LOADER_CLIENT = "seed-data-loader"

Fetch = Callable[[], tuple[str, float]]  # -> (token, seconds it lives)


class TokenAuth(httpx.Auth):
    """Bearer tokens from `fetch` (blocking; run in a thread), renewed half-way through."""

    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch
        self.token = ""
        self.renew_at = 0.0
        self.lock = asyncio.Lock()

    async def current(self) -> str:
        async with self.lock:
            if time.monotonic() >= self.renew_at:
                self.token, lifetime = await asyncio.to_thread(self.fetch)
                self.renew_at = time.monotonic() + lifetime / 2
            return self.token

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.current()}"
        yield request


def given(token: str) -> TokenAuth:
    return TokenAuth(lambda: (token, float("inf")))


def client_credentials(token_url: str, client_id: str, secret: str) -> TokenAuth:
    def fetch() -> tuple[str, float]:
        response = httpx.post(
            token_url,
            data={"grant_type": "client_credentials", "scope": LOADER_SCOPE},
            auth=(client_id, secret),
            timeout=30,
        )
        if response.status_code != 200:
            raise httpx.HTTPStatusError(
                f"the token endpoint refused the client: {response.text[:300]}",
                request=response.request,
                response=response,
            )
        body = response.json()
        return body["access_token"], float(body.get("expires_in", 300))

    return TokenAuth(fetch)


def minted(services: AuthServices) -> TokenAuth:
    """Tokens signed with the server's keys, for its own tools."""

    def fetch() -> tuple[str, float]:
        token, claims = services.tokens.mint(
            audience=services.fhir_base,
            client_id=LOADER_CLIENT,
            subject=LOADER_CLIENT,
            scope=LOADER_SCOPE,
        )
        return token, float(claims.exp - claims.iat)

    return TokenAuth(fetch)
