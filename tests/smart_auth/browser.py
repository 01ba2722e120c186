"""A browser for the authorization pages: real HTTP, real HTML forms, cookies, no redirects
followed beyond this server (the app's redirect URI is where a journey ends)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from smart_auth.directory import Party
from tests.support import TLS


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)  # hidden, text, checked boxes
    checkboxes: list[str] = field(default_factory=list)  # values of checkbox `scope` inputs
    radios: dict[str, list[str]] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)

    def value(self, name: str) -> str | None:
        return next((v for n, v in self.fields if n == name), None)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.labels: dict[str, str] = {}  # for= -> label text start

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "label" and "for" in a:
            self.labels[a["for"]] = ""
        elif tag == "input" and self.forms:
            form, kind, name = self.forms[-1], a.get("type", "text"), a.get("name", "")
            if kind == "checkbox":
                form.checkboxes.append(a.get("value", "on"))
                if "checked" in a:
                    form.fields.append((name, a.get("value", "on")))
            elif kind == "radio":
                form.radios.setdefault(name, []).append(a.get("value", ""))
                if "checked" in a:
                    form.fields.append((name, a.get("value", "")))
            elif name:
                form.fields.append((name, a.get("value", "")))
        elif tag == "button" and self.forms and a.get("name"):
            self.forms[-1].buttons.append((a["name"], a.get("value", "")))


def forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def pkce() -> tuple[str, str]:
    """(verifier, S256 challenge) as Inferno makes them (a 73-char uuid-uuid verifier)."""
    verifier = secrets.token_hex(16) + "-" + secrets.token_hex(16) + "-" + "x" * 8
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Browser:
    """One user agent: a cookie jar and the pages it was shown."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=30, verify=TLS)

    def close(self) -> None:
        self.http.close()

    def follow(self, response: httpx.Response) -> httpx.Response:
        """Follow redirects while they stay on this server."""
        for _ in range(10):
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = urljoin(str(response.url), response.headers["location"])
            if not location.startswith(self.base_url):
                return response  # to the app: the journey's end
            response = self.http.get(location)
        raise AssertionError("redirect loop")

    def open(self, url: str, **params: str) -> httpx.Response:
        # no `params` at all when there are none: httpx would replace the URL's own query
        return self.follow(self.http.get(url, params=params or None))

    def submit(
        self,
        page: httpx.Response,
        values: dict[str, str] | None = None,
        *,
        button: tuple[str, str] | None = None,
        scopes: list[str] | None = None,
        drop: tuple[str, ...] = (),
        headers: dict[str, str] | None = None,
        follow: bool = True,
    ) -> httpx.Response:
        """Submit the page's (first) form as a browser would, with `values` typed in,
        `scopes` the ticked boxes (default: as shown) and `button` pressed."""
        (form,) = forms(page.text)[:1]
        data = [(n, v) for n, v in form.fields if n not in (values or {}) and n not in drop]
        if scopes is not None:
            data = [(n, v) for n, v in data if n != "scope"] + [("scope", s) for s in scopes]
        data += list((values or {}).items())
        if button is not None:
            data.append(button)
        response = self.http.post(
            urljoin(str(page.url), form.action),
            content=httpx.QueryParams(data).__str__().encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
        )
        return self.follow(response) if follow else response


def redirect_params(response: httpx.Response) -> dict[str, str]:
    """The query parameters of a redirect to the app (each must appear once)."""
    assert response.status_code == 303, (response.status_code, response.text[:500])
    query = parse_qs(urlsplit(response.headers["location"]).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in query.values()), query
    return {k: v[0] for k, v in query.items()}


class DictDirectory:
    """A `PatientDirectory` over a dict: the test stand-in for the FHIR side's implementation."""

    def __init__(self, parties: list[Party], relations: dict[str, list[str]]) -> None:
        self.parties = {p.reference: p for p in parties}
        self.relations = relations

    async def describe(self, reference: str) -> Party | None:
        return self.parties.get(reference)

    async def patients_for(self, fhir_user: str) -> list[Party]:
        if fhir_user.startswith("Patient/"):
            return [self.parties[fhir_user]] if fhir_user in self.parties else []
        return [self.parties[r] for r in self.relations.get(fhir_user, [])]


FAMILY = DictDirectory(
    [
        Party("Patient", "alice", "Alice Example", "1980-02-01"),
        Party("Patient", "bob", "Bob Example", "1979-05-06"),
        Party("Patient", "charlie", "Charlie Example", "2015-03-04"),
        Party("Patient", "dana", "Dana Example", "2017-08-09"),
        Party("RelatedPerson", "guardian", "Gail Example"),
    ],
    {"RelatedPerson/guardian": ["Patient/charlie", "Patient/dana"]},
)
