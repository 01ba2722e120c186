"""`python -m smart_auth clients|users|launch`: manage the authorization server's database.

The database is `PHR_MONGODB_URI` / `PHR_DB_NAME`, as for the server. A client secret is printed
once, on registration, and only its argon2 hash is stored; so are passwords.

    python -m smart_auth clients add --name "Lab feed" --auth-method private_key_jwt \\
        --jwks keys.json --scope "system/Observation.rs system/Patient.rs"
    python -m smart_auth clients list
    python -m smart_auth users add alice --fhir-user Patient/demo-alice [--password-stdin] [--totp]
    python -m smart_auth users list
    python -m smart_auth launch demo-alice --client my-app     # EHR launch value and URL
    python -m smart_auth secret-key                              # a new PHR_SECRET_KEY
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any, cast

from smart_auth.accounts import AccountError, AccountRegistry, LoginThrottle, totp_uri
from smart_auth.clients import AUTH_METHODS, AuthMethod, ClientRegistry, RegistrationError
from smart_auth.directory import split_reference
from smart_auth.hashing import SecretHasher
from smart_auth.launches import LaunchContexts, launch_url
from smart_auth.sealing import new_key
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
    add.add_argument("--launch-uri", help="the app's EHR launch URL (SMART launch-ehr)")
    add.add_argument(
        "--resource-server", action="store_true", help="may introspect any client's tokens"
    )
    listing = clients.add_parser("list", help="list registered clients (never secrets)")
    listing.add_argument("--json", action="store_true")

    users = groups.add_parser("users", help="login accounts").add_subparsers(
        dest="command", required=True
    )
    user_add = users.add_parser("add", help="create a login account")
    user_add.add_argument("username")
    user_add.add_argument("--fhir-user", required=True, help="Patient/x or RelatedPerson/y")
    user_add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (one line)"
    )
    user_add.add_argument("--totp", action="store_true", help="require a TOTP code; prints it")
    user_list = users.add_parser("list", help="list accounts (never passwords)")
    user_list.add_argument("--json", action="store_true")

    groups.add_parser(
        "secret-key", help="print a new PHR_SECRET_KEY (seals signing keys and TOTP secrets)"
    )
    launch = groups.add_parser("launch", help="mint an EHR launch context for an app")
    launch.add_argument("patient", metavar="PATIENT_ID")
    launch.add_argument("--client", required=True, dest="client_id")
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
        "launch_uri": client.launch_uri,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.group == "secret-key":
        print(new_key())
        return 0
    settings = AuthSettings()
    if not settings.database_uri():
        print("No database: start the server (make run) or set PHR_MONGODB_URI", file=sys.stderr)
        return 2
    store = AuthStore.connect(settings)
    try:
        if args.group == "users":
            return _users(args, store, settings)
        if args.group == "launch":
            return _launch(args, store, settings)
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
                    launch_uri=args.launch_uri,
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


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise AccountError("the passwords differ")
    return first


def _users(args: argparse.Namespace, store: AuthStore, settings: AuthSettings) -> int:
    throttle = LoginThrottle(
        store,
        window=settings.login_failure_window,
        per_account=settings.login_max_failures,
        per_ip=settings.login_max_failures_per_ip,
    )
    accounts = AccountRegistry(store, SecretHasher(settings.argon2_profile), throttle)
    if args.command == "add":
        try:
            password = _read_password(args.password_stdin)
            account = accounts.add(args.username, password, args.fhir_user, totp=args.totp)
        except AccountError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        summary: dict[str, Any] = {
            "username": account.username,
            "sub": account.sub,
            "fhir_user": account.fhir_user,
        }
        if account.totp_secret:
            summary |= {"totp_secret": account.totp_secret, "totp_uri": totp_uri(account)}
        print(json.dumps(summary, indent=2))
        if account.totp_secret:
            print("Add the TOTP secret to an authenticator app now.", file=sys.stderr)
        return 0
    listed = accounts.list()
    if args.json:
        rows = [
            {"username": a.username, "fhir_user": a.fhir_user, "totp": bool(a.totp_secret)}
            for a in listed
        ]
        print(json.dumps(rows, indent=2))
    else:
        for a in listed:
            print(f"{a.username}\t{a.fhir_user}\t{'totp' if a.totp_secret else '-'}")
    return 0


def _launch(args: argparse.Namespace, store: AuthStore, settings: AuthSettings) -> int:
    client = ClientRegistry(store, SecretHasher(settings.argon2_profile)).get(args.client_id)
    if client is None:
        print(f"refused: no client {args.client_id!r}", file=sys.stderr)
        return 1
    if split_reference(f"Patient/{args.patient}") is None:
        print("refused: PATIENT_ID is not a FHIR id", file=sys.stderr)
        return 1
    launch = LaunchContexts(store, settings.launch_context_lifetime).mint(
        args.patient, client.client_id
    )
    out = {
        "launch": launch,
        "iss": settings.fhir_base,
        "expires_in": settings.launch_context_lifetime,
    }
    if client.launch_uri:
        out["launch_url"] = launch_url(client.launch_uri, settings.fhir_base, launch)
    print(json.dumps(out, indent=2))
    return 0
