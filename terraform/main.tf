# dagfleet on Cloud Composer: the environments (one per entry of
# var.environments, each with its own bucket, least-privilege service account
# and meta-DAG publishing its share of the fleet), and the one Spanner store
# they all read. The Spanner DDL is assembled in schema.tf.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  environments            = { for e in var.environments : e.name => e }
  bucket_prefix           = var.bucket_prefix != "" ? var.bucket_prefix : var.project_id
  spanner_instance_config = var.spanner_instance_config != "" ? var.spanner_instance_config : "regional-${var.region}"

  # What the meta-DAG reads at run time (SPEC sections 5 and 7).
  # FLEET_STORE: the store URL format `fleet --store` accepts.
  fleet_store = "spanner://projects/${var.project_id}/instances/${google_spanner_instance.fleet.name}/databases/${google_spanner_database.fleet.name}"
  # FLEET_TARGET (per environment, below): the generated fleet lives in its
  # own folder, gs://<bucket>/dags/fleet/, so it can never collide with the
  # deployed `composer` package (dags/composer/) or with fleet_meta.py; the
  # fleet only ever prunes files it wrote there.
  # Which environment reads which environment's bucket (its manifest only:
  # a customer moving in is written once its old environment let it go).
  peer_buckets = {
    for pair in setproduct(keys(local.environments), keys(local.environments)) :
    "${pair[0]}-reads-${pair[1]}" => { reader = pair[0], bucket = pair[1] } if pair[0] != pair[1]
  }
  # FLEET_TEMPLATES: the YAML templates are deployed beside the DAGs
  # (dags/fleet_templates/, kept out of DAG parsing by .airflowignore) and
  # read through the environment's GCS FUSE mount.
  fleet_templates = "/home/airflow/gcs/dags/fleet_templates"

  # Secret Manager backend settings, shared by airflow_config_overrides and
  # by the IAM condition below so that the two can never drift apart.
  secrets_sep = "-"
  secrets_backend_kwargs = {
    connections_prefix = var.secrets_connections_prefix
    variables_prefix   = var.secrets_variables_prefix
    sep                = local.secrets_sep
    project_id         = var.project_id
  }
  # Secret resource names in IAM conditions use the project NUMBER, not its ID.
  # A secret version's name ("<secret>/versions/N") starts with its secret's
  # name, so one prefix test covers both.
  secret_name_root = "projects/${data.google_project.this.number}/secrets/"
}

# ---------------------------------------------------------------------------
# APIs
# ---------------------------------------------------------------------------

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? toset([
    "composer.googleapis.com",
    "secretmanager.googleapis.com",
    "spanner.googleapis.com",
  ]) : toset([])

  project = var.project_id
  service = each.value

  # Never switch an API off on destroy: other workloads in the project may
  # depend on it.
  disable_on_destroy = false
}

# ---------------------------------------------------------------------------
# Service account of the environment (least privilege)
# ---------------------------------------------------------------------------
# Each environment's account gets exactly five roles, each on the narrowest
# resource that works:
#   roles/composer.worker                project   (required by Composer to run
#                                                   the environment's workloads)
#   roles/spanner.databaseReader         the fleet database only (the meta-DAG
#                                                   only reads the store)
#   roles/storage.objectAdmin            the environment bucket only (publish
#                                                   and prune dags/fleet/)
#   roles/storage.objectViewer           the OTHER environments' buckets (to
#                                                   read their manifests: who owns
#                                                   a customer that moves)
#   roles/secretmanager.secretAccessor   project, with an IAM condition that
#                                                   limits it to the backend's
#                                                   two secret-name prefixes
# Never owner/editor; tests/test_terraform.py enforces the exact set.

resource "google_service_account" "composer" {
  for_each     = local.environments
  project      = var.project_id
  account_id   = "${substr(each.key, 0, 20)}-composer"
  display_name = "dagfleet Composer environment ${each.key}"
  description  = "Runs the ${each.key} Composer environment and its fleet_meta DAG (reads the Spanner store, publishes its share to its own bucket)."
}

resource "google_project_iam_member" "composer_worker" {
  for_each = local.environments
  project  = var.project_id
  role     = "roles/composer.worker"
  member   = "serviceAccount:${google_service_account.composer[each.key].email}"
}

resource "google_spanner_database_iam_member" "store_reader" {
  for_each = local.environments
  project  = var.project_id
  instance = google_spanner_instance.fleet.name
  database = google_spanner_database.fleet.name
  role     = "roles/spanner.databaseReader"
  member   = "serviceAccount:${google_service_account.composer[each.key].email}"
}

resource "google_storage_bucket_iam_member" "bucket_object_admin" {
  # roles/composer.worker already carries the object permissions Composer
  # itself needs; this grant states the fleet publisher's need explicitly and
  # keeps it on this one bucket (Composer does not add IAM to a custom bucket).
  for_each = local.environments
  bucket   = google_storage_bucket.composer[each.key].name
  role     = "roles/storage.objectAdmin"
  member   = "serviceAccount:${google_service_account.composer[each.key].email}"
}

resource "google_storage_bucket_iam_member" "peer_manifest_reader" {
  # Read-only on the other environments' buckets: a customer assigned here is
  # written only once no other environment's manifest owns it, so a moved
  # district never runs in two environments. objectViewer reads objects; it
  # cannot write or delete anything there.
  for_each = local.peer_buckets
  bucket   = google_storage_bucket.composer[each.value.bucket].name
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${google_service_account.composer[each.value.reader].email}"
}

resource "google_project_iam_member" "secret_accessor" {
  # Project level, but conditioned on the secret name: the account can read
  # Airflow connections and Variables, and no other secret in the project.
  # That costs the backend nothing: it only ever asks for "<prefix>-<id>".
  # Scoping per secret (google_secret_manager_secret_iam_member) would need a
  # Terraform change for every new connection; the prefix does not.
  for_each = local.environments
  project  = var.project_id
  role     = "roles/secretmanager.secretAccessor"
  member   = "serviceAccount:${google_service_account.composer[each.key].email}"

  condition {
    title       = "airflow-secrets-backend-prefixes"
    description = "Only secrets the Airflow Secret Manager backend reads: connections and Variables."
    expression  = "resource.name.startsWith(\"${local.secret_name_root}${var.secrets_connections_prefix}${local.secrets_sep}\") || resource.name.startsWith(\"${local.secret_name_root}${var.secrets_variables_prefix}${local.secrets_sep}\")"
  }
}

# Composer's own service agent must be able to act as the environment's
# service account (Cloud Composer v2 API Service Agent Extension). This is a
# grant *on* the account, *to* the Google-managed agent, limited to this one
# account rather than the whole project. Required for Composer 2 and harmless
# for Composer 3.
resource "google_service_account_iam_member" "composer_agent_on_env_sa" {
  for_each           = local.environments
  service_account_id = google_service_account.composer[each.key].name
  role               = "roles/composer.ServiceAgentV2Ext"
  member             = "serviceAccount:service-${data.google_project.this.number}@cloudcomposer-accounts.iam.gserviceaccount.com"

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------
# Environment bucket
# ---------------------------------------------------------------------------
# Why Terraform creates the bucket instead of letting Composer make one:
# FLEET_TARGET must name the bucket, and Composer's own bucket name is only
# known once the environment exists, while env_variables are part of that same
# environment: a dependency cycle. A bucket created here and handed over with
# storage_config breaks it: the name is known before the environment is.
# Composer's requirements for a custom bucket, all met below: same project,
# single region equal to the environment's, STANDARD class, no retention
# policy, no hierarchical namespace, not shared with another environment.

resource "google_storage_bucket" "composer" {
  for_each      = local.environments
  project       = var.project_id
  name          = "${local.bucket_prefix}-${each.key}-composer"
  location      = upper(var.region)
  storage_class = "STANDARD"
  labels        = var.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # The bucket holds the DAGs, the deployed package and task logs; keep it
  # unless deletion protection has been switched off on purpose.
  force_destroy = !var.deletion_protection
}

# ---------------------------------------------------------------------------
# Spanner store
# ---------------------------------------------------------------------------

resource "google_spanner_instance" "fleet" {
  project          = var.project_id
  name             = var.spanner_instance_name
  config           = local.spanner_instance_config
  display_name     = "dagfleet store"
  processing_units = var.spanner_processing_units
  labels           = var.labels

  depends_on = [google_project_service.apis]
}

resource "google_spanner_database" "fleet" {
  project          = var.project_id
  instance         = google_spanner_instance.fleet.name
  name             = var.spanner_database_name
  database_dialect = "GOOGLE_STANDARD_SQL"

  # From composer/schema.sql, the one schema file (see schema.tf).
  ddl = local.spanner_ddl

  # Terraform-side guard (plan/destroy refuses) and server-side guard (no
  # client can drop the database, nor the instance holding it).
  deletion_protection    = var.deletion_protection
  enable_drop_protection = var.deletion_protection
}

# ---------------------------------------------------------------------------
# Composer environment
# ---------------------------------------------------------------------------

resource "google_composer_environment" "fleet" {
  for_each = local.environments
  project  = var.project_id
  name     = each.key
  region   = var.region
  labels   = var.labels

  # Top-level block, beside `config` (not inside it). Composer 3, and
  # Composer 2 from 2.5.0.
  storage_config {
    bucket = google_storage_bucket.composer[each.key].name
  }

  config {
    # Valid for both Composer 2 and 3. No workloads_config: the size preset's
    # defaults are enough for one nightly meta-DAG plus the fleet. To size
    # workloads, add workloads_config with scheduler/web_server/worker/
    # triggerer (valid in 2 and 3); `dag_processor` exists only in Composer 3
    # and only in the google-beta provider.
    environment_size = each.value.size

    node_config {
      # The only node_config field set, because it is the only one both image
      # families accept without more networking input. Composer 2 builds a GKE
      # cluster in the project's "default" VPC: without one, add
      # network/subnetwork here. Cannot be changed after creation.
      service_account = google_service_account.composer[each.key].name
    }

    software_config {
      image_version = var.image_version
      pypi_packages = var.pypi_packages

      # Keys are "<section>-<key>" of airflow.cfg: [secrets] backend and
      # [secrets] backend_kwargs. Connections are resolved by conn_id from
      # Secret Manager; no credential ever lives in a generated DAG file.
      airflow_config_overrides = {
        "secrets-backend"        = "airflow.providers.google.cloud.secrets.secret_manager.CloudSecretManagerBackend"
        "secrets-backend_kwargs" = jsonencode(local.secrets_backend_kwargs)
      }

      # FLEET_ENVIRONMENT: this environment's name in fleet.yaml `environments:`
      # (output fleet_environments), so its meta-DAG publishes only its share.
      env_variables = {
        FLEET_STORE       = local.fleet_store
        FLEET_TARGET      = "gs://${google_storage_bucket.composer[each.key].name}/dags/fleet"
        FLEET_TEMPLATES   = local.fleet_templates
        FLEET_ENVIRONMENT = each.key
      }
    }
  }

  # Composer checks the service account's roles (and its access to the custom
  # bucket) while creating the environment, so every grant must exist first.
  depends_on = [
    google_project_service.apis,
    google_project_iam_member.composer_worker,
    google_service_account_iam_member.composer_agent_on_env_sa,
    google_storage_bucket_iam_member.bucket_object_admin,
    google_storage_bucket_iam_member.peer_manifest_reader,
    google_spanner_database_iam_member.store_reader,
    google_project_iam_member.secret_accessor,
  ]
}
