"""`python -m seed_data app`: a small SMART on FHIR app, to try the server as a health app would.

It is a standalone launch by a public client (`phr-demo-app`, registered with the demo logins):
discovery at `[base]/.well-known/smart-configuration`, the authorization request with PKCE S256
and `state`, the code exchange, then the patient and their latest Observations read with the
token. Server-rendered, no JavaScript; its state lives in memory (one process, a demo).

SMART App Launch 2.2: https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "phr-demo-app"
SCOPE = "launch/patient openid fhirUser patient/*.rs"
STYLE = """
body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;
color:#1d2433}h1{font-size:1.5rem}a.button{display:inline-block;background:#1f5fbf;color:#fff;
padding:.6rem 1.1rem;border-radius:.4rem;text-decoration:none}
table{border-collapse:collapse;width:100%}.muted{color:#5b6577}
td,th{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #dde3ec}
code{background:#f1f4f9;padding:0 .25rem;border-radius:.2rem}
"""


@dataclass
class Pending:
    verifier: str
    endpoints: dict[str, Any]


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f'</title><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status)


def challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def name_of(patient: dict[str, Any]) -> str:
    for name in patient.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        parts = [*name.get("given", []), name.get("family", "")]
        if any(parts):
            return " ".join(p for p in parts if p)
    return str(patient.get("id", "?"))


def observation_row(resource: dict[str, Any]) -> str:
    code = resource.get("code") or {}
    label = code.get("text") or next(
        (c.get("display") for c in code.get("coding", []) if c.get("display")), "?"
    )
    value = resource.get("valueQuantity")
    shown = f"{value.get('value')} {value.get('unit', '')}" if value else ""
    when = resource.get("effectiveDateTime", "")[:10]
    return (
        f"<tr><td>{html.escape(when)}</td><td>{html.escape(str(label))}</td>"
        f"<td>{html.escape(shown)}</td></tr>"
    )


def _no_rows(status: int) -> str:
    if status == 403:
        return "Not allowed: you did not let this app read Observations (HTTP 403)."
    return f"No Observations (HTTP {status})."


def create_app(
    fhir_base: str, port: int, client_id: str = CLIENT_ID, scope: str = SCOPE
) -> Starlette:
    fhir_base = fhir_base.rstrip("/")
    redirect_uri = f"http://127.0.0.1:{port}/callback"
    pending: dict[str, Pending] = {}

    async def home(request: Request) -> Response:
        body = (
            f"<p>This app reads a patient record from <code>{html.escape(fhir_base)}</code> "
            "after you log in and approve it there.</p>"
            '<p><a class="button" href="/launch">Connect to my health record</a></p>'
            '<p class="muted">Demo logins are listed in seed_data/README.md.</p>'
        )
        return page("PHR demo app", body)

    async def launch(request: Request) -> Response:
        async with httpx.AsyncClient(timeout=10) as client:
            smart = (await client.get(fhir_base + "/.well-known/smart-configuration")).json()
        state, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(48)
        if len(pending) > 1000:
            pending.clear()
        pending[state] = Pending(verifier, smart)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": scope,
                "state": state,
                "aud": fhir_base,
                "code_challenge": challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        return RedirectResponse(f"{smart['authorization_endpoint']}?{query}", 303)

    async def callback(request: Request) -> Response:
        params = request.query_params
        flow = pending.pop(params.get("state", ""), None)
        if flow is None:
            return page("Unknown request", "<p>This answer matches no request.</p>", 400)
        if params.get("iss") and params["iss"] != flow.endpoints.get("issuer"):
            return page("Wrong issuer", "<p>The answer names another server (RFC 9207).</p>", 400)
        if "error" in params:
            text = html.escape(params.get("error_description") or params["error"])
            return page("Not connected", f"<p>{text}</p><p><a href='/'>Back</a></p>")
        form = {
            "grant_type": "authorization_code",
            "code": params.get("code", ""),
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code_verifier": flow.verifier,
        }
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(flow.endpoints["token_endpoint"], data=form)
            if answer.status_code != 200:
                return page("Token refused", f"<pre>{html.escape(answer.text)}</pre>", 502)
            token = answer.json()
            headers = {
                "Authorization": f"Bearer {token['access_token']}",
                "Accept": "application/fhir+json",
            }
            pid = token.get("patient", "")
            patient = await client.get(f"{fhir_base}/Patient/{pid}", headers=headers)
            observations = await client.get(
                f"{fhir_base}/Observation",
                params={"patient": pid, "_sort": "-date", "_count": "10"},
                headers=headers,
            )
        if patient.status_code != 200:
            return page("No access", "<p>The token does not reach the patient's record.</p>")
        rows = "".join(
            observation_row(e["resource"])
            for e in (observations.json().get("entry", []) if observations.is_success else [])
            if e.get("resource", {}).get("resourceType") == "Observation"
        )
        table = (
            f"<table><tr><th>Date</th><th>Observation</th><th>Value</th></tr>{rows}</table>"
            if rows
            else f"<p class='muted' id='no-observations'>{_no_rows(observations.status_code)}</p>"
        )
        record = patient.json()
        body = (
            f"<p><strong id='patient-name'>{html.escape(name_of(record))}</strong>"
            + (f", born {html.escape(record['birthDate'])}" if record.get("birthDate") else "")
            + "</p>"
            f"<p class='muted'>Granted: <code id='granted'>{html.escape(token.get('scope', ''))}"
            "</code></p>"
            f"<h2>Latest observations</h2>{table}<p><a href='/'>Start again</a></p>"
        )
        return page("Connected", body)

    return Starlette(
        routes=[Route("/", home), Route("/launch", launch), Route("/callback", callback)]
    )


def run(fhir_base: str, port: int) -> int:
    print(f"PHR demo app on http://127.0.0.1:{port} (FHIR server {fhir_base})")
    uvicorn.run(create_app(fhir_base, port), host="127.0.0.1", port=port, log_level="warning")
    return 0
