"""The server-rendered pages of the authorization flow: login, approval, errors, sign-out.

Plain HTML with one small stylesheet and no script. Every page is sent with headers that keep it
out of frames, caches and referrers (catalogue SL-06, SL-07), and a strict CSP whose `form-action`
names only this server and, on the approval page, the origin of the app's verified redirect URI
(browsers apply `form-action` to the redirect that follows a form submission).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from urllib.parse import urlsplit

from starlette.responses import HTMLResponse, RedirectResponse, Response

from consent.scopes import parse_scope
from smart_auth.directory import Party

STYLESHEET_PATH = "/auth/static/auth.css"

STYLESHEET = """\
:root { color-scheme: light dark; --accent: #1f5fa8; --muted: #5b6570; --line: #7b8794; }
@media (prefers-color-scheme: dark) { :root { --accent: #3272c2; --muted: #a9b3bf; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { max-width: 32rem; margin: 3rem auto; padding: 0 1.25rem; }
h1 { font-size: 1.5rem; margin: 0 0 1rem; }
p.muted, .muted { color: var(--muted); }
form { display: grid; gap: 1rem; }
form > p, form > ul { margin: 0; }
form > p + ul { margin-top: -.5rem; }
label { display: block; font-weight: 600; }
input[type=text], input[type=password] {
  width: 100%; padding: .6rem .7rem; font: inherit; border: 1px solid var(--line);
  border-radius: .4rem; margin-top: .25rem;
}
fieldset { border: 1px solid var(--line); border-radius: .5rem; padding: .75rem 1rem; margin: 0; }
legend { font-weight: 600; padding: 0 .25rem; }
fieldset label {
  font-weight: 400; display: flex; gap: .6rem; align-items: flex-start; margin: .4rem 0;
}
fieldset label input { margin-top: .35rem; }
.buttons { display: flex; gap: .75rem; }
button {
  font: inherit; padding: .6rem 1.2rem; border-radius: .4rem; border: 1px solid var(--accent);
  cursor: pointer; background: transparent; color: inherit;
}
button.primary { background: var(--accent); color: #fff; }
button:focus-visible, input:focus-visible { outline: 3px solid #f0b400; outline-offset: 2px; }
.error {
  border-left: 4px solid #b3261e; padding: .5rem .75rem; background: rgba(179, 38, 30, .08);
}
code { font-size: .9em; }
"""

SCOPE_TEXT = {
    "openid": "Confirm who you are (your account identifier)",
    "fhirUser": "See which health record belongs to you",
    "profile": "See which health record belongs to you",
    "launch": "Open with the health record you started it from",
    "launch/patient": "Know which patient's record you chose",
    "offline_access": "Keep access after you close the app, until you revoke it",
    "online_access": "Keep access while you stay signed in here",
}
# Identity and context scopes come with the request itself; the user ticks the rest.
FIXED_SCOPES = frozenset({"openid", "fhirUser", "profile", "launch", "launch/patient"})
_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


def describe_scope(scope: str) -> str:
    """A scope in plain words ("Read and search observations of the chosen patient")."""
    if scope in SCOPE_TEXT:
        return SCOPE_TEXT[scope]
    parsed = parse_scope(scope)
    if parsed is None:
        return scope
    verbs = [_VERBS[letter] for letter in "cruds" if letter in parsed.permissions]
    action = (", ".join(verbs[:-1]) + " and " + verbs[-1]) if len(verbs) > 1 else verbs[0]
    what = "all health data" if parsed.resource_type == "*" else f"{parsed.resource_type} records"
    whose = {
        "patient": "of the chosen patient",
        "user": "that you can see",
        "system": "of every patient",
    }[parsed.context]
    text = f"{action.capitalize()} {what} {whose}"
    if parsed.query:
        text += " (only " + ", ".join(f"{k}={v}" for k, v in parsed.query) + ")"
    return text


def origin_of(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def security_headers(form_target: str | None = None) -> dict[str, str]:
    form_action = "'self'" + (f" {origin_of(form_target)}" if form_target else "")
    csp = (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        # Not `no-referrer`: with it, browsers send `Origin: null` on the pages' own form posts
        # (Fetch, "serializing a request origin"), which the same-origin check must refuse.
        # `same-origin` still sends nothing to the app or any other site.
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
    }


def redirect(location: str, *, cookie: str | None = None) -> Response:
    """303 See Other: the browser follows with GET, never re-posting credentials (SL-09)."""
    response = RedirectResponse(location, status_code=303, headers=security_headers())
    if cookie is not None:
        response.headers.append("Set-Cookie", cookie)
    return response


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f'<link rel="stylesheet" href="{STYLESHEET_PATH}"></head>'
        f"<body><main>{body}</main></body></html>"
    )


def page(
    title: str,
    body: str,
    *,
    status: int = 200,
    cookie: str | None = None,
    form_target: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> HTMLResponse:
    headers = {**security_headers(form_target), **(extra_headers or {})}
    response = HTMLResponse(_document(title, body), status, headers)
    if cookie is not None:
        response.headers.append("Set-Cookie", cookie)
    return response


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{name}" value="{escape(value)}">'


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>' if message else ""


def error_page(message: str, status: int = 400, **kwargs: object) -> HTMLResponse:
    body = f"<h1>Something went wrong</h1>{_error(message)}"
    body += '<p class="muted">Return to the application and try again.</p>'
    return page("Error", body, status=status, **kwargs)  # type: ignore[arg-type]


def login_page(
    *,
    csrf: str,
    request_id: str | None,
    app_name: str | None,
    error: str | None = None,
    username: str = "",
    status: int = 200,
    cookie: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> HTMLResponse:
    intro = (
        f"<p>Sign in to continue to <strong>{escape(app_name)}</strong>.</p>" if app_name else ""
    )
    fields = _hidden("csrf", csrf) + (_hidden("request", request_id) if request_id else "")
    body = f"""<h1>Sign in</h1>{intro}{_error(error)}
<form method="post" action="/auth/login">{fields}
<div><label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" required
 value="{escape(username)}" autocapitalize="none" spellcheck="false"></div>
<div><label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required></div>
<div><label for="totp">One-time code <span class="muted">(if you set one up)</span></label>
<input type="text" id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code"
 pattern="[0-9]{{6,8}}"></div>
<div class="buttons"><button class="primary" type="submit">Sign in</button></div>
</form>"""
    return page("Sign in", body, status=status, cookie=cookie, extra_headers=extra_headers)


@dataclass(frozen=True)
class Approval:
    """What the approval page shows."""

    csrf: str
    request_id: str
    app_name: str
    redirect_uri: str
    user_label: str
    scopes: list[str]
    patients: list[Party]  # candidates; one is shown, several are a picker, none: no context
    error: str | None = None


def consent_page(a: Approval, *, status: int = 200) -> HTMLResponse:
    if len(a.patients) == 1:
        who = (
            f"<p>Patient: <strong>{escape(a.patients[0].label)}</strong>"
            + (
                f' <span class="muted">(born {escape(a.patients[0].birth_date)})</span>'
                if a.patients[0].birth_date
                else ""
            )
            + "</p>"
            + _hidden("patient", a.patients[0].id)
        )
    elif a.patients:
        options = "".join(
            f'<label><input type="radio" name="patient" value="{escape(p.id)}" required'
            f"{' checked' if i == 0 else ''}> {escape(p.label)}"
            + (f' <span class="muted">(born {escape(p.birth_date)})</span>' if p.birth_date else "")
            + "</label>"
            for i, p in enumerate(a.patients)
        )
        who = f"<fieldset><legend>Whose record should the app see?</legend>{options}</fieldset>"
    else:
        who = ""
    fixed = [s for s in a.scopes if s in FIXED_SCOPES]
    tickable = [s for s in a.scopes if s not in FIXED_SCOPES]
    items = "".join(
        f'<label><input type="checkbox" name="scope" value="{escape(s)}" checked> '
        f'<span>{escape(describe_scope(s))} <code class="muted">{escape(s)}</code></span></label>'
        for s in tickable
    )
    fixed_text = dict.fromkeys(describe_scope(s) for s in fixed)  # fhirUser, profile: one line
    fixed_items = "".join(f"<li>{escape(text)}</li>" for text in fixed_text)
    body = f"""<h1>Allow {escape(a.app_name)}?</h1>
<p>Signed in as <strong>{escape(a.user_label)}</strong>.</p>{_error(a.error)}
<form method="post" action="/auth/consent">
{_hidden("csrf", a.csrf)}{_hidden("request", a.request_id)}{who}
{f"<fieldset><legend>The app asks to</legend>{items}</fieldset>" if items else ""}
{f'<p class="muted">It will also:</p><ul class="muted">{fixed_items}</ul>' if fixed_items else ""}
<div class="buttons">
<button class="primary" type="submit" name="decision" value="approve">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button></div>
</form>"""
    return page("Allow access", body, status=status, form_target=a.redirect_uri)


def signed_in_page(username: str, csrf: str) -> HTMLResponse:
    body = f"""<h1>Signed in</h1><p>You are signed in as <strong>{escape(username)}</strong>.</p>
<form method="post" action="/auth/logout">{_hidden("csrf", csrf)}
<div class="buttons"><button type="submit">Sign out</button></div></form>"""
    return page("Signed in", body)


def signed_out_page(cookie: str | None = None) -> HTMLResponse:
    body = '<h1>Signed out</h1><p>You have signed out.</p><p><a href="/auth/login">Sign in</a></p>'
    return page("Signed out", body, cookie=cookie)
