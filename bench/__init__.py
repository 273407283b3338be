"""Benchmarks for dagfleet: `uv run --group bench python -m bench.run` (see bench/README.md)."""
