"""What every end-to-end journey needs: a patient in the FHIR store, a login account for it, a
registered SMART app, and the patient's walk through the login and approval pages."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx

from smart_auth.services import AuthServices
from tests.smart_auth.browser import Browser, forms, pkce
from tests.support import TLS, free_port

# A patient-facing app as a standalone launch asks for it (SMART App Launch 2.2, Inferno's set).
APP_SCOPES = (
    "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Observation.rs"
)


@dataclass(frozen=True)
class Person:
    """A Patient in the FHIR store and the login account that is that patient."""

    patient_id: str
    given: str
    family: str
    username: str
    password: str

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"


def create_patient(fhir: httpx.Client, given: str, family: str) -> str:
    """POST a Patient with a backend (system) token; returns its id."""
    body = {"resourceType": "Patient", "name": [{"given": [given], "family": family}]}
    r = fhir.post("/Patient", json=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def create_observation(fhir: httpx.Client, patient_id: str, code: str, value: float) -> str:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": value, "unit": "kg"},
    }
    r = fhir.post("/Observation", json=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def create_person(
    fhir: httpx.Client,
    auth: AuthServices,
    given: str,
    family: str | None = None,
    username: str | None = None,
) -> Person:
    """A new Patient (a unique family name unless given) and an account whose fhirUser is that
    Patient."""
    family = family or f"Flow{uuid.uuid4().hex[:8]}"
    patient_id = create_patient(fhir, given, family)
    username = username or f"{given.lower()}-{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)
    auth.accounts.add(username, password, f"Patient/{patient_id}")
    return Person(patient_id, given, family, username, password)


def register_public_app(
    auth: AuthServices, redirect_uri: str, scope: str = APP_SCOPES, name: str | None = None
) -> str:
    """A public client (PKCE, no secret), as `python -m smart_auth clients add --auth-method none`
    registers it; returns its client_id."""
    client, secret = auth.clients.register(
        name=name or f"Flow app {uuid.uuid4().hex[:6]}",
        token_endpoint_auth_method="none",
        scope=scope,
        redirect_uris=(redirect_uri,),
    )
    assert secret is None
    return client.client_id


def sign_in_and_approve(
    public_base: str, authorize_url: str, person: Person, *, untick: tuple[str, ...] = ()
) -> str:
    """Open the app's authorization URL in a fresh user agent, sign in as `person`, approve
    (leaving the `untick` scopes unticked); returns the URL the browser is sent back to."""
    browser = Browser(public_base)
    try:
        page = browser.open(authorize_url)
        assert page.status_code == 200, page.text[:500]
        assert [f.action for f in forms(page.text)] == ["/auth/login"], page.text[:500]
        page = browser.submit(page, {"username": person.username, "password": person.password})
        assert page.status_code == 200, page.text[:500]
        (approval,) = forms(page.text)
        assert approval.action == "/auth/consent", page.text[:500]
        ticked = [s for s in approval.checkboxes if s not in untick]
        answer = browser.submit(page, scopes=ticked, button=("decision", "approve"))
        assert answer.status_code == 303, (answer.status_code, answer.text[:500])
        return urljoin(str(answer.url), answer.headers["location"])
    finally:
        browser.close()


def authorization_url(
    public_base: str, client_id: str, redirect_uri: str, scope: str, challenge: str, state: str
) -> str:
    """What a SMART app sends the browser to: authorization code with PKCE S256."""
    query = httpx.QueryParams(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "aud": public_base + "/fhir",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{public_base}/auth/authorize?{query}"


def exchange_code(
    public_base: str, client_id: str, redirect_uri: str, code: str, verifier: str
) -> dict[str, Any]:
    """A public client's token request (RFC 6749 4.1.3 with the RFC 7636 `code_verifier`)."""
    r = httpx.post(
        public_base + "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": client_id,
        },
        timeout=30,
        verify=TLS,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def standalone_launch(
    public_base: str, auth: AuthServices, person: Person, scope: str = APP_SCOPES
) -> dict[str, Any]:
    """A public app's whole standalone launch for `person`: authorize, sign in, approve, and
    exchange the code; returns the token response."""
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    client_id = register_public_app(auth, redirect_uri, scope)
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(16)
    url = authorization_url(public_base, client_id, redirect_uri, scope, challenge, state)
    back = sign_in_and_approve(public_base, url, person)
    answer = dict(parse_qsl(urlsplit(back).query))
    assert answer.get("state") == state and "code" in answer, back
    return exchange_code(public_base, client_id, redirect_uri, answer["code"], verifier)
