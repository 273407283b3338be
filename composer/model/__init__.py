"""Model: the snapshot's rows, the templates and fleet.yaml turned into typed, checked values."""
