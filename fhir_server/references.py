"""Parsing FHIR references: https://hl7.org/fhir/R4/references.html#literal."""

from __future__ import annotations

import re

_ID = r"[A-Za-z0-9\-\.]{1,64}"
_RELATIVE = re.compile(rf"^([A-Z][A-Za-z]+)/({_ID})(?:/_history/{_ID})?$")


def parse_reference(reference: str, base: str) -> tuple[str, str] | None:
    """(type, id) of a literal reference to this server, relative or under `base`; else None."""
    if reference.startswith(base + "/"):
        reference = reference[len(base) + 1 :]
    match = _RELATIVE.match(reference)
    return (match.group(1), match.group(2)) if match else None
