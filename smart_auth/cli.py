"""`python -m smart_auth clients add|list`: register clients in the configured database.

The database is `PHR_MONGODB_URI` / `PHR_DB_NAME`, as for the server. A client secret is printed
once, on registration, and only its argon2 hash is stored.

    python -m smart_auth clients add --name "Lab feed" --auth-method private_key_jwt \\
        --jwks keys.json --scope "system/Observation.rs system/Patient.rs"
    python -m smart_auth clients list
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, cast

from smart_auth.clients import AUTH_METHODS, AuthMethod, ClientRegistry, RegistrationError
from smart_auth.hashing import SecretHasher
from smart_auth.settings import AuthSettings
from smart_auth.store import AuthStore


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m smart_auth")
    groups = parser.add_subparsers(dest="group", required=True)
    clients = groups.add_parser("clients", help="OAuth clients").add_subparsers(
        dest="command", required=True
    )
    add = clients.add_parser("add", help="register a client; prints its secret once")
    add.add_argument("--name", required=True)
    add.add_argument("--auth-method", required=True, choices=AUTH_METHODS)
    add.add_argument("--scope", required=True, help='allowed SMART scopes, e.g. "system/*.rs"')
    add.add_argument("--jwks", type=Path, help="JWK Set file of public keys (private_key_jwt)")
    add.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris")
    add.add_argument("--grant-type", action="append", dest="grant_types")
    add.add_argument("--client-id", help="default: a random id")
    add.add_argument(
        "--resource-server", action="store_true", help="may introspect any client's tokens"
    )
    listing = clients.add_parser("list", help="list registered clients (never secrets)")
    listing.add_argument("--json", action="store_true")
    return parser


def _summary(client: Any) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "client_type": client.client_type,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "scope": client.scope,
        "grant_types": list(client.grant_types),
        "redirect_uris": list(client.redirect_uris),
        "resource_server": client.resource_server,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = AuthSettings()
    if not settings.mongodb_uri:
        print("PHR_MONGODB_URI is not set: point it at the server's database", file=sys.stderr)
        return 2
    store = AuthStore.connect(settings)
    try:
        registry = ClientRegistry(store, SecretHasher(settings.argon2_profile))
        if args.command == "add":
            jwks = json.loads(args.jwks.read_text()) if args.jwks else None
            try:
                client, secret = registry.register(
                    name=args.name,
                    token_endpoint_auth_method=cast(AuthMethod, args.auth_method),
                    scope=args.scope,
                    jwks=jwks,
                    redirect_uris=args.redirect_uris,
                    grant_types=args.grant_types,
                    client_id=args.client_id,
                    resource_server=args.resource_server,
                )
            except RegistrationError as exc:
                print(f"refused: {exc}", file=sys.stderr)
                return 1
            print(json.dumps({**_summary(client), "client_secret": secret}, indent=2))
            if secret:
                print("Store the client_secret now: it is not shown again.", file=sys.stderr)
            return 0
        clients = registry.list()
        if args.json:
            print(json.dumps([_summary(c) for c in clients], indent=2))
        else:
            for c in clients:
                print(f"{c.client_id}\t{c.token_endpoint_auth_method}\t{c.name}\t{c.scope}")
        return 0
    finally:
        store.close()
