"""Publish: apply a plan to a target in a crash-safe order; deploy the meta-DAG."""
