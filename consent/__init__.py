"""Pure access policy: SMART scopes x patient context x FHIR Consent -> Decision.

No web framework, database driver, OAuth library or I/O here: callers load data and pass it in.
"""
