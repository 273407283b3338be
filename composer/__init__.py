"""dagfleet: generate and publish a multi-tenant Airflow DAG fleet from configuration."""
