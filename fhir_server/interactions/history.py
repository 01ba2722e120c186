"""History at instance, type and system level: https://hl7.org/fhir/R4/http.html#history."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.access import access, insufficient_scope
from fhir_server.bundles import bundle, history_entry
from fhir_server.errors import bad_request
from fhir_server.http import fhir_response, negotiate
from fhir_server.interactions.common import live, path_id, path_type, readable
from fhir_server.services import Services, services
from fhir_server.storage.repository import parse_cursor

_INSTANT = re.compile(
    r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
# `<epoch ms>.<skip>`; skip is bounded since every stream reads `_count + skip` documents
_CURSOR = re.compile(r"^\d{1,15}\.\d{1,4}$", re.ASCII)


def parse_instant(value: str, name: str) -> datetime:
    """A FHIR date/dateTime/instant query value as an aware datetime (UTC when no zone is given)."""
    if not _INSTANT.match(value):
        raise bad_request(f"{name}={value} is not a valid instant")
    text = value.replace("Z", "+00:00")
    if len(text) == 4:
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"{name}={value} is not a valid instant") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _valid_cursor(cursor: str) -> bool:
    try:
        return bool(_CURSOR.match(cursor)) and parse_cursor(cursor) is not None
    except (ValueError, OverflowError, OSError):  # an instant past year 9999
        return False


def _count(request: Request, svc: Services) -> int:
    raw = request.query_params.get("_count")
    if raw is None:
        return svc.settings.history_count_default
    if not (raw.isascii() and raw.isdigit()):  # str.isdigit() alone admits "²", which int() refuses
        raise bad_request(f"_count={raw} is not a non-negative integer")
    most = svc.settings.history_count_max
    return min(int(raw), most) if len(raw) <= 10 else most


async def _history(
    request: Request, resource_type: str | None, resource_id: str | None
) -> Response:
    svc = services(request)
    media = negotiate(request)
    count = _count(request, svc)
    raw_since = request.query_params.get("_since")
    since = parse_instant(raw_since, "_since") if raw_since else None
    cursor = request.query_params.get("_page")
    if cursor is not None and not _valid_cursor(cursor):
        raise bad_request(f"_page={cursor} is not a cursor this server issued")
    page = await svc.repository.history(
        resource_type, resource_id, count=count, since=since, cursor=cursor
    )
    path = "/".join(p for p in (svc.base, resource_type, resource_id, "_history") if p)
    params = {k: v for k, v in (("_count", str(count)), ("_since", raw_since)) if v}
    links = [("self", f"{path}?{urlencode({**params, **({'_page': cursor} if cursor else {})})}")]
    if page.next_cursor:
        links.append(("next", f"{path}?{urlencode({**params, '_page': page.next_cursor})}"))
    acc = access(request)
    letter = "r" if resource_id else "s"
    # Each version is checked on its own content (a resource may have moved between patients);
    # a tombstone is shown only to callers who see every resource of its type.
    entries = [
        history_entry(svc.base, v)
        for v in page.versions
        if acc.sees_all(v.resource_type, letter)
        or (v.json is not None and acc.visible(letter, v.resource_type, v.json))
    ]
    return fhir_response(bundle("history", links, entries, page.total), 200, None, media)


async def history_instance(request: Request) -> Response:
    """GET [base]/[type]/[id]/_history."""
    resource_type, resource_id = path_type(request), path_id(request)
    current = await services(request).repository.read(resource_type, resource_id)
    what = f"{resource_type}/{resource_id}"
    if current is None:
        live(current, what)
    elif not (current.deleted and access(request).sees_all(resource_type, "r")):
        readable(request, current, what)
    return await _history(request, resource_type, resource_id)


async def history_type(request: Request) -> Response:
    """GET [base]/[type]/_history."""
    resource_type = path_type(request)
    access(request).reach(resource_type, "s")  # 403 when no scope reaches the type at all
    return await _history(request, resource_type, None)


async def history_system(request: Request) -> Response:
    """GET [base]/_history: every patient's changes, so only for system scopes (backends)."""
    if not any(s.context == "system" for s in access(request).ctx.scopes.resources):
        raise insufficient_scope("System-level history needs a system scope")
    return await _history(request, None, None)
