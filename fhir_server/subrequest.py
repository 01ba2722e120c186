"""Running one FHIR request inside another (batch entries, GET entries of a transaction).

The request goes through the same ASGI app, so it gets exactly the handling, validation and
(later) authorization of a top-level request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message


@dataclass
class SubResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


async def dispatch(
    app: ASGIApp,
    method: str,
    path_and_query: str,
    headers: dict[str, str],
    body: bytes = b"",
) -> SubResponse:
    """Call `app` with one in-memory HTTP request and collect its response."""
    parts = urlsplit(path_and_query)
    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": parts.path,
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 0),
        "server": ("subrequest", 0),
    }
    sent = False
    response = SubResponse(500)
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            response.status = message["status"]
            response.headers = {
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in message.get("headers", [])
            }
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    response.body = b"".join(chunks)
    return response
