"""Fields extracted from each resource at write time and the indexes that serve them."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel

from fhir_server.compartment import compartment_patients
from fhir_server.search.index import stored_fields


class ResourceIndexer:
    """Compartment patients (`pat`), search keys (`k`) and sort keys (`o`)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def fields(self, resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        patients = compartment_patients(resource_type, resource, self.base)
        return {"pat": patients, **stored_fields(resource_type, resource, patients, self.base)}

    def indexes(self, resource_type: str) -> list[IndexModel]:
        # (pat, _id): a patient's compartment in id order, for $everything and its paging.
        return [
            IndexModel([("pat", ASCENDING), ("_id", ASCENDING)]),
            IndexModel([("k", ASCENDING)]),
        ]
