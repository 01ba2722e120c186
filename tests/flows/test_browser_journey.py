"""A patient's journey in a real browser (Debian's Chromium, driven by Playwright): the demo app
(`python -m seed_data app`) sends them to sign in, they untick one permission, approve, and land
back in the app, which reads their record with the token it got. Screenshots of each page go to
the test's tmp dir, and also to docs/screenshots/ for the docs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from seed_data import demo_app
from smart_auth.services import AuthServices
from tests.flows.journey import APP_SCOPES, create_person, register_public_app
from tests.support import ROOT, free_port, serving

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; .ci/run installs it
# No GPU, no sandbox (root in CI), and none of Chromium's own network traffic (the machine's
# network is closed: those connections would only fail, many at a time).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
UNTICKED = "patient/Observation.rs"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    # Required, not skipped: a missing browser must fail CI rather than pass it silently.
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 900, "height": 800}, locale="en-US")
    yield context.new_page()
    context.close()


def shoot(page: Page, tmp_path: Path, name: str, *, docs: bool = False) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if docs:
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)


def test_patient_unticks_a_scope_and_the_app_reads_their_record(
    page: Page,
    public_base: str,
    client: httpx.Client,
    auth_services: AuthServices,
    tmp_path: Path,
) -> None:
    # Fixed names, so that the screenshots in docs/ stay the same from run to run.
    person = create_person(client, auth_services, "Alice", "Example", username="alice.example")
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    client_id = register_public_app(auth_services, app_url + "/callback", name="Health Diary")
    app = demo_app.create_app(public_base + "/fhir", port, client_id, APP_SCOPES)
    with serving(app, port):
        page.goto(app_url)
        page.get_by_role("link", name="Connect to my health record").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert page.url.startswith(public_base + "/auth/")
        shoot(page, tmp_path, "login", docs=True)

        page.get_by_label("Username").fill(person.username)
        page.get_by_label("Password").fill(person.password)
        page.get_by_role("button", name="Sign in").click()

        expect(page.get_by_role("heading", name="Allow")).to_be_visible()
        expect(page.get_by_text(person.name, exact=True)).to_be_visible()  # the patient, by name
        boxes = page.locator("input[type=checkbox][name=scope]")
        ticked = {boxes.nth(i).get_attribute("value") for i in range(boxes.count())}
        assert UNTICKED in ticked and "patient/Patient.rs" in ticked
        observations = page.get_by_label("Read and search Observation records")  # as people do
        expect(observations).to_have_attribute("value", UNTICKED)
        observations.uncheck()
        expect(observations).not_to_be_checked()
        shoot(page, tmp_path, "approval", docs=True)

        page.get_by_role("button", name="Allow").click()
        # Back in the app: the redirect passed the approval page's CSP form-action.
        page.wait_for_url(lambda url: url.startswith(app_url + "/callback?"))
        expect(page.locator("#patient-name")).to_have_text(person.name)
        granted = set((page.locator("#granted").text_content() or "").split())
        # The token is what was approved: the patient is readable, the unticked type is not.
        expect(page.locator("#no-observations")).to_contain_text("HTTP 403")
        shoot(page, tmp_path, "app", docs=True)

    assert UNTICKED not in granted
    assert granted == set(APP_SCOPES.split()) - {UNTICKED}
