"""The browser side of the authorization server: authorize, login, approval, logout, EHR launch.

    /auth/authorize  GET or POST (SMART `authorize-post`): validate (`authorize.py`), store the
                     request, 303 to the approval page (or an error page / error redirect)
    /auth/login      GET the form; POST username, password, optional TOTP -> new session, 303 on
    /auth/consent    GET the approval page (login first if needed); POST Allow / Deny -> 303 to
                     the app with `code` (or `error=access_denied`), `state` and `iss`
    /auth/logout     GET a sign-out form; POST ends the session
    /auth/launch     POST (signed in): mint an EHR launch for an app, 303 to its launch URL

Every POST carries the session's CSRF token and, when the browser sends `Origin`, must come from
this server's origin; otherwise 403 and nothing changes (catalogue SL-04). All redirects are 303
(SL-09). Database work runs through `run_sync`; FHIR questions go to the `PatientDirectory`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

from authlib.common.security import is_secure_transport
from authlib.oauth2.rfc6749 import InvalidRequestError
from fastapi import APIRouter
from pymongo.errors import PyMongoError
from starlette.requests import Request
from starlette.responses import Response

from smart_auth.accounts import TooManyAttempts
from smart_auth.authorize import (
    AuthorizationRequest,
    ErrorPage,
    RedirectError,
    redirect_with,
    validate_authorization_request,
    verify_client,
)
from smart_auth.codes import AuthorizationCode, ChallengeReused
from smart_auth.directory import Party
from smart_auth.forms import MAX_FORM_BYTES, every, first, read_form
from smart_auth.launches import launch_url
from smart_auth.pages import (
    FIXED_SCOPES,
    STYLESHEET,
    STYLESHEET_PATH,
    Approval,
    consent_page,
    error_page,
    login_page,
    redirect,
    signed_in_page,
    signed_out_page,
)
from smart_auth.services import AuthServices
from smart_auth.sessions import Session
from smart_auth.store import is_unavailable, run_sync

log = logging.getLogger("phr.auth")

AUTHORIZE_PATH, LOGIN_PATH, CONSENT_PATH, LOGOUT_PATH, LAUNCH_PATH = (
    "/auth/authorize",
    "/auth/login",
    "/auth/consent",
    "/auth/logout",
    "/auth/launch",
)
_MAX_PAGE_FIELDS = 256  # an approval form has one checkbox per requested scope
_EXPIRED = "This sign-in request has expired or was already answered."
_FORGED = "This form has expired or was not sent from this site. Go back and try again."
_BAD_LOGIN = "The username, password or one-time code is not right."
Handler = Callable[[Request], Awaitable[Response]]


def interaction_router(services: AuthServices) -> APIRouter:
    """The pages of the authorization flow (mounted by `auth_router`)."""
    settings = services.settings
    sessions = services.sessions
    router = APIRouter()
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(settings.public_base))

    # -- helpers ---------------------------------------------------------------------------------

    async def current_session(request: Request) -> Session | None:
        return await run_sync(sessions.get, request.cookies.get(sessions.cookie_name))

    def same_origin(request: Request) -> bool:
        sent = request.headers.get("origin")
        return sent is None or sent == origin

    async def checked_form(request: Request) -> tuple[tuple[tuple[str, str], ...], Session]:
        """The form and the session it belongs to; ErrorPage(403) for a forged form."""
        try:
            form = await read_form(request, MAX_FORM_BYTES, _MAX_PAGE_FIELDS)
        except InvalidRequestError:
            raise ErrorPage("The form could not be read.") from None
        session = await current_session(request)
        if (
            not same_origin(request)
            or session is None
            or not session.check_csrf(first(form, "csrf"))
        ):
            raise ErrorPage(_FORGED, 403)
        return form, session

    def needs_login(pending: AuthorizationRequest | None, session: Session | None) -> bool:
        """No signed-in session, or `prompt=login` and no login was made for this request."""
        if session is None or not session.authenticated:
            return True
        return (
            pending is not None
            and pending.prompt == "login"
            and pending.login_session != session.key
        )

    def to_app(pending: AuthorizationRequest, **params: str | None) -> Response:
        """303 to the app's verified redirect URI with `state` and `iss` (RFC 9207)."""
        params |= {"state": pending.state, "iss": settings.issuer_url}
        return redirect(redirect_with(pending.redirect_uri, params))

    async def candidates(pending: AuthorizationRequest, session: Session) -> list[Party]:
        """The patients the user may pick for this request; RedirectError when none fits."""
        if not pending.needs_patient or session.fhir_user is None:
            return []
        allowed = await services.directory.patients_for(session.fhir_user)
        allowed = [p for p in allowed if p.resource_type == "Patient"]
        if pending.launch_patient is not None:
            allowed = [p for p in allowed if p.id == pending.launch_patient]
            if not allowed:
                raise RedirectError("access_denied", "The user may not open this patient.")
        if not allowed:
            raise RedirectError("access_denied", "No patient record is available to this user.")
        return allowed

    def guarded(handle: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handle(request)
            except ErrorPage as page:
                return error_page(page.message, page.status)
            except PyMongoError as exc:
                if not is_unavailable(exc):
                    raise
                log.warning("auth database unavailable: %s", type(exc).__name__)
                message = "The service is briefly unavailable. Try again in a moment."
                return error_page(message, 503, extra_headers={"Retry-After": "5"})

        return endpoint

    def route(
        path: str, methods: list[str]
    ) -> Callable[[Callable[[Request], Awaitable[Response]]], None]:
        def register(handle: Callable[[Request], Awaitable[Response]]) -> None:
            router.add_api_route(path, guarded(handle), methods=methods, include_in_schema=False)

        return register

    # -- authorize -------------------------------------------------------------------------------

    @route(AUTHORIZE_PATH, ["GET", "POST"])
    async def authorize(request: Request) -> Response:
        if not is_secure_transport(settings.public_base + AUTHORIZE_PATH):
            raise ErrorPage("This server must be reached over https.")
        if request.method == "POST":
            try:
                pairs = await read_form(request, MAX_FORM_BYTES)
            except InvalidRequestError:
                raise ErrorPage("The authorization request could not be read.") from None
        else:
            pairs = tuple(request.query_params.multi_items())
        params, verified = await run_sync(verify_client, pairs, services.clients)

        def fail(error: RedirectError) -> Response:
            return redirect(
                redirect_with(
                    verified.redirect_uri,
                    {
                        "error": error.error,
                        "error_description": error.description,
                        "state": verified.state,
                        "iss": settings.issuer_url,
                    },
                )
            )

        try:
            pending = await run_sync(
                validate_authorization_request,
                params,
                verified,
                fhir_base=services.fhir_base,
                launches=services.launches,
                now=services.store.clock(),
            )
            if pending.prompt == "none":  # no UI allowed, and approval always needs the UI
                session = await current_session(request)
                signed_in = session is not None and session.authenticated
                raise RedirectError(
                    "consent_required" if signed_in else "login_required",
                    "The user must approve this request.",
                )
        except RedirectError as error:
            return fail(error)
        await run_sync(services.pending.save, pending)
        return redirect(f"{CONSENT_PATH}?request={quote(pending.id)}")

    # -- login -----------------------------------------------------------------------------------

    @route(LOGIN_PATH, ["GET"])
    async def login_form(request: Request) -> Response:
        rid = request.query_params.get("request")
        pending = await run_sync(services.pending.get, rid) if rid else None
        if rid and pending is None:
            raise ErrorPage(_EXPIRED)
        session = await current_session(request)
        if (
            session is not None
            and session.username is not None
            and not needs_login(pending, session)
        ):
            if pending is not None:
                return redirect(f"{CONSENT_PATH}?request={quote(pending.id)}")
            return signed_in_page(session.username, session.csrf)
        cookie = None
        if session is None:  # the anonymous session that carries the login form's CSRF token
            value, anonymous = await run_sync(sessions.create)
            cookie, csrf = sessions.cookie(value), anonymous.csrf
        else:
            csrf = session.csrf
        return login_page(
            csrf=csrf,
            request_id=pending.id if pending else None,
            app_name=pending.client_name if pending else None,
            cookie=cookie,
        )

    @route(LOGIN_PATH, ["POST"])
    async def login(request: Request) -> Response:
        form, session = await checked_form(request)
        rid = first(form, "request")
        pending = await run_sync(services.pending.get, rid) if rid else None
        if rid and pending is None:
            raise ErrorPage(_EXPIRED)
        username = first(form, "username") or ""

        def again(error: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
            return login_page(
                csrf=session.csrf,
                request_id=pending.id if pending else None,
                app_name=pending.client_name if pending else None,
                error=error,
                username=username[:64],
                status=status,
                extra_headers=headers,
            )

        ip = request.client.host if request.client else "unknown"
        try:
            account = await run_sync(
                services.accounts.authenticate,
                username,
                first(form, "password"),
                first(form, "totp"),
                ip,
            )
        except TooManyAttempts as throttled:
            minutes = max(1, throttled.retry_after // 60)
            message = f"Too many failed sign-ins. Try again in {minutes} minutes."
            return again(message, 429, {"Retry-After": str(throttled.retry_after)})
        if account is None:
            return again(_BAD_LOGIN)
        value, signed_in = await run_sync(sessions.login, session, account)
        if pending is not None:
            await run_sync(services.pending.logged_in, pending.id, signed_in.key)
        target = f"{CONSENT_PATH}?request={quote(pending.id)}" if pending else LOGIN_PATH
        return redirect(target, cookie=sessions.cookie(value))

    # -- approval --------------------------------------------------------------------------------

    @route(CONSENT_PATH, ["GET"])
    async def consent_form(request: Request) -> Response:
        pending = await run_sync(services.pending.get, request.query_params.get("request"))
        if pending is None:
            raise ErrorPage(_EXPIRED)
        session = await current_session(request)
        if session is None or needs_login(pending, session):
            return redirect(f"{LOGIN_PATH}?request={quote(pending.id)}")
        try:
            patients = await candidates(pending, session)
        except RedirectError as error:
            if await run_sync(services.pending.take, pending.id) is None:
                raise ErrorPage(_EXPIRED) from None
            return to_app(pending, error=error.error, error_description=error.description)
        return consent_page(await approval(pending, session, patients))

    async def approval(
        pending: AuthorizationRequest,
        session: Session,
        patients: list[Party],
        error: str | None = None,
    ) -> Approval:
        user = await services.directory.describe(session.fhir_user or "")
        label = f"{session.username} ({user.label})" if user else str(session.username)
        return Approval(
            csrf=session.csrf,
            request_id=pending.id,
            app_name=pending.client_name,
            redirect_uri=pending.redirect_uri,
            user_label=label,
            scopes=pending.scopes,
            patients=patients,
            error=error,
        )

    @route(CONSENT_PATH, ["POST"])
    async def consent(request: Request) -> Response:
        form, session = await checked_form(request)
        pending = await run_sync(services.pending.get, first(form, "request"))
        if pending is None:
            raise ErrorPage(_EXPIRED)
        if not session.authenticated or session.sub is None or session.fhir_user is None:
            return redirect(f"{LOGIN_PATH}?request={quote(pending.id)}")
        decision = first(form, "decision")
        if decision not in ("approve", "deny"):
            raise ErrorPage("Choose Allow or Deny.")
        patient: str | None = None
        if decision == "approve":
            try:
                patients = await candidates(pending, session)
            except RedirectError as error:
                if await run_sync(services.pending.take, pending.id) is None:
                    raise ErrorPage(_EXPIRED) from None
                return to_app(pending, error=error.error, error_description=error.description)
            if patients:
                chosen = first(form, "patient")
                match = next((p for p in patients if p.id == chosen), None)
                if match is None:  # a tampered or stale choice: ask again, change nothing
                    page = await approval(pending, session, patients, "Choose a patient.")
                    return consent_page(page, status=400)
                patient = match.id
        # One answer per request: a second submission (or a concurrent one) finds nothing.
        if await run_sync(services.pending.take, pending.id) is None:
            raise ErrorPage(_EXPIRED)
        if decision == "deny":
            return to_app(pending, error="access_denied", error_description="The user denied.")
        ticked = set(every(form, "scope"))
        # Server-side state only: the form can untick requested scopes, never add one (SL-05).
        granted = [s for s in pending.scopes if s in FIXED_SCOPES or s in ticked]
        online = "online_access" in granted and "offline_access" not in granted
        code = AuthorizationCode(
            client_id=pending.client_id,
            redirect_uri=pending.redirect_uri,
            code_challenge=pending.code_challenge,
            scope=" ".join(granted),
            sub=session.sub,
            fhir_user=session.fhir_user,
            patient=patient,
            nonce=pending.nonce,
            auth_time=session.auth_time or int(services.store.clock()),
            grant=secrets.token_urlsafe(16),
            session=session.key if online else None,
            need_patient_banner=not pending.ehr_launch,
        )
        try:
            value = await run_sync(services.codes.issue, code)
        except ChallengeReused:
            log.warning("PKCE code_challenge reused by client %s", pending.client_id)
            description = "code_challenge was already used; make a new one per request."
            return to_app(pending, error="invalid_request", error_description=description)
        return to_app(pending, code=value)

    # -- logout ----------------------------------------------------------------------------------

    @route(LOGOUT_PATH, ["GET"])
    async def logout_form(request: Request) -> Response:
        session = await current_session(request)
        if session is None or not session.authenticated or session.username is None:
            return signed_out_page()
        return signed_in_page(session.username, session.csrf)

    @route(LOGOUT_PATH, ["POST"])
    async def logout(request: Request) -> Response:
        _, session = await checked_form(request)
        await run_sync(sessions.end, session)
        return signed_out_page(cookie=sessions.clearing_cookie())

    # -- EHR launch from the portal --------------------------------------------------------------

    @route(LAUNCH_PATH, ["POST"])
    async def launch(request: Request) -> Response:
        form, session = await checked_form(request)
        if not session.authenticated or session.fhir_user is None:
            raise ErrorPage("Sign in first.", 403)
        client = await run_sync(services.clients.get, first(form, "client_id"))
        if client is None or client.launch_uri is None:
            raise ErrorPage("That application cannot be launched from here.")
        patient = first(form, "patient")
        allowed = await services.directory.patients_for(session.fhir_user)
        if not any(p.resource_type == "Patient" and p.id == patient for p in allowed):
            raise ErrorPage("You may not open this patient's record.", 403)
        assert patient is not None
        value = await run_sync(services.launches.mint, patient, client.client_id)
        return redirect(launch_url(client.launch_uri, services.fhir_base, value))

    # -- stylesheet ------------------------------------------------------------------------------

    async def stylesheet(request: Request) -> Response:
        headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
        return Response(STYLESHEET, 200, headers, media_type="text/css")

    router.add_api_route(STYLESHEET_PATH, stylesheet, methods=["GET"], include_in_schema=False)
    return router
