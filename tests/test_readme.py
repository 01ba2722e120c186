"""The README stays true: every setting is in its configuration table; the two commands exist."""

from __future__ import annotations

from pathlib import Path

from fhir_server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented():
    readme = (ROOT / "README.md").read_text()
    missing = [
        f"PHR_{name.upper()}"
        for name in Settings.model_fields
        if f"`PHR_{name.upper()}`" not in readme
    ]
    assert not missing, f"README configuration table lacks {missing}"


def test_two_commands_exist():
    makefile = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    for target in ("run", "test", "check", "bench"):
        assert f"\n{target}:" in makefile
    assert "make run" in readme and "make test" in readme
