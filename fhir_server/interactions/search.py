"""Type-level search: GET [base]/[type]?... and POST [base]/[type]/_search.

https://hl7.org/fhir/R4/search.html
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from consent.compartment import about_params
from fhir_server.access import access
from fhir_server.bundles import bundle, entry
from fhir_server.errors import Issue, bad_request, operation_outcome
from fhir_server.http import fhir_response, negotiate, parse_prefer
from fhir_server.interactions.common import path_type
from fhir_server.jsonbody import dumps, loads
from fhir_server.search.definitions import compartment_params
from fhir_server.search.engine import SUMMARY_VALUES, TOTAL_VALUES, Executor, Search, confine, parse
from fhir_server.services import Services, services
from fhir_server.validation import mandatory_elements, summary_elements

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}


def _single(search: Search, name: str, allowed: frozenset[str] | None = None) -> str | None:
    values = search.result.get(name)
    if not values:
        return None
    value = values[-1]
    if allowed is not None and value not in allowed:
        raise bad_request(f"{name}={value} is not one of {', '.join(sorted(allowed))}")
    return value


def _count(search: Search, svc: Services) -> int:
    raw = _single(search, "_count")
    if raw is None:
        return svc.settings.search_count_default
    if not raw.isdigit():
        raise bad_request(f"_count={raw} is not a non-negative integer")
    return min(int(raw), svc.settings.search_count_max)


def _subset(body: bytes, resource_type: str, summary: str | None, elements: list[str]) -> bytes:
    """`_summary` and `_elements` views: https://hl7.org/fhir/R4/search.html#summary."""
    resource: dict[str, Any] = loads(body)
    keep: frozenset[str] | set[str]
    if summary == "true":
        keep = summary_elements(resource_type)
        resource = {k: v for k, v in resource.items() if k in keep}
    elif summary == "text":
        keep = {"resourceType", "id", "meta", "text"} | mandatory_elements(resource_type)
        resource = {k: v for k, v in resource.items() if k in keep}
    elif summary == "data":
        resource.pop("text", None)
    if elements:
        keep = {"resourceType", "id", "meta", *elements} | mandatory_elements(resource_type)
        resource = {k: v for k, v in resource.items() if k in keep or k.lstrip("_") in keep}
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    resource["meta"] = meta
    return dumps(resource)


async def search_type(request: Request) -> Response:
    """GET [base]/[type]?params or POST [base]/[type]/_search (form body)."""
    svc = services(request)
    media, prefer = negotiate(request), parse_prefer(request)
    resource_type = path_type(request)
    params = list(request.query_params.multi_items())
    if request.method == "POST":
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            raise bad_request("POST _search takes an application/x-www-form-urlencoded body")
        form = await request.form()
        params += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    search = parse(resource_type, params, svc.base, prefer.handling == "strict")
    confine(search, about_params(resource_type, compartment_params().get(resource_type, [])))
    acc = access(request)
    acc.restrict(search)
    summary = _single(search, "_summary", SUMMARY_VALUES)
    total_mode = _single(search, "_total", TOTAL_VALUES) or "accurate"
    elements = [
        e.strip() for v in search.result.get("_elements", []) for e in v.split(",") if e.strip()
    ]
    count = 0 if summary == "count" else _count(search, svc)
    executor = Executor(svc.repository.db, svc.base, svc.settings.search_max_candidates)
    page, candidates = await executor.page(search, count)

    bodies = await executor.bodies(resource_type, candidates)
    entries = []
    subset = summary in {"true", "text", "data"} or bool(elements)
    for cid, body in zip(page.ids, bodies, strict=False):
        if not acc.visible("s", resource_type, body):
            continue  # narrowed already; this re-check is the policy's last word (default deny)
        shown = _subset(body, resource_type, summary, elements) if subset else body
        entries.append(
            entry(f"{svc.base}/{resource_type}/{cid}", shown, {"search": {"mode": "match"}})
        )
    if count and (search.result.get("_include") or search.result.get("_revinclude")):
        live = [c for c in candidates if c.id in set(page.ids)]
        for rtype, rid, body in await executor.includes(search, live):
            if not acc.visible("r", rtype, body):
                continue
            entries.append(
                entry(f"{svc.base}/{rtype}/{rid}", body, {"search": {"mode": "include"}})
            )
    if search.ignored:
        outcome = operation_outcome(search.ignored)
        entries.append(entry("urn:uuid:outcome", outcome, {"search": {"mode": "outcome"}}))

    query = [(k, v) for k, v in params if k != "_page"]
    self_url = f"{svc.base}/{resource_type}" + (f"?{urlencode(params)}" if params else "")
    links = [("self", self_url)]
    for relation, cursor in (("next", page.next_cursor), ("previous", page.previous_cursor)):
        if cursor:
            links.append(
                (relation, f"{svc.base}/{resource_type}?{urlencode([*query, ('_page', cursor)])}")
            )
    total = None if total_mode == "none" else page.matches
    return fhir_response(bundle("searchset", links, entries, total), 200, None, media)


__all__ = ["Issue", "search_type"]
