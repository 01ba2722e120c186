"""Which Patient CompartmentDefinition parameters mean a resource is *about* the patient.

The official R4 definition (https://hl7.org/fhir/R4/compartmentdefinition-patient.html) also puts a
resource in a patient's compartment when the patient merely performed, authored or received it.
For access decisions only the parameters naming whom the resource is about count: a patient who
recorded an allergy for their child does not thereby own the child's record.
"""

from __future__ import annotations

ABOUT_PARAMS: frozenset[str] = frozenset({"patient", "subject", "beneficiary", "individual"})

# Resource types whose only patient link is a participant list, where the participant is the person
# the appointment is for.
PARTICIPANT_ABOUT: dict[str, frozenset[str]] = {
    "Appointment": frozenset({"actor"}),
    "AppointmentResponse": frozenset({"actor"}),
}


def about_params(resource_type: str, compartment_params: list[str]) -> list[str]:
    """The subset of a type's compartment parameters that make the resource about the patient."""
    extra = PARTICIPANT_ABOUT.get(resource_type, frozenset())
    return [p for p in compartment_params if p in ABOUT_PARAMS or p in extra]
