"""FHIR R4 REST server on MongoDB: storage, validation, interactions and `create_app()`."""
