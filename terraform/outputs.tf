# Per-environment outputs are maps keyed by environment name, e.g.
#   terraform output -json dag_gcs_prefix | jq -r '."fleet-east"'

output "airflow_uri" {
  description = "URL of each environment's Airflow web UI, by environment name."
  value       = { for name, env in google_composer_environment.fleet : name => env.config[0].airflow_uri }
}

output "bucket" {
  description = "Each environment's bucket (created here, handed to Composer via storage_config), by environment name."
  value       = { for name, bucket in google_storage_bucket.composer : name => bucket.name }
}

output "dag_gcs_prefix" {
  description = "gs:// prefix of each environment's DAG folder, by environment name: deploy dags/fleet_meta.py, the composer package (dags/composer/), the templates (dags/fleet_templates/) and .airflowignore to every one."
  value       = { for name, env in google_composer_environment.fleet : name => env.config[0].dag_gcs_prefix }
}

output "fleet_target" {
  description = "FLEET_TARGET given to each environment's meta-DAG, by environment name: where its share of the fleet is published."
  value       = { for name, bucket in google_storage_bucket.composer : name => "gs://${bucket.name}/dags/fleet" }
}

output "fleet_environments" {
  description = "The `environments:` block for templates/fleet.yaml (name => {target, capacity}), as JSON: it must match what Terraform created."
  value = jsonencode({
    for name, env in local.environments : name => {
      target   = "gs://${google_storage_bucket.composer[name].name}/dags/fleet"
      capacity = env.capacity
    }
  })
}

output "fleet_store" {
  description = "FLEET_STORE given to every meta-DAG (the one store they share, read-only); also the --store URL for `fleet` commands run against production."
  value       = local.fleet_store
}

output "fleet_templates" {
  description = "FLEET_TEMPLATES given to the meta-DAGs (the templates folder as an environment sees it)."
  value       = local.fleet_templates
}

output "service_account_email" {
  description = "Email of each environment's service account, by environment name."
  value       = { for name, sa in google_service_account.composer : name => sa.email }
}

output "spanner_database_id" {
  description = "Full resource name of the Spanner database (projects/P/instances/I/databases/D)."
  value       = "projects/${var.project_id}/instances/${google_spanner_instance.fleet.name}/databases/${google_spanner_database.fleet.name}"
}
