"""EHR launch contexts: an opaque `launch` value standing for "this patient, for this app".

Minted by the portal (`POST /auth/launch`) or the CLI (`python -m smart_auth launch`), handed to
the app with `iss` on its launch URL, and redeemed by the app's authorization request
(`launch=...` with the `launch` scope). The value is random; only its SHA-256 is stored, with a
TTL. It gives the patient context only: the signed-in user must still be allowed to act for that
patient (checked on the approval page).

SMART EHR launch: https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#launch-app-ehr-launch
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from smart_auth.store import AuthStore, digest, utc

MAX_LAUNCH_CHARS = 128


@dataclass(frozen=True)
class LaunchContext:
    patient: str  # the Patient id (SMART's `patient` parameter), not a reference
    client_id: str


class LaunchContexts:
    """The `launches` collection (blocking calls; see store.py)."""

    def __init__(self, store: AuthStore, lifetime: int) -> None:
        self.store = store
        self.lifetime = lifetime

    def mint(self, patient: str, client_id: str) -> str:
        value = secrets.token_urlsafe(24)
        self.store.launches.insert_one(
            {
                "_id": digest(value),
                "patient": patient,
                "client_id": client_id,
                "expires_at": utc(self.store.clock() + self.lifetime),
            }
        )
        return value

    def get(self, value: str, client_id: str) -> LaunchContext | None:
        """The context `value` stands for, when it is live and minted for `client_id`."""
        if not value or len(value) > MAX_LAUNCH_CHARS:
            return None
        doc = self.store.launches.find_one(
            {"_id": digest(value), "client_id": client_id, "expires_at": {"$gt": self.store.now()}}
        )
        return LaunchContext(doc["patient"], doc["client_id"]) if doc else None


def launch_url(launch_uri: str, fhir_base: str, launch: str) -> str:
    """The app's launch URL with SMART's `iss` and `launch` parameters."""
    separator = "&" if "?" in launch_uri else "?"
    return launch_uri + separator + urlencode({"iss": fhir_base, "launch": launch})
