"""HTTP details of the FHIR RESTful API: formats, Prefer, ETags, response building.

https://hl7.org/fhir/R4/http.html
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import (
    FHIR_JSON,
    Issue,
    bad_request,
    not_acceptable,
    operation_outcome,
    unsupported_media_type,
)
from fhir_server.storage.versions import Version

_JSON_TYPES = {"application/fhir+json", "application/json"}
_FORMAT_ALIASES = {"json": "application/fhir+json", **{t: t for t in _JSON_TYPES}}
JSON_ONLY = "This server speaks FHIR JSON only (application/fhir+json)"


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _refused(accept_part: str) -> bool:
    """True for an Accept member with `q=0`, which means "not acceptable" (RFC 9110, 12.4.2)."""
    for param in accept_part.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip()) == 0
            except ValueError:
                return False
    return False


def negotiate(request: Request) -> str:
    """The response content type from `_format` or Accept; 406 when only XML/RDF/HTML is wanted."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        wanted = _FORMAT_ALIASES.get(_media_type(fmt).replace(" ", "+"))
        if wanted is None:
            raise not_acceptable(f"_format={fmt} is not supported. {JSON_ONLY}")
        return FHIR_JSON if wanted == "application/fhir+json" else "application/json"
    accept = request.headers.get("accept")
    if not accept:
        return FHIR_JSON
    types = {_media_type(part) for part in accept.split(",") if not _refused(part)}
    if "application/fhir+json" in types:
        return FHIR_JSON
    if "application/json" in types:
        return "application/json"
    if types & {"application/*", "*/*"}:
        return FHIR_JSON
    raise not_acceptable(f"Cannot produce {accept}. {JSON_ONLY}")


def require_json_body(request: Request, allowed: frozenset[str] = frozenset(_JSON_TYPES)) -> None:
    """415 unless the request body is declared as one of `allowed` in UTF-8."""
    header = request.headers.get("content-type")
    if header is None:
        return  # tolerated: the body is parsed as JSON and refused if it is not
    media = _media_type(header)
    if media not in allowed:
        raise unsupported_media_type(
            f"Content-Type {media} is not supported here; send {' or '.join(sorted(allowed))}"
        )
    for param in header.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise unsupported_media_type("Only the UTF-8 charset is supported")


@dataclass(frozen=True)
class Prefer:
    """The Prefer header: https://hl7.org/fhir/R4/http.html#prefer."""

    return_: str = "representation"
    handling: str = "lenient"


def parse_prefer(request: Request) -> Prefer:
    values: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for token in header.split(","):
            name, _, value = token.strip().partition("=")
            values[name.strip().lower()] = value.strip().strip('"')
    ret = values.get("return", "representation")
    if ret not in {"minimal", "representation", "OperationOutcome"}:
        ret = "representation"
    handling = values.get("handling", "lenient")
    return Prefer(ret, handling if handling in {"strict", "lenient"} else "lenient")


def parse_etag(value: str, header: str) -> int:
    """The version number in an ETag such as `W/"3"` (If-Match, If-None-Match)."""
    tag = value.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"')
    # ASCII only (int() refuses "²"), and short enough for int() and for MongoDB's int64
    if not (tag.isascii() and tag.isdigit()) or len(tag) > 18:
        raise bad_request(f'{header} must be a version ETag such as W/"1", not {value!r}')
    return int(tag)


def version_headers(version: Version, base: str | None = None) -> dict[str, str]:
    headers = {"ETag": version.etag, "Last-Modified": version.last_modified}
    if base is not None:
        headers["Location"] = f"{base}/{version.key}"
    return headers


def fhir_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None, media: str = FHIR_JSON
) -> Response:
    return Response(body, status_code=status, headers=headers, media_type=media)


def write_response(
    version: Version, status: int, prefer: Prefer, media: str, base: str, message: str
) -> Response:
    """The answer to create/update/patch, shaped by `Prefer: return=`."""
    headers = version_headers(version, base)
    if prefer.return_ == "minimal":
        return Response(status_code=status, headers=headers)
    if prefer.return_ == "OperationOutcome":
        body = operation_outcome([Issue("informational", message, severity="information")])
        return fhir_response(body, status, headers, media)
    assert version.json is not None
    return fhir_response(version.json, status, headers, media)
