"""HTTPS on the server itself: TLS 1.2 and 1.3 only (SMART checklist 2.1, 3.1, 7.1), and every
advertised URL in https."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import warnings
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import ROOT, free_port, wait_until

pytestmark = pytest.mark.slow


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


def handshake(port: int, cafile: Path, version: ssl.TLSVersion) -> str | None:
    """The negotiated protocol when the client offers only `version`, or None if refused."""
    context = ssl.create_default_context(cafile=str(cafile))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # offering TLS 1.0/1.1 on purpose
        context.minimum_version = context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        # This client's OpenSSL would refuse the old protocols itself; let it offer them, so
        # that only the server can say no.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            return tls.version()
    except (ssl.SSLError, ConnectionResetError):
        return None


def test_https_only_modern_tls_and_https_urls(database, tmp_path):
    certfile, keyfile = self_signed(tmp_path)
    port = free_port()
    env = {
        "PHR_MONGODB_URI": database.uri,
        "PHR_DB_NAME": "tls",
        "PHR_PORT": str(port),
        "PHR_TLS_CERTFILE": str(certfile),
        "PHR_TLS_KEYFILE": str(keyfile),
        "PHR_LOG_LEVEL": "WARNING",
    }
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "fhir_server", "serve"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"https://localhost:{port}"
    client = httpx.Client(verify=ssl.create_default_context(cafile=str(certfile)), timeout=10)

    def up() -> bool:
        try:
            return client.get(base + "/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 60, what="the HTTPS server")
        smart = client.get(base + "/fhir/.well-known/smart-configuration").json()
        assert smart["token_endpoint"] == base + "/auth/token"
        assert smart["authorization_endpoint"] == base + "/auth/authorize"
        assert client.get(base + "/fhir/Patient").status_code == 401
        assert handshake(port, certfile, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        assert handshake(port, certfile, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
        for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            assert handshake(port, certfile, old) is None, f"{old.name} was accepted"
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        client.close()
        process.terminate()
        process.wait(30)
        log.close()
