"""Reading urlencoded request bodies: bounded, strict, never a FastAPI 422."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import InvalidRequestError
from starlette.requests import Request

_FORM = "application/x-www-form-urlencoded"
_MAX_FIELDS = 32
MAX_FORM_BYTES = 64 * 1024  # OAuth forms are small; anything bigger is refused unread


async def read_form(
    request: Request, max_bytes: int, max_fields: int = _MAX_FIELDS
) -> tuple[tuple[str, str], ...]:
    """The urlencoded body as (name, value) pairs; anything else is `invalid_request`.

    Empty values count as absent (RFC 6749 section 3.1).
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != _FORM:
        raise InvalidRequestError(f"The body must be {_FORM}.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise InvalidRequestError("The request body is too large.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise InvalidRequestError("The request body is too large.")
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=max_fields,
        )
    except ValueError:  # non-ASCII or non-UTF-8 bytes, too many fields
        raise InvalidRequestError("The body is not a valid urlencoded form.") from None
    return tuple(pairs)


def first(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of `name` in form pairs."""
    return next((value for key, value in pairs if key == name), None)


def every(pairs: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every value of `name` in form pairs (checkbox groups)."""
    return [value for key, value in pairs if key == name]
