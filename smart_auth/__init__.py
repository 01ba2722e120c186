"""SMART-on-FHIR authorization server: discovery, authorize, token, introspection, revocation, CIBA.

It never imports `fhir_server`; FHIR data it needs arrives through interfaces that `fhir_server`
implements.
"""
