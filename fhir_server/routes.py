"""Every FHIR interaction on one screen: https://hl7.org/fhir/R4/http.html#summary."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server.interactions import (
    bundle,
    conditional,
    history,
    instance,
    search,
    system,
    type_level,
)
from fhir_server.operations import everything

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Interaction:
    code: str  # http://hl7.org/fhir/restful-interaction, or "$name" for an operation
    level: str  # "instance" | "type" | "system"
    method: str
    path: str
    endpoint: Endpoint


INTERACTIONS: tuple[Interaction, ...] = (
    Interaction("capabilities", "system", "GET", "/metadata", system.capabilities),
    Interaction("history-system", "system", "GET", "/_history", history.history_system),
    Interaction("transaction", "system", "POST", "", bundle.process),
    Interaction("batch", "system", "POST", "", bundle.process),
    Interaction("search-type", "type", "GET", "/{type}", search.search_type),
    Interaction("search-type", "type", "POST", "/{type}/_search", search.search_type),
    Interaction("create", "type", "POST", "/{type}", type_level.create),
    Interaction("update", "type", "PUT", "/{type}", conditional.update),
    Interaction("delete", "type", "DELETE", "/{type}", conditional.delete),
    Interaction("history-type", "type", "GET", "/{type}/_history", history.history_type),
    # before `read`, whose {id} would otherwise take "$everything"
    Interaction("$everything", "type", "GET", "/{type}/$everything", everything.everything_type),
    Interaction("read", "instance", "GET", "/{type}/{id}", instance.read),
    Interaction("update", "instance", "PUT", "/{type}/{id}", instance.update),
    Interaction("patch", "instance", "PATCH", "/{type}/{id}", instance.patch),
    Interaction("delete", "instance", "DELETE", "/{type}/{id}", instance.delete),
    Interaction(
        "history-instance", "instance", "GET", "/{type}/{id}/_history", history.history_instance
    ),
    Interaction("vread", "instance", "GET", "/{type}/{id}/_history/{vid}", instance.vread),
    Interaction(
        "$everything", "instance", "GET", "/{type}/{id}/$everything", everything.everything
    ),
)


def fhir_routes(prefix: str = "/fhir") -> list[Route]:
    """Starlette routes for the table; one Route per path, methods merged."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for it in INTERACTIONS:
        by_path.setdefault(it.path, {})[it.method] = it.endpoint
    routes = []
    for path, methods in by_path.items():
        if len(methods) == 1:
            ((method, endpoint),) = methods.items()
            routes.append(Route(prefix + path, endpoint, methods=[method]))
        else:
            routes.append(Route(prefix + path, _dispatch(methods), methods=list(methods)))
        if path == "":  # the base URL, with or without its trailing slash
            routes.append(Route(prefix + "/", routes[-1].endpoint, methods=list(methods)))
    return routes


def _dispatch(methods: dict[str, Endpoint]) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return await methods[request.method](request)

    return endpoint
