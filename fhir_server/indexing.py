"""Fields extracted from each resource at write time and the indexes that serve them."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel

from fhir_server.compartment import compartment_patients
from fhir_server.search.index import KEY_FIELD, KEY_INDEX, stored_document, stored_fields


class ResourceIndexer:
    """Compartment patients (`pat`) and search keys (`k`)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def fields(self, resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        patients = compartment_patients(resource_type, resource, self.base)
        keys = stored_fields(resource_type, resource, patients, self.base)["k"]
        # `pat` is not indexed: the reference keys in `k` find a patient's resources
        # (`compartment.compartment_query`).
        return {"pat": patients, "k": stored_document(keys)}

    def indexes(self, resource_type: str) -> list[IndexModel]:
        return [IndexModel([(KEY_FIELD, ASCENDING)], name=KEY_INDEX)]
