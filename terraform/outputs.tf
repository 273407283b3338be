output "airflow_uri" {
  description = "URL of the Airflow web UI."
  value       = google_composer_environment.fleet.config[0].airflow_uri
}

output "bucket" {
  description = "Name of the environment bucket (created here, handed to Composer via storage_config)."
  value       = google_storage_bucket.composer.name
}

output "dag_gcs_prefix" {
  description = "gs:// prefix of the environment's DAG folder: deploy dags/fleet_meta.py, the composer package (dags/composer/), the templates (dags/fleet_templates/) and .airflowignore here."
  value       = google_composer_environment.fleet.config[0].dag_gcs_prefix
}

output "fleet_target" {
  description = "FLEET_TARGET given to the meta-DAG: where the generated fleet is published."
  value       = local.fleet_target
}

output "fleet_store" {
  description = "FLEET_STORE given to the meta-DAG; also the --store URL for `fleet` commands run against production."
  value       = local.fleet_store
}

output "fleet_templates" {
  description = "FLEET_TEMPLATES given to the meta-DAG (the templates folder as the environment sees it)."
  value       = local.fleet_templates
}

output "service_account_email" {
  description = "Email of the environment's service account."
  value       = google_service_account.composer.email
}

output "spanner_database_id" {
  description = "Full resource name of the Spanner database (projects/P/instances/I/databases/D)."
  value       = "projects/${var.project_id}/instances/${google_spanner_instance.fleet.name}/databases/${google_spanner_database.fleet.name}"
}
