"""FHIR RESTful interactions, one module per family: https://hl7.org/fhir/R4/http.html."""
