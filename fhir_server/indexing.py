"""Fields extracted from each resource at write time and the indexes that serve them."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel

from fhir_server.compartment import compartment_patients


class ResourceIndexer:
    """Compartment patients (`pat`) now; search parameter values join them in `search`."""

    def __init__(self, base: str) -> None:
        self.base = base

    def fields(self, resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        return {"pat": compartment_patients(resource_type, resource, self.base)}

    def indexes(self, resource_type: str) -> list[IndexModel]:
        return [IndexModel([("pat", ASCENDING)])]
