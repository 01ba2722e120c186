"""Access-token verification at the resource server (security catalogue TU-02..TU-06)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from smart_auth.keys import ACCESS_TOKEN, ID_TOKEN
from smart_auth.services import AuthServices
from smart_auth.tokens import InvalidToken
from tests.smart_auth.conftest import AuthServer, BackendClient, issue, shifted
from tests.smart_auth.helpers import assertion, assertion_form, b64url, jwt_parts, unsigned


@pytest.fixture
def token(http: httpx.Client, auth_server: AuthServer, backend: BackendClient) -> str:
    return issue(http, auth_server, backend)


async def test_verify_access_token_returns_the_claims(
    auth_server: AuthServer, backend: BackendClient, token: str
) -> None:
    claims = await auth_server.services.verify_access_token(token)
    assert claims.client_id == claims.sub == backend.client_id
    assert claims.aud == auth_server.fhir_base and claims.iss == auth_server.settings.issuer_url
    assert claims.scope == "system/Patient.rs"
    assert [s.text for s in claims.scopes.resources] == ["system/Patient.rs"]
    assert claims.patient is None and claims.fhir_user is None


def test_patient_and_fhir_user_claims_round_trip(auth_server: AuthServer) -> None:
    tokens = auth_server.services.tokens
    token, minted = tokens.mint(
        audience=auth_server.fhir_base,
        client_id="app",
        subject="user-1",
        scope="patient/*.rs",
        patient="123",
        fhir_user="Patient/123",
    )
    claims = tokens.verify(token, auth_server.fhir_base)
    assert claims == minted
    assert jwt_parts(token)[1]["fhirUser"] == "Patient/123"


def _sign(key: ECKey, header: dict, claims: dict) -> str:
    return jwt.encode(header, claims, key, algorithms=[header["alg"]])


def _tampered_payload(s: AuthServer, token: str) -> str:
    header, _, signature = token.split(".")
    claims = jwt_parts(token)[1] | {"scope": "system/*.cruds"}
    return f"{header}.{b64url(claims)}.{signature}"


def _tampered_signature(s: AuthServer, token: str) -> str:
    head, _, signature = token.rpartition(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"


def _id_token(s: AuthServer, token: str) -> str:
    key = s.services.keys.signing_key(ID_TOKEN)
    claims = jwt_parts(token)[1] | {"aud": s.fhir_base, "nonce": "n"}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key.key, algorithms=["RS256"])


def _with_access_key(s: AuthServer, token: str, **header: str) -> str:
    key = s.services.keys.signing_key(ACCESS_TOKEN)
    h = {"alg": "ES256", "kid": key.kid, **header}
    claims = jwt_parts(token)[1]
    return jwt.encode(h, claims, key.key, algorithms=["ES256"], default_type=None)


def _without_claim(s: AuthServer, token: str, name: str) -> str:
    key = s.services.keys.signing_key(ACCESS_TOKEN)
    claims = {k: v for k, v in jwt_parts(token)[1].items() if k != name}
    header = {"alg": "ES256", "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, claims, key.key, algorithms=["ES256"])


def _hs256(s: AuthServer, token: str) -> str:
    kid = jwt_parts(token)[0]["kid"]
    signing_input = unsigned({"alg": "HS256", "typ": "at+jwt", "kid": kid}, jwt_parts(token)[1])
    mac = hmac.new(b"guess", signing_input[:-1].encode(), hashlib.sha256).digest()
    return signing_input[:-1] + "." + b64url(mac)


def _foreign(kid: str | None) -> Callable[[AuthServer, str], str]:
    def make(s: AuthServer, token: str) -> str:
        key = ECKey.generate_key("P-256", auto_kid=True)
        header = {"alg": "ES256", "typ": "at+jwt", "kid": kid or jwt_parts(token)[0]["kid"]}
        return _sign(key, header, jwt_parts(token)[1])

    return make


Case = tuple[Callable[[AuthServer, str], str], Callable[[AuthServer], str] | None, str]
REJECTED: dict[str, Case] = {
    # case: (token from a good one, audience (None = FHIR base), the InvalidToken reason)
    "tampered payload": (_tampered_payload, None, "bad signature"),
    "tampered signature": (_tampered_signature, None, "bad signature"),
    "wrong audience": (lambda s, t: t, lambda s: "https://other.example/fhir", "wrong audience"),
    "audience is the AS": (lambda s, t: t, lambda s: s.settings.issuer_url, "wrong audience"),
    "id_token as bearer (RS256)": (_id_token, None, "unsupported alg"),
    "typ JWT": (lambda s, t: _with_access_key(s, t, typ="JWT"), None, "(typ)"),
    "no typ": (lambda s, t: _with_access_key(s, t), None, "(typ)"),
    "alg none": (
        lambda s, t: unsigned({"alg": "none", "typ": "at+jwt"}, jwt_parts(t)[1]),
        None,
        "unsupported alg",
    ),
    "HS256": (_hs256, None, "unsupported alg"),
    "unknown kid": (_foreign("not-a-kid"), None, "unknown kid"),
    "foreign key using our kid": (_foreign(None), None, "bad signature"),
    "no kid": (
        lambda s, t: _sign(ECKey.generate_key("P-256"), {"alg": "ES256", "typ": "at+jwt"}, {}),
        None,
        "unknown kid",
    ),
    "missing client_id": (lambda s, t: _without_claim(s, t, "client_id"), None, "client_id"),
    "missing exp": (lambda s, t: _without_claim(s, t, "exp"), None, "exp"),
    "empty": (lambda s, t: "", None, "malformed"),
    "opaque string (refresh token, code)": (lambda s, t: "kDz3a9f0e1", None, "malformed"),
    "three garbage segments": (lambda s, t: "a.b.c", None, "malformed"),
    "header not JSON": (lambda s, t: b64url(b"{") + ".e30.", None, "malformed"),
    "huge": (lambda s, t: "e" * 100_000 + ".a.b", None, "malformed"),
}


@pytest.mark.parametrize("case", REJECTED)
def test_verify_rejects(auth_server: AuthServer, token: str, case: str) -> None:
    make, audience, reason = REJECTED[case]
    auth_server.services.tokens.verify(token, auth_server.fhir_base)  # the good one is cached
    bad = make(auth_server, token)
    with pytest.raises(InvalidToken) as raised:
        auth_server.services.tokens.verify(
            bad, audience(auth_server) if audience else auth_server.fhir_base
        )
    assert reason in raised.value.reason


@pytest.mark.parametrize(
    ("seconds", "reason"),
    [(301 + 31, "token expired"), (-100, "token issued in the future")],
)
def test_verify_rejects_out_of_time(
    auth_server: AuthServer, token: str, seconds: float, reason: str
) -> None:
    with pytest.raises(InvalidToken, match=reason):
        shifted(auth_server, seconds).verify(token, auth_server.fhir_base)


def test_verify_allows_small_clock_skew(auth_server: AuthServer, token: str) -> None:
    assert shifted(auth_server, 300 + 10).verify(token, auth_server.fhir_base)
    assert shifted(auth_server, -10).verify(token, auth_server.fhir_base)


def test_verify_rejects_another_issuer(auth_server: AuthServer) -> None:
    other = shifted(auth_server, 0, issuer="https://evil.example")
    token, _ = other.mint(audience=auth_server.fhir_base, client_id="x", subject="x", scope="")
    with pytest.raises(InvalidToken, match="wrong issuer"):
        auth_server.services.tokens.verify(token, auth_server.fhir_base)


async def test_revocation_takes_effect_within_a_second_on_another_worker(
    auth_server: AuthServer, backend: BackendClient, token: str
) -> None:
    other = AuthServices.create(auth_server.settings)  # another worker: own caches, same DB
    try:
        assert await other.verify_access_token(token)  # its caches are warm now
        signed = assertion(backend.es384, backend.client_id, auth_server.token_url)
        form = assertion_form(signed) | {"token": token}
        del form["grant_type"], form["scope"]
        async with httpx.AsyncClient(base_url=auth_server.url) as http:
            r = await http.post("/auth/revoke", data=form)
        assert r.status_code == 200, r.text
        revoked_at = time.monotonic()

        # The revoking worker knows at once.
        with pytest.raises(InvalidToken, match="revoked"):
            auth_server.services.tokens.verify_cached(token, auth_server.fhir_base)

        # The other one within a second: poll its real entry point with a deadline.
        while True:
            try:
                await other.verify_access_token(token)
            except InvalidToken as exc:
                assert exc.reason == "token revoked"
                break
            assert time.monotonic() - revoked_at < 1.0, "revocation not effective within 1 s"
            await asyncio.sleep(0.01)
    finally:
        other.close()


def test_verification_does_no_io_when_caches_are_fresh(auth_server: AuthServer, token: str) -> None:
    services = auth_server.services
    services.tokens.refresh(token)
    assert not services.tokens.needs_io(token)
    # Garbage never reaches the database, however often it is sent.
    assert not services.tokens.needs_io("a.b.c")
    assert not services.tokens.needs_io(unsigned({"alg": "none", "kid": "x"}, {}))
