"""Search parameters from the official R4 definitions, evaluated at write time."""
