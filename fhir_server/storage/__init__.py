"""MongoDB storage: current versions per resource type, superseded versions in `history`."""
