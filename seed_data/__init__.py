"""Demo scenario and the bundle loader; nothing imports this package."""
