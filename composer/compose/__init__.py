"""Composition: templates + params + overrides -> DAG specs, pure and without I/O."""
