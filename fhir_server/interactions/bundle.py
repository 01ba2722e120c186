"""Batch and transaction Bundles: POST [base] (https://hl7.org/fhir/R4/http.html#transaction).

A transaction is all or nothing: entries are resolved in the spec's order (DELETE, POST, PUT/PATCH,
then GET), `urn:uuid:`/`urn:oid:` fullUrls get ids and every reference to them is rewritten,
conditional entries and conditional references are resolved, every resource is validated, and only
then are all writes applied in one MongoDB transaction. Any failure answers the entry's 4xx and
writes nothing. A batch runs each entry as its own request, through the same app.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl
from uuid import uuid4

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.access import Access, access
from fhir_server.bundles import bundle, entry
from fhir_server.errors import (
    FhirError,
    Issue,
    bad_request,
    not_found,
    precondition_failed,
    too_large,
)
from fhir_server.http import fhir_response, negotiate, parse_prefer, require_json_body
from fhir_server.interactions.common import json_body
from fhir_server.interactions.conditional import matching_ids
from fhir_server.jsonbody import dumps, loads
from fhir_server.offload import off_loop
from fhir_server.patch import apply_patch
from fhir_server.search.engine import parse
from fhir_server.search.index import index_fields
from fhir_server.services import Services, services
from fhir_server.storage.repository import VersionConflict, Write, WriteResult
from fhir_server.storage.versions import Version, format_instant
from fhir_server.subrequest import dispatch
from fhir_server.validation import check_type, validate_resource

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}
# An update whose content equals the stored version writes nothing; say so (HAPI's code).
NO_CHANGE = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "information",
            "code": "informational",
            "details": {"coding": [{"code": "SUCCESSFUL_UPDATE_NO_CHANGE"}]},
            "diagnostics": "The content equals the current version; no new version was written",
        }
    ],
}


@dataclass
class Item:
    """One Bundle entry on its way to becoming a write."""

    index: int
    method: str
    url: str
    resource_type: str = ""
    resource_id: str | None = None
    query: str = ""
    resource: dict[str, Any] | None = None
    full_url: str | None = None
    if_none_exist: str | None = None
    if_match: int | None = None
    existing: bool = False  # conditional create that matched
    noop: bool = False  # conditional delete that matched nothing
    keys: frozenset[str] = field(default_factory=frozenset)

    def error(self, exc: FhirError) -> FhirError:
        message = f"Bundle.entry[{self.index}] ({self.method} {self.url}): {exc.diagnostics}"
        issues = [
            Issue(i.code, f"Bundle.entry[{self.index}]: {i.diagnostics}", i.severity, i.expression)
            for i in exc.issues
        ] or [Issue(exc.code, message)]
        return FhirError(message, exc.status, exc.code, issues, exc.headers)


# The SMART permission letter each entry's method needs.
_LETTERS = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d", "GET": "r", "HEAD": "r"}


def _relative(url: str, base: str) -> str:
    if url.startswith(base + "/"):
        return url[len(base) + 1 :]
    return url.lstrip("/")


def _parse_entry(index: int, raw: Any, base: str) -> Item:
    if not isinstance(raw, dict):
        raise bad_request(f"Bundle.entry[{index}] is not an object")
    request = raw.get("request")
    if not isinstance(request, dict):
        raise bad_request(f"Bundle.entry[{index}] has no request")
    method, url = request.get("method"), request.get("url")
    if method not in _ORDER or not isinstance(url, str) or not url:
        raise bad_request(f"Bundle.entry[{index}].request needs a method and a url")
    item = Item(index, method, url, full_url=raw.get("fullUrl"), resource=raw.get("resource"))
    path, _, item.query = _relative(url, base).partition("?")
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise item.error(bad_request("the url names no resource type"))
    item.resource_type = parts[0]
    try:
        check_type(item.resource_type)
    except FhirError as exc:
        raise item.error(exc) from None
    if len(parts) > 1:
        item.resource_id = parts[1]
    if method in {"POST", "PUT"} and not isinstance(item.resource, dict):
        raise item.error(bad_request("a resource is required"))
    if method == "POST" and (len(parts) != 1 or item.query):
        raise item.error(bad_request("POST entries take a url of the form [type]"))
    if method in {"PUT", "PATCH", "DELETE"} and not (
        len(parts) == 2 or (len(parts) == 1 and item.query)
    ):
        raise item.error(bad_request(f"{method} entries take [type]/[id] or [type]?criteria"))
    if isinstance(request.get("ifNoneExist"), str):
        item.if_none_exist = request["ifNoneExist"]
    if isinstance(request.get("ifMatch"), str):
        tag = request["ifMatch"].removeprefix("W/").strip('"')
        if not tag.isdigit():
            raise item.error(bad_request(f"ifMatch {request['ifMatch']!r} is not a version ETag"))
        item.if_match = int(tag)
    return item


def _patch_operations(item: Item) -> Any:
    """PATCH entries carry a Binary holding the JSON Patch document."""
    binary = item.resource
    if not isinstance(binary, dict) or binary.get("resourceType") != "Binary":
        raise item.error(bad_request("PATCH entries need a Binary resource holding a JSON Patch"))
    if binary.get("contentType") != "application/json-patch+json":
        raise item.error(bad_request("only JSON Patch (application/json-patch+json) is supported"))
    try:
        return orjson.loads(base64.b64decode(binary.get("data", ""), validate=True))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise item.error(bad_request("the Binary data is not base64 JSON")) from None


def _rewrite(value: Any, mapping: dict[str, str], conditional: set[str] | None = None) -> Any:
    """Replace every string equal to a mapped fullUrl (references, uris, narrative links); the
    conditional references met on the way (`Patient?identifier=...`) go into `conditional`."""
    if isinstance(value, str):
        return mapping.get(value, value)
    if isinstance(value, list):
        return [_rewrite(v, mapping, conditional) for v in value]
    if isinstance(value, dict):
        out = {k: _rewrite(v, mapping, conditional) for k, v in value.items()}
        div = out.get("div")
        if isinstance(div, str) and "urn:" in div:
            for old, new in mapping.items():
                div = div.replace(f'"{old}"', f'"{new}"')
            out["div"] = div
        reference = out.get("reference")
        if (
            conditional is not None
            and isinstance(reference, str)
            and "?" in reference
            and "/" not in reference.partition("?")[0]
        ):
            conditional.add(reference)
        return out
    return value


class TransactionPlanner:
    """Resolves a transaction's entries into writes, without writing anything."""

    def __init__(self, svc: Services, items: list[Item], acc: Access) -> None:
        self.svc = svc
        self.items = items
        self.access = acc
        self.mapping: dict[str, str] = {}
        self.conditional: dict[str, Item] = {}  # conditional reference -> first item with it

    async def plan(self) -> list[Write]:
        ordered = sorted(self.items, key=lambda i: (_ORDER[i.method], i.index))
        seen_conditions: dict[tuple[str, str], Item] = {}
        for item in ordered:
            try:
                await self._resolve_identity(item, seen_conditions)
            except FhirError as exc:
                raise item.error(exc) from None
        await off_loop(self._rewrite_all, ordered)
        await self._resolve_conditional_references(ordered)
        targets: set[tuple[str, str]] = set()
        todo: list[tuple[Item, Version | FhirError | None]] = []
        for item in ordered:
            if item.method in {"GET", "HEAD"} or item.existing or item.noop:
                continue
            assert item.resource_id is not None
            target = (item.resource_type, item.resource_id)
            if target in targets:
                raise item.error(
                    bad_request(f"{item.resource_type}/{item.resource_id} is changed twice")
                )
            targets.add(target)
            todo.append((item, await self._current(item)))
        # Validation and the access checks are most of a transaction's CPU: off the event loop,
        # so other requests' transactions keep the database busy meanwhile.
        return await off_loop(self._writes, todo)

    def _rewrite_all(self, items: list[Item]) -> None:
        for item in items:
            if item.resource is not None and item.method in {"POST", "PUT"}:
                found: set[str] = set()
                item.resource = _rewrite(item.resource, self.mapping, found)
                for reference in found:
                    self.conditional.setdefault(reference, item)

    def _writes(self, todo: list[tuple[Item, Version | FhirError | None]]) -> list[Write]:
        writes: list[Write] = []
        for item, current in todo:
            try:
                if isinstance(current, FhirError):
                    raise current
                writes.append(self._write(item, current))
            except FhirError as exc:
                raise item.error(exc) from None
        return writes

    async def _resolve_identity(self, item: Item, seen: dict[tuple[str, str], Item]) -> None:
        criteria = item.query if item.method != "POST" else item.if_none_exist
        if criteria:
            key = (item.resource_type, criteria)
            if item.method == "POST" and key in seen:  # same condition earlier in this bundle
                item.resource_id, item.existing = seen[key].resource_id, True
            else:
                found = await matching_ids(
                    self.svc,
                    item.resource_type,
                    parse_qsl(criteria.lstrip("?"), keep_blank_values=True),
                    self.access,
                    _LETTERS[item.method],
                )
                if len(found) > 1:
                    raise precondition_failed(f"the criteria matched {len(found)} resources")
                if found:
                    item.resource_id = found[0]
                    item.existing = item.method == "POST"
                elif item.method == "DELETE" or item.method == "PATCH":
                    raise not_found("no resource matches the criteria")
                elif item.method == "PUT" and isinstance(item.resource, dict):
                    item.resource_id = item.resource.get("id") or str(uuid4())
                seen.setdefault(key, item)
        if item.method == "POST" and item.resource_id is None:
            item.resource_id = str(uuid4())
        if item.full_url and item.resource_id and item.method in {"POST", "PUT"}:
            self.mapping[item.full_url] = f"{item.resource_type}/{item.resource_id}"

    async def _resolve_conditional_references(self, items: list[Item]) -> None:
        """`Patient?identifier=x|y` references (found by `_rewrite_all`) must match exactly one
        resource, in the database or among this bundle's own resources."""
        wanted = self.conditional
        if not wanted:
            return
        base = self.svc.base
        for item in items:
            if item.resource is not None and item.method in {"POST", "PUT"}:
                stamped = {**item.resource, "id": item.resource_id}
                item.keys = frozenset(index_fields(item.resource_type, stamped, [], base)["k"])
        resolved: dict[str, str] = {}
        for reference in sorted(wanted):
            rtype, _, query = reference.partition("?")
            try:
                check_type(rtype)
            except FhirError as exc:
                raise wanted[reference].error(exc) from None
            criteria = parse_qsl(query, keep_blank_values=True)
            matches = set(await matching_ids(self.svc, rtype, criteria, self.access, "s"))
            search = parse(rtype, criteria, base, strict=True)
            for item in items:
                if (
                    item.resource_type == rtype
                    and item.keys
                    and all(p.test(item.keys) for p in search.predicates)
                ):
                    matches.add(str(item.resource_id))
            if len(matches) != 1:
                raise wanted[reference].error(
                    FhirError(
                        f"conditional reference {reference} matches {len(matches)} resources"
                        " (it must match exactly one)",
                        412 if matches else 404,
                        "multiple-matches" if matches else "not-found",
                    )
                )
            resolved[reference] = f"{rtype}/{matches.pop()}"
        for item in items:
            if item.resource is not None and item.method in {"POST", "PUT"}:
                item.resource = _rewrite(item.resource, resolved)

    async def _current(self, item: Item) -> Version | FhirError | None:
        """The current version `_write` needs (PATCH, or a write the access must check against
        what it replaces); an error is kept for `_write` to raise in its entry's turn."""
        rtype, letter = item.resource_type, _LETTERS[item.method]
        if item.method == "PATCH" or (
            item.method in {"DELETE", "PUT"} and not self.access.sees_all(rtype, letter)
        ):
            assert item.resource_id is not None
            current = await self.svc.repository.read(rtype, item.resource_id)
            if item.method == "PATCH" and (current is None or current.json is None):
                return not_found(f"{rtype}/{item.resource_id} is not known")
            return current
        return None

    def _write(self, item: Item, current: Version | None) -> Write:
        assert item.resource_id is not None
        expected: int | None
        acc, rtype, letter = self.access, item.resource_type, _LETTERS[item.method]
        checked = None
        if item.method in {"DELETE", "PUT"} and not acc.sees_all(rtype, letter):
            if current is not None and current.json is not None:
                acc.check_existing(letter, rtype, current.json)
                checked = current.version
            elif item.method == "PUT":
                letter = "c"  # nothing there yet: the entry creates
        if item.method == "DELETE":
            return Write("DELETE", rtype, item.resource_id, None, item.if_match or checked)
        if item.method == "PATCH":
            assert current is not None and current.json is not None
            acc.check_existing("u", rtype, current.json)
            body = apply_patch(loads(current.json), _patch_operations(item))
            expected = current.version if item.if_match is None else item.if_match
        else:
            body = dict(item.resource or {})
            expected = item.if_match or checked
        validate_resource(body, item.resource_type)
        acc.check_write(letter, rtype, body)
        if item.method == "PUT" and body.get("id") not in (None, item.resource_id):
            raise bad_request(f"the body id '{body.get('id')}' does not match {item.resource_id}")
        body["id"] = item.resource_id
        return Write(item.method, item.resource_type, item.resource_id, body, expected)


def _response_entry(
    base: str, item: Item, result: WriteResult | None, representation: bool
) -> bytes:
    if item.existing or result is None or result.version is None:
        status = 200 if item.existing else 204 if item.method == "DELETE" else 200
        response: dict[str, Any] = {"status": _STATUS_TEXT[status]}
        if item.resource_id and item.method != "DELETE":
            response["location"] = f"{base}/{item.resource_type}/{item.resource_id}"
        return entry(
            f"{base}/{item.resource_type}/{item.resource_id}", None, {"response": response}
        )
    version = result.version
    status = 204 if item.method == "DELETE" else 201 if result.created else 200
    response = {
        "status": _STATUS_TEXT[status],
        "etag": version.etag,
        "lastModified": format_instant(version.last_updated),
    }
    if item.method != "DELETE":
        response["location"] = f"{base}/{version.key}"
    if not result.changed and item.method != "DELETE":
        response["outcome"] = NO_CHANGE
    body = version.json if representation and item.method != "DELETE" else None
    return entry(f"{base}/{item.resource_type}/{item.resource_id}", body, {"response": response})


async def _run(
    request: Request, item: Item, base: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    """Run one entry as its own request through the app and describe the outcome as an entry."""
    headers = {"accept": "application/fhir+json", **headers}
    if auth := request.headers.get("authorization"):
        headers["authorization"] = auth
    path = _relative(item.url, base)
    sub = await dispatch(request.app, item.method, "/fhir/" + path, headers, body)
    response: dict[str, Any] = {"status": str(sub.status)}
    for name, field_name in (
        ("etag", "etag"),
        ("last-modified", "lastModified"),
        ("location", "location"),
    ):
        if name in sub.headers:
            response[field_name] = sub.headers[name]
    resource = None
    if sub.status >= 400:
        response["outcome"] = orjson.loads(sub.body) if sub.body else None
    elif sub.body and item.method == "GET":
        resource = sub.body
    full_url = response.get("location", "").split("/_history/")[0] or f"{base}/{path.split('?')[0]}"
    return entry(full_url, resource, {"response": response})


def _error_entry(exc: FhirError) -> bytes:
    outcome = orjson.loads(exc.outcome())
    return entry(
        f"urn:uuid:{uuid4()}", None, {"response": {"status": str(exc.status), "outcome": outcome}}
    )


async def transaction(request: Request, svc: Services, raw_entries: list[Any]) -> bytes:
    items = [_parse_entry(i, e, svc.base) for i, e in enumerate(raw_entries)]
    writes = await TransactionPlanner(svc, items, access(request)).plan()
    try:
        results = await svc.repository.transact(writes)
    except VersionConflict as exc:
        raise precondition_failed(
            f"A version check failed (current version {exc.current})"
        ) from None
    by_target = {(w.resource_type, w.resource_id): r for w, r in zip(writes, results, strict=True)}
    representation = parse_prefer(request).return_ == "representation" and bool(
        request.headers.get("prefer")
    )
    out: list[bytes] = []
    for item in items:
        if item.method in {"GET", "HEAD"}:
            out.append(await _run(request, item, svc.base, {}))
        else:
            result = by_target.get((item.resource_type, str(item.resource_id)))
            out.append(_response_entry(svc.base, item, result, representation))
    return bundle("transaction-response", [], out)


async def batch(request: Request, svc: Services, raw_entries: list[Any]) -> bytes:
    """Each entry is its own request: one failing entry does not affect the others."""
    out: list[bytes] = []
    for index, raw in enumerate(raw_entries):
        try:
            item = _parse_entry(index, raw, svc.base)
            headers = {"content-type": "application/fhir+json"}
            if item.if_none_exist:
                headers["if-none-exist"] = item.if_none_exist
            if item.if_match is not None:
                headers["if-match"] = f'W/"{item.if_match}"'
            body = b""
            if item.method == "PATCH":
                body = dumps(_patch_operations(item))
                headers["content-type"] = "application/json-patch+json"
            elif item.resource is not None and item.method in {"POST", "PUT"}:
                body = dumps(item.resource)
        except FhirError as exc:
            out.append(_error_entry(exc))
            continue
        out.append(await _run(request, item, svc.base, headers, body))
    return bundle("batch-response", [], out)


async def process(request: Request) -> Response:
    """POST [base] with a Bundle of type batch or transaction."""
    svc = services(request)
    media = negotiate(request)
    require_json_body(request)
    body = await json_body(request, svc)
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise bad_request("POST [base] takes a Bundle of type batch or transaction")
    kind = body.get("type")
    entries = body.get("entry") or []
    if kind not in {"batch", "transaction"}:
        raise bad_request(f"Bundle.type must be batch or transaction, not {kind!r}")
    if not isinstance(entries, list):
        raise bad_request("Bundle.entry must be an array")
    if len(entries) > svc.settings.bundle_max_entries:
        raise too_large(
            f"The Bundle has {len(entries)} entries; the limit is {svc.settings.bundle_max_entries}"
        )
    handler = transaction if kind == "transaction" else batch
    return fhir_response(await handler(request, svc, entries), 200, None, media)
