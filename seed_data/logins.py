"""The demo's login accounts and app registration (`accounts.json`, `apps.json` beside this file).

DEMO ONLY: the password is in the file. They are created only beside the demo family, and only
when missing, so a restart changes nothing and a real deployment never gets them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smart_auth.accounts import AccountError
from smart_auth.clients import RegistrationError
from smart_auth.services import AuthServices


@dataclass
class Created:
    accounts: list[str]
    apps: list[str]


HERE = Path(__file__).resolve().parent


def seed_logins(services: AuthServices, folder: Path = HERE) -> Created:
    """Create the demo accounts and apps that do not exist yet (blocking)."""
    people: dict[str, Any] = json.loads((folder / "accounts.json").read_text())
    apps: dict[str, Any] = json.loads((folder / "apps.json").read_text())
    created = Created([], [])
    for person in people["accounts"]:
        if services.accounts.get(person["username"]) is not None:
            continue
        try:
            services.accounts.add(person["username"], people["password"], person["fhir_user"])
        except AccountError:  # another worker created it meanwhile
            continue
        created.accounts.append(person["username"])
    for app in apps["apps"]:
        if services.clients.get(app["client_id"]) is not None:
            continue
        try:
            services.clients.register(
                client_id=app["client_id"],
                name=app["name"],
                token_endpoint_auth_method=app["token_endpoint_auth_method"],
                scope=app["scope"],
                redirect_uris=app["redirect_uris"],
            )
        except RegistrationError:
            continue
        created.apps.append(app["client_id"])
    return created
