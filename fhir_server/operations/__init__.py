"""FHIR operations, one module each: https://hl7.org/fhir/R4/operations.html."""
