"""Verification: Airflow's own DagBag imports what a sync would write; `fleet lint`."""
