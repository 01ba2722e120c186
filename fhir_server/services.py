"""What request handlers need from the running app, held on `app.state.services`."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from fhir_server.settings import Settings
from fhir_server.storage.repository import Repository


@dataclass
class Services:
    settings: Settings
    repository: Repository

    @property
    def base(self) -> str:
        return self.settings.fhir_base


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
