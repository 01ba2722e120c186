"""Token endpoint: client_credentials for backend services (SMART checklist 7, catalogue TE)."""

from __future__ import annotations

import hashlib
import hmac
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.smart_auth.conftest import AuthServer, BackendClient
from tests.smart_auth.helpers import (
    assertion,
    assertion_form,
    b64url,
    basic,
    es384_key,
    jwt_parts,
    oauth_error,
    unsigned,
)


def assert_token_response(r: httpx.Response, scope: str) -> dict:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and 0 < body["expires_in"] <= 300
    assert body["scope"] == scope
    assert "refresh_token" not in body  # SMART backend services: SHOULD NOT
    return body


@pytest.mark.parametrize("key_name", ["es384", "rs384"])
def test_private_key_jwt_issues_an_rfc9068_access_token(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, key_name: str
) -> None:
    key = getattr(backend, key_name)
    signed = assertion(key, backend.client_id, auth_server.token_url)
    r = http.post("/auth/token", data=assertion_form(signed, "system/Patient.rs"))
    body = assert_token_response(r, "system/Patient.rs")

    header, claims = jwt_parts(body["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256"
    jwks = http.get("/auth/jwks").json()
    assert header["kid"] in {k["kid"] for k in jwks["keys"] if k["alg"] == "ES256"}
    assert claims["iss"] == auth_server.settings.issuer_url
    assert claims["aud"] == auth_server.fhir_base
    assert claims["sub"] == claims["client_id"] == backend.client_id
    assert claims["scope"] == "system/Patient.rs"
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert len(claims["jti"]) >= 16
    # SMART checklist 6.1: the token is sent unencoded in forms, so it must be URL-safe.
    assert not set(body["access_token"]) & set("+/=&%")

    verified = auth_server.services.tokens.verify(body["access_token"], auth_server.fhir_base)
    assert verified.client_id == backend.client_id and verified.jti == claims["jti"]


@pytest.mark.parametrize(
    ("requested", "granted"),
    [
        ("system/Patient.rs", "system/Patient.rs"),
        ("system/Patient.rs system/Observation.rs", "system/Patient.rs system/Observation.rs"),
        ("system/Patient.r", "system/Patient.r"),
        ("system/Patient.read", "system/Patient.read"),  # SMART v1 syntax, Inferno's preset
        ("system/Encounter.read", "system/Encounter.read"),
        ("system/Observation.rs?category=laboratory", "system/Observation.rs?category=laboratory"),
        ("system/Patient.rs  system/Patient.rs", "system/Patient.rs"),
    ],
)
def test_granted_scope(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, requested, granted
) -> None:
    signed = assertion(backend.es384, backend.client_id, auth_server.token_url)
    assert_token_response(http.post("/auth/token", data=assertion_form(signed, requested)), granted)


@pytest.mark.parametrize(
    "requested",
    [
        "system/Condition.rs",  # type not registered
        "system/*.rs",  # wider than the registration
        "system/Patient.cruds",  # more letters than registered
        "system/Patient.write",
        "system/Patient.rs system/Condition.rs",  # one bad scope spoils the request
        "patient/Patient.rs",  # not a system scope (TE-12)
        "user/*.rs",
        "launch/patient",
        "openid fhirUser",
        "offline_access",
        "system/Patient.rs launch",
        "not-a-scope",
        "",
        " ",
        "system/" + "A" * 5000 + ".rs",
    ],
)
def test_scope_outside_registration_or_not_system_is_invalid_scope(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, requested: str
) -> None:
    signed = assertion(backend.es384, backend.client_id, auth_server.token_url)
    form = assertion_form(signed, requested)
    if not requested:
        del form["scope"]
    oauth_error(http.post("/auth/token", data=form), 400, "invalid_scope")


def _hs256_with_public_key(backend: BackendClient, aud: str) -> str:
    """Algorithm confusion: HMAC keyed with the client's public key bytes (TE-09)."""
    claims = {"iss": backend.client_id, "sub": backend.client_id, "aud": aud}
    claims |= {"exp": int(time.time()) + 300, "jti": "hs256-" + str(time.time_ns())}
    signing_input = unsigned({"alg": "HS256", "kid": backend.rs384.kid}, claims)[:-1]
    secret = backend.rs384.as_pem(private=False)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def _none(backend: BackendClient, aud: str, alg: str) -> str:
    claims = {"iss": backend.client_id, "sub": backend.client_id, "aud": aud}
    claims |= {"exp": int(time.time()) + 300, "jti": f"{alg}-{time.time_ns()}"}
    return unsigned({"alg": alg, "kid": backend.es384.kid, "typ": "JWT"}, claims)


SIGNATURE = "signature could not be verified"
AUD = "aud must be the token endpoint"
MALFORMED_JWT = "Invalid JWT"
BAD_ASSERTIONS = {
    # case: (assertion factory, words the error_description must contain)
    "aud is the FHIR base": (lambda b, s: assertion(b.es384, b.client_id, s.fhir_base), AUD),
    "aud is the issuer": (lambda b, s: assertion(b.es384, b.client_id, s.url), AUD),
    "expired": (
        lambda b, s: assertion(b.es384, b.client_id, s.token_url, exp_in=-120),
        "expired",
    ),
    "exp an hour ahead": (
        lambda b, s: assertion(b.es384, b.client_id, s.token_url, exp_in=3600),
        "five minutes",
    ),
    "no exp": (
        lambda b, s: assertion(b.es384, b.client_id, s.token_url, omit=("exp",)),
        "numeric exp",
    ),
    "no jti": (lambda b, s: assertion(b.es384, b.client_id, s.token_url, omit=("jti",)), "jti"),
    "jti too long": (
        lambda b, s: assertion(b.es384, b.client_id, s.token_url, jti="j" * 300),
        "jti",
    ),
    "nbf in the future": (
        lambda b, s: assertion(b.es384, b.client_id, s.token_url, nbf=int(time.time()) + 200),
        "not valid yet",
    ),
    "iss differs from sub": (
        lambda b, s: assertion(b.es384, b.client_id, s.token_url, iss="someone-else"),
        "iss and sub",
    ),
    "unregistered key reusing the kid": (
        lambda b, s: assertion(es384_key(), b.client_id, s.token_url, kid=b.es384.kid),
        SIGNATURE,
    ),
    "unknown kid": (lambda b, s: assertion(es384_key(), b.client_id, s.token_url), SIGNATURE),
    "unknown client": (
        lambda b, s: assertion(b.es384, "no-such-client", s.token_url),
        "does not exist",
    ),
    "RS256 by the registered key (not allowed)": (
        lambda b, s: assertion(b.rs384, b.client_id, s.token_url, alg="RS256"),
        SIGNATURE,
    ),
    "alg none": (lambda b, s: _none(b, s.token_url, "none"), SIGNATURE),
    "alg None": (lambda b, s: _none(b, s.token_url, "None"), SIGNATURE),
    "alg NONE": (lambda b, s: _none(b, s.token_url, "NONE"), SIGNATURE),
    "HS256 keyed with the public key": (
        lambda b, s: _hs256_with_public_key(b, s.token_url),
        SIGNATURE,
    ),
    "not a JWT": (lambda b, s: "not-a-jwt", MALFORMED_JWT),
    "three empty segments": (lambda b, s: "..", MALFORMED_JWT),
    "header is a list": (lambda b, s: "W10.e30.", MALFORMED_JWT),
    "payload is a list": (lambda b, s: "eyJhbGciOiJFUzM4NCJ9.W10.", MALFORMED_JWT),
    "sub is a number": (lambda b, s: unsigned({"alg": "ES384"}, {"sub": 7}), "sub"),
}


@pytest.mark.parametrize("case", BAD_ASSERTIONS)
def test_bad_client_assertion_is_invalid_client(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, case: str
) -> None:
    make, words = BAD_ASSERTIONS[case]
    r = http.post("/auth/token", data=assertion_form(make(backend, auth_server)))
    assert words in oauth_error(r, (400, 401), "invalid_client")["error_description"]


def test_client_id_parameter_must_match_the_assertion(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient
) -> None:
    signed = assertion(backend.es384, backend.client_id, auth_server.token_url)
    r = http.post("/auth/token", data=assertion_form(signed, client_id="another-client"))
    oauth_error(r, (400, 401), "invalid_client")


def test_replayed_assertion_is_refused(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient
) -> None:
    signed = assertion(backend.rs384, backend.client_id, auth_server.token_url)
    assert http.post("/auth/token", data=assertion_form(signed)).status_code == 200
    body = oauth_error(http.post("/auth/token", data=assertion_form(signed)), 400, "invalid_client")
    assert "jti" in body["error_description"]


def test_concurrent_double_submission_succeeds_once(
    auth_server: AuthServer, backend: BackendClient
) -> None:
    signed = assertion(backend.es384, backend.client_id, auth_server.token_url)

    def submit(_: int) -> int:
        return httpx.post(auth_server.token_url, data=assertion_form(signed)).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(submit, range(4)))
    assert statuses == [200, 400, 400, 400]


def test_wrong_assertion_type_is_refused(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient
) -> None:
    signed = assertion(backend.es384, backend.client_id, auth_server.token_url)
    form = assertion_form(signed, client_assertion_type="not_an_assertion_type")
    oauth_error(http.post("/auth/token", data=form), (400, 401), "invalid_client")


@pytest.mark.parametrize("grant_type", ["not_a_grant_type", "password", "implicit", "urn:x:y"])
def test_unsupported_grant_type_is_exactly_400(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, grant_type: str
) -> None:
    signed = assertion(backend.es384, backend.client_id, auth_server.token_url)
    form = assertion_form(signed, grant_type=grant_type)
    oauth_error(http.post("/auth/token", data=form), 400, "unsupported_grant_type")


def test_client_not_registered_for_the_grant_is_unauthorized_client(
    http: httpx.Client, auth_server: AuthServer
) -> None:
    key = es384_key()
    client, _ = auth_server.services.clients.register(
        name="code only",
        token_endpoint_auth_method="private_key_jwt",
        scope="system/*.rs",
        jwks={"keys": [key.as_dict(private=False)]},
        grant_types=["authorization_code"],
    )
    signed = assertion(key, client.client_id, auth_server.token_url)
    oauth_error(http.post("/auth/token", data=assertion_form(signed)), 400, "unauthorized_client")


# -- client_secret_basic / client_secret_post --------------------------------------------------


def test_client_secret_basic(http: httpx.Client, secret_client) -> None:
    client, secret = secret_client
    form = {"grant_type": "client_credentials", "scope": "system/Observation.rs"}
    r = http.post("/auth/token", data=form, headers=basic(client.client_id, secret))
    assert_token_response(r, "system/Observation.rs")


@pytest.mark.parametrize(
    "credentials",
    [
        "wrong secret",
        "unknown client",
        "not base64",
        "no colon",
        "not utf-8",
    ],
)
def test_bad_basic_credentials_are_401_with_www_authenticate(
    http: httpx.Client, secret_client, credentials: str
) -> None:
    client, secret = secret_client
    headers = {
        "wrong secret": basic(client.client_id, secret + "x"),
        "unknown client": basic("no-such-client", secret),
        "not base64": {"Authorization": "Basic !!!notbase64"},
        "no colon": {"Authorization": "Basic " + "Y2xpZW50"},
        "not utf-8": {"Authorization": "Basic " + "/w=="},
    }[credentials]
    form = {"grant_type": "client_credentials", "scope": "system/Patient.rs"}
    r = http.post("/auth/token", data=form, headers=headers)
    body = oauth_error(r, 401, "invalid_client")
    assert r.headers["www-authenticate"].startswith("Basic ")
    # TE-01: the same words whether or not the client exists.
    assert body["error_description"] == "Client authentication failed."


def test_client_secret_post_only_for_clients_registered_with_it(
    http: httpx.Client, auth_server: AuthServer, secret_client
) -> None:
    client, secret = auth_server.services.clients.register(
        name="post", token_endpoint_auth_method="client_secret_post", scope="system/Patient.rs"
    )
    form = {"grant_type": "client_credentials", "scope": "system/Patient.rs"}
    ok = http.post(
        "/auth/token", data={**form, "client_id": client.client_id, "client_secret": secret}
    )
    assert_token_response(ok, "system/Patient.rs")
    basic_client, basic_secret = secret_client
    wrong_method = {**form, "client_id": basic_client.client_id, "client_secret": basic_secret}
    oauth_error(http.post("/auth/token", data=wrong_method), (400, 401), "invalid_client")


def test_two_authentication_methods_at_once_are_invalid_request(
    http: httpx.Client, auth_server: AuthServer, backend: BackendClient, secret_client
) -> None:
    client, secret = secret_client
    signed = assertion(backend.es384, backend.client_id, auth_server.token_url)
    r = http.post(
        "/auth/token", data=assertion_form(signed), headers=basic(client.client_id, secret)
    )
    oauth_error(r, 400, "invalid_request")


def test_no_client_authentication_is_invalid_client(http: httpx.Client) -> None:
    form = {"grant_type": "client_credentials", "scope": "system/Patient.rs"}
    oauth_error(http.post("/auth/token", data=form), 401, "invalid_client")


# -- malformed requests: RFC 6749 errors, never 422 or 500 --------------------------------------

FORM = "application/x-www-form-urlencoded"
MALFORMED: dict[str, tuple[bytes, dict[str, str]]] = {
    "empty body": (b"", {"Content-Type": FORM}),
    "no content type": (b"grant_type=client_credentials", {}),
    "JSON body": (b'{"grant_type": "client_credentials"}', {"Content-Type": "application/json"}),
    "multipart": (b"--x--", {"Content-Type": "multipart/form-data; boundary=x"}),
    "text/plain": (b"grant_type=client_credentials", {"Content-Type": "text/plain"}),
    "repeated grant_type": (
        b"grant_type=client_credentials&grant_type=client_credentials",
        {"Content-Type": FORM},
    ),
    "repeated scope": (
        b"grant_type=client_credentials&scope=system/Patient.rs&scope=system/*.rs",
        {"Content-Type": FORM},
    ),
    "huge value": (
        b"grant_type=client_credentials&scope=" + b"a" * 200_000,
        {"Content-Type": FORM},
    ),
    "too many fields": (b"&".join(b"f%d=1" % i for i in range(500)), {"Content-Type": FORM}),
    "invalid utf-8 escape": (b"grant_type=%ff%fe", {"Content-Type": FORM}),
    "raw non-ascii": ("grant_type=é".encode(), {"Content-Type": FORM}),
    "NUL in values": (
        b"grant_type=client_credentials&client_assertion_type=%00&client_assertion=%00.%00.%00",
        {"Content-Type": FORM},
    ),
    "charset parameter": (b"grant_type=", {"Content-Type": FORM + "; charset=utf-8"}),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_token_request_is_an_oauth_error(http: httpx.Client, case: str) -> None:
    body, headers = MALFORMED[case]
    r = http.post("/auth/token", content=body, headers=headers)
    assert r.status_code in (400, 401), (r.status_code, r.text)
    oauth_error(r, (400, 401), r.json()["error"])
    assert r.json()["error"] in {"invalid_request", "invalid_client", "unsupported_grant_type"}


@pytest.mark.parametrize("path", ["/auth/token", "/auth/introspect", "/auth/revoke"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_in_oauth_shape(http: httpx.Client, path: str, method: str) -> None:
    r = http.request(method, path)
    oauth_error(r, 405, "invalid_request")
    assert r.headers["allow"] == "POST, OPTIONS"
