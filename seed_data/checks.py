"""`--dry-run`: structural Bundle checks and local validation of every resource; nothing is sent.

Resources are validated by `fhir_server.validation.validate_resource`, the server's own validator,
so a clean dry run means the server will accept the resources (conditional references and
`ifNoneExist` criteria can only be resolved against the database, so they are checked for shape).
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FhirError
from fhir_server.validation import check_type, validate_resource
from seed_data.report import INVALID, VALID, Failure, Report
from seed_data.sources import Chunk, Prepared, entry_type

_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}


def _error_text(exc: FhirError) -> list[str]:
    return [i.diagnostics for i in exc.issues] or [exc.diagnostics]


def _conditional_references(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and "?" in item:
                if "/" not in item.split("?", 1)[0]:
                    found.add(item)
            else:
                _conditional_references(item, found)
    elif isinstance(value, list):
        for item in value:
            _conditional_references(item, found)


def check_entry(entry: dict[str, Any]) -> list[str]:
    """What the server would refuse about this entry's request line and resource."""
    problems: list[str] = []
    request = entry.get("request")
    if not isinstance(request, dict):
        return ["the entry has no request"]
    method, url = request.get("method"), request.get("url")
    if method not in _METHODS:
        problems.append(f"request.method {method!r} is not one of {', '.join(sorted(_METHODS))}")
    if not isinstance(url, str) or not url.strip("/"):
        return [*problems, "request.url is missing"]
    path, _, query = url.partition("?")
    parts = [p for p in path.split("/") if p]
    rtype = parts[0] if parts else ""
    try:
        check_type(rtype)
    except FhirError as exc:
        problems.append(f"request.url {url!r}: {exc.diagnostics}")
    resource = entry.get("resource")
    if method in {"POST", "PUT"}:
        if not isinstance(resource, dict):
            return [*problems, f"a {method} entry needs a resource"]
        if resource.get("resourceType") != rtype:
            problems.append(
                f"resourceType {resource.get('resourceType')!r} does not match request.url {url!r}"
            )
    if method == "POST" and (len(parts) != 1 or query):
        problems.append(f"a POST entry takes a url of the form [type], not {url!r}")
    if method in {"PUT", "PATCH", "DELETE"} and not (
        len(parts) == 2 or (len(parts) == 1 and query)
    ):
        problems.append(f"a {method} entry takes [type]/[id] or [type]?criteria, not {url!r}")
    if (
        method == "PUT"
        and len(parts) == 2
        and isinstance(resource, dict)
        and resource.get("id") not in (None, parts[1])
    ):
        problems.append(f"the resource id {resource.get('id')!r} does not match {url!r}")
    references: set[str] = set()
    _conditional_references(resource, references)
    for reference in sorted(references):
        try:
            check_type(reference.split("?", 1)[0])
        except FhirError as exc:
            problems.append(f"conditional reference {reference!r}: {exc.diagnostics}")
    return problems


def check_chunk(chunk: Chunk) -> list[tuple[int, list[str]]]:
    """Problems per entry index, including the Bundle-level rules (unique fullUrls; in a
    transaction, no resource changed twice)."""
    found: list[tuple[int, list[str]]] = []
    full_urls: dict[str, int] = {}
    targets: dict[str, int] = {}
    for index, entry in enumerate(chunk.entries):
        problems = check_entry(entry)
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            if full_url in full_urls:
                problems.append(
                    f"fullUrl {full_url} is also used by {chunk.where[full_urls[full_url]]}"
                )
            full_urls.setdefault(full_url, index)
        request = entry.get("request") or {}
        url = request.get("url") if isinstance(request, dict) else None
        if (
            chunk.kind == "transaction"
            and isinstance(url, str)
            and request.get("method")
            in {
                "PUT",
                "PATCH",
                "DELETE",
            }
        ):
            if url in targets:
                problems.append(f"{url} is also changed by {chunk.where[targets[url]]}")
            targets.setdefault(url, index)
        if problems:
            found.append((index, problems))
    return found


def check_prepared(prepared: Prepared) -> Report:
    """Check one prepared file: counts (valid/invalid per type), problems and warnings."""
    report = Report(dry_run=True)
    messages: list[str] = []
    for chunk in prepared.chunks:
        structural = dict(check_chunk(chunk))
        for index, entry in enumerate(chunk.entries):
            problems = list(structural.get(index, []))
            resource = entry.get("resource")
            if isinstance(resource, dict) and (entry.get("request") or {}).get("method") in {
                "POST",
                "PUT",
            }:
                try:
                    validate_resource(resource)
                except FhirError as exc:
                    problems.extend(_error_text(exc))
            rtype = entry_type(entry)
            report.count(rtype, INVALID if problems else VALID)
            messages.extend(f"{chunk.where[index]} ({rtype}): {p}" for p in problems)
    if messages:
        report.failures.append(Failure(str(prepared.path), messages))
    if prepared.references:
        report.warnings.append(
            Failure(
                str(prepared.path),
                [
                    f"{where}: {ref} matches no fullUrl in the Bundle (stored as it is)"
                    for where, ref in prepared.references
                ],
            )
        )
    return report
