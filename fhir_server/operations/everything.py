"""Patient/[id]/$everything: https://hl7.org/fhir/R4/patient-operation-everything.html.

The patient compartment is read type by type through its reference keys (`k.v` index,
`compartment.compartment_query`), in (type, id) order, and the stored bytes are spliced into the
Bundle. `_page` resumes after the last (type, id).
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.access import access
from fhir_server.bundles import bundle, entry
from fhir_server.compartment import compartment_query
from fhir_server.errors import FhirError, bad_request
from fhir_server.http import fhir_response, negotiate
from fhir_server.interactions.common import path_id, readable
from fhir_server.interactions.history import parse_instant
from fhir_server.search.definitions import resource_types
from fhir_server.services import services
from fhir_server.validation import check_type


def _on_patient(request: Request) -> None:
    if request.path_params["type"] != "Patient":
        check_type(request.path_params["type"])
        raise bad_request("$everything is defined on Patient only", "not-supported")


async def everything_type(request: Request) -> Response:
    """GET [base]/Patient/$everything: the record of the patient in the token's context."""
    _on_patient(request)
    acc = access(request)
    pid = acc.ctx.patient
    if pid is None and (acc.ctx.fhir_user or "").startswith("Patient/"):
        pid = (acc.ctx.fhir_user or "").removeprefix("Patient/")
    if pid is None:
        raise FhirError(
            "Patient/$everything needs a patient in the token's context;"
            " use Patient/[id]/$everything",
            400,
            "required",
        )
    return await _everything(request, pid)


async def everything(request: Request) -> Response:
    """GET [base]/Patient/[id]/$everything?_since&_type&_count&_page."""
    _on_patient(request)
    return await _everything(request, path_id(request))


async def _everything(request: Request, pid: str) -> Response:
    svc = services(request)
    media = negotiate(request)
    acc = access(request)
    readable(request, await svc.repository.read("Patient", pid), f"Patient/{pid}")
    params = request.query_params
    since = parse_instant(params["_since"], "_since") if params.get("_since") else None
    wanted = {t.strip() for v in params.getlist("_type") for t in v.split(",") if t.strip()}
    if unknown := wanted - resource_types():
        raise bad_request(f"_type names unknown resource types: {', '.join(sorted(unknown))}")
    raw_count = params.get("_count", str(svc.settings.everything_count_default))
    if not raw_count.isdigit() or int(raw_count) == 0:
        raise bad_request(f"_count={raw_count} is not a positive integer")
    count = min(int(raw_count), svc.settings.everything_count_max)
    after_type, after_id = "", ""
    if cursor := params.get("_page"):
        after_type, _, after_id = cursor.partition("/")
        if after_type not in resource_types() or not after_id:
            raise bad_request("_page is not a cursor this server issued")

    names = set(await svc.repository.db.list_collection_names())
    types = sorted(t for t in resource_types() & names if not wanted or t in wanted)
    types = [t for t in types if t >= after_type]
    entries: list[bytes] = []
    last: tuple[str, str] | None = None
    more = False
    for rtype in types:
        query = compartment_query(rtype, pid)
        if query is None:
            continue
        # The page bound is applied here, not in the query: with an `_id` bound SecantusDB scans
        # the collection (and with the index hinted, the whole index); the reference keys alone
        # read the patient's resources of this type, which are then sorted in memory anyway.
        cursor_docs = (
            svc.repository.db[rtype].find(query, {"json": 1, "lu": 1, "pat": 1}).sort("_id", 1)
        )
        # A limit only when every entry read is kept (else read the type to its end).
        if acc.sees_all(rtype, "s") and rtype != after_type:
            cursor_docs = cursor_docs.limit(count - len(entries) + 1)
        async for doc in cursor_docs:
            if doc.get("json") is None or pid not in doc.get("pat", ()):
                continue
            if since is not None and doc["lu"] < since:
                continue
            if rtype == after_type and doc["_id"] <= after_id:
                continue
            if len(entries) == count:
                more = True
                break
            last = (rtype, doc["_id"])
            if not acc.visible("s", rtype, doc["json"]):
                continue  # e.g. a Consent's deny provision for sensitive classes
            entries.append(
                entry(
                    f"{svc.base}/{rtype}/{doc['_id']}", doc["json"], {"search": {"mode": "match"}}
                )
            )
        if more:
            break
    path = request.url.path.removeprefix("/fhir")
    path = f"{svc.base}{path}"
    query_items = [(k, v) for k, v in params.multi_items() if k != "_page"]
    links = [("self", f"{path}?{urlencode(params.multi_items())}" if params else path)]
    if more and last:
        links.append(("next", f"{path}?{urlencode([*query_items, ('_page', '/'.join(last))])}"))
    total = len(entries) if not more and not cursor else None
    return fhir_response(bundle("searchset", links, entries, total), 200, None, media)
