"""Standalone launch by the SMART team's own Python client, `fhirclient`: it discovers the OAuth
endpoints from the CapabilityStatement's oauth-uris extension, sends PKCE S256 itself (4.x), and
exchanges the code from the callback URL; then it reads the patient with the token it got.

https://github.com/smart-on-fhir/client-py
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fhirclient.client import FHIRClient
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRNotFoundException, FHIRPermissionDeniedException

from smart_auth.services import AuthServices
from tests.flows.journey import Person, create_observation, register_public_app, sign_in_and_approve
from tests.support import free_port

pytestmark = pytest.mark.slow

SCOPE = "openid fhirUser offline_access patient/Patient.rs patient/Observation.rs"


def test_fhirclient_standalone_launch_reads_only_its_patient(
    public_base: str,
    auth_services: AuthServices,
    client: httpx.Client,
    person: Person,
    other: Person,
) -> None:
    # A native app's loopback redirect (RFC 8252): the journey ends at the redirect, whose URL
    # is handed to the client as the app's little HTTP listener would.
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    app_id = register_public_app(auth_services, redirect_uri, "launch/patient " + SCOPE)
    mine = create_observation(client, person.patient_id, "29463-7", 61.5)
    create_observation(client, other.patient_id, "29463-7", 82.0)
    fhir_base = public_base + "/fhir"
    smart = FHIRClient(
        settings={
            "app_id": app_id,
            "api_base": fhir_base,
            "redirect_uri": redirect_uri,
            "scope": SCOPE,  # fhirclient adds launch/patient itself (no patient yet)
        }
    )

    authorize_url = smart.authorize_url  # reads /metadata: oauth-uris extension
    assert authorize_url.startswith(public_base + "/auth/authorize?")
    params = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
    assert params["code_challenge_method"] == "S256" and params["code_challenge"]
    assert params["aud"] == fhir_base
    assert params["scope"].split() == ["launch/patient", *SCOPE.split()]

    callback = sign_in_and_approve(public_base, authorize_url, person)
    assert callback.startswith(redirect_uri + "?")
    smart.handle_callback(callback)  # checks state, exchanges the code with its code_verifier

    assert smart.ready
    assert smart.patient_id == person.patient_id
    context = smart.launch_context
    assert set(context["scope"].split()) == {"launch/patient", *SCOPE.split()}
    assert context["token_type"] == "Bearer"
    assert smart.human_name(smart.patient.name[0]) == person.name  # Patient/<token patient>

    patient = Patient.read(person.patient_id, smart.server)
    assert patient.name[0].family == person.family
    search = Observation.where({"patient": person.patient_id})
    found = list(search.perform_resources_iter(smart.server))
    assert [o.id for o in found] == [mine]

    # Confined to its patient: another patient's record is not there, and asking is refused.
    with pytest.raises(FHIRNotFoundException):
        Patient.read(other.patient_id, smart.server)
    with pytest.raises(FHIRPermissionDeniedException):
        list(Observation.where({"patient": other.patient_id}).perform_resources_iter(smart.server))

    # offline_access: fhirclient refreshes (rotation) and keeps reading.
    first_token = smart.server.auth.access_token
    assert smart.reauthorize()
    assert smart.server.auth.access_token != first_token
    assert Patient.read(person.patient_id, smart.server).id == person.patient_id
