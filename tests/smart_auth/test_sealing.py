"""Sealing secrets at rest (smart_auth/sealing.py): the key's sources and the sealed form."""

from __future__ import annotations

import secrets
import stat
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr

from smart_auth.keys import ACCESS_TOKEN
from smart_auth.sealing import Sealer, SealError, configured_key, decode_key, key_file, new_key
from smart_auth.services import AuthServices
from smart_auth.settings import AuthSettings
from tests.smart_auth.conftest import auth_settings
from tests.support import EmbeddedDatabase


def test_a_sealed_value_opens_for_its_context_only() -> None:
    sealer = Sealer(secrets.token_bytes(32))
    sealed = sealer.seal(b"JBSWY3DPEHPK3PXP", "accounts/a/totp")
    assert b"JBSWY3DPEHPK3PXP" not in sealed.encode()
    assert sealer.open(sealed, "accounts/a/totp") == b"JBSWY3DPEHPK3PXP"
    assert sealer.seal(b"x", "c") != sealer.seal(b"x", "c")  # a fresh nonce each time
    with pytest.raises(SealError, match="altered or moved"):
        sealer.open(sealed, "accounts/b/totp")
    version, key_id, nonce, body = sealed.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(SealError, match="altered or moved"):
        sealer.open(".".join((version, key_id, nonce, flipped)), "accounts/a/totp")
    for garbage in ("", "v1.x", "v2.a.b.c", "plain secret"):
        with pytest.raises(SealError):
            sealer.open(garbage, "accounts/a/totp")


def test_a_value_sealed_under_another_key_names_both_keys() -> None:
    one, two = Sealer(secrets.token_bytes(32)), Sealer(secrets.token_bytes(32))
    with pytest.raises(SealError, match=f"key id {one.key_id}, this one is {two.key_id}"):
        two.open(one.seal(b"s", "c"), "c")


@pytest.mark.parametrize("text", ["", "not base64!", new_key()[:20], new_key() + "AAAA"])
def test_a_bad_key_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="secret key"):
        decode_key(text)


def test_the_key_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "var" / "secret.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(key_file(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no file left aside
    assert key_file(path) == keys[0]


def test_the_environment_key_wins_over_the_file(tmp_path: Path) -> None:
    key = new_key()
    settings = AuthSettings(secret_key=key, data_dir=tmp_path / "db")  # type: ignore[arg-type]
    assert configured_key(settings) == decode_key(key)
    assert not (tmp_path / "secret.key").exists()
    default = AuthSettings(data_dir=tmp_path / "db")
    assert configured_key(default) == decode_key((tmp_path / "secret.key").read_text())


async def test_start_up_refuses_another_secret_key(database: EmbeddedDatabase) -> None:
    settings = auth_settings(database, 8080)
    first = AuthServices.create(settings)
    try:
        await first.start()
        first.keys.signing_key(ACCESS_TOKEN)
    finally:
        first.close()
    other = AuthServices.create(settings.model_copy(update={"secret_key": SecretStr(new_key())}))
    try:
        with pytest.raises(SealError, match="set PHR_SECRET_KEY"):
            await other.start()
    finally:
        other.close()
    again = AuthServices.create(settings)  # the right key starts
    try:
        await again.start()
    finally:
        again.close()
