# ---------------------------------------------------------------------------
# Project and location
# ---------------------------------------------------------------------------

variable "project_id" {
  description = "ID of the Google Cloud project that holds the environment, its bucket, the Spanner store and the Secret Manager secrets."
  type        = string
}

variable "region" {
  description = "Region of the Composer environment and of its bucket (Composer requires a single-region bucket in the environment's region)."
  type        = string
  default     = "us-central1"
}

variable "labels" {
  description = "Labels applied to the environment, the bucket and the Spanner instance."
  type        = map(string)
  default = {
    app = "dagfleet"
  }
}

variable "enable_apis" {
  description = "Enable the Composer, Spanner and Secret Manager APIs in the project. Set to false when the project's services are managed elsewhere."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Protect stateful resources from `terraform destroy`: the Spanner database (Terraform-side and server-side drop protection) and the environment bucket (not force-destroyed while it holds objects). Set to false, apply, then destroy, to tear a test stack down."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------
# Composer environment
# ---------------------------------------------------------------------------

variable "environment_name" {
  description = "Name of the Cloud Composer environment (lowercase letters, digits and hyphens; starts with a letter)."
  type        = string
  default     = "dagfleet"

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{0,62}$", var.environment_name)) && !endswith(var.environment_name, "-")
    error_message = "environment_name must start with a lowercase letter, hold only lowercase letters, digits and hyphens, not end with a hyphen, and be at most 63 characters."
  }
}

variable "image_version" {
  description = <<-EOT
    Composer image. The default "composer-3-airflow-3" is the alias the provider
    documents for Composer 3 (composer-3-airflow-<airflow version>[-build.N]): it
    resolves to the newest Composer 3 build of Airflow 3 at creation time. Pin a
    full build (for example "composer-3-airflow-3.1.7-build.13") for reproducible
    environments. For Composer 2 use "composer-2-airflow-2" or a full
    composer-2.x.y-airflow-2.a.b version (2.5.0 or later: the custom bucket needs
    it), and set the fleet's Airflow target to 2 in templates/fleet.yaml.
  EOT
  type        = string
  default     = "composer-3-airflow-3"

  validation {
    # Composer 1 has neither custom buckets nor environment sizes.
    condition     = can(regex("^composer-[23]([.][0-9]+[.][0-9]+)?-airflow-[0-9]", var.image_version))
    error_message = "image_version must be a Composer 2 or Composer 3 image, e.g. \"composer-3-airflow-3\" or \"composer-2-airflow-2\"."
  }
}

variable "environment_size" {
  description = "Composer environment size preset (Composer 2 and 3). It sizes the Airflow database and the default workloads; no workloads_config is set here, so the preset's defaults apply."
  type        = string
  default     = "ENVIRONMENT_SIZE_SMALL"

  validation {
    condition     = contains(["ENVIRONMENT_SIZE_SMALL", "ENVIRONMENT_SIZE_MEDIUM", "ENVIRONMENT_SIZE_LARGE"], var.environment_size)
    error_message = "environment_size must be ENVIRONMENT_SIZE_SMALL, ENVIRONMENT_SIZE_MEDIUM or ENVIRONMENT_SIZE_LARGE."
  }
}

variable "bucket_name" {
  description = "Name of the environment bucket created here and handed to Composer through storage_config. Empty: \"<project_id>-<environment_name>-composer\". Bucket names are global, so override it when that name is taken."
  type        = string
  default     = ""
}

variable "pypi_packages" {
  description = "Extra PyPI packages installed into the environment, for the `composer` package deployed under dags/composer/ (name => version specifier, \"\" for any). Everything else dagfleet imports at run time (google-cloud-spanner, google-cloud-storage, PyYAML, pendulum, croniter) ships with Composer images."
  type        = map(string)
  default = {
    "json-merge-patch" = ">=0.3.0"
  }
}

# ---------------------------------------------------------------------------
# Secret Manager backend
# ---------------------------------------------------------------------------

variable "secrets_connections_prefix" {
  description = "Secret-name prefix under which Airflow looks up connections: conn_id X is the secret \"<prefix>-X\". The environment's service account can read only secrets under this prefix and secrets_variables_prefix."
  type        = string
  default     = "airflow-connections"
}

variable "secrets_variables_prefix" {
  description = "Secret-name prefix under which Airflow looks up Variables: variable X is the secret \"<prefix>-X\"."
  type        = string
  default     = "airflow-variables"
}

# ---------------------------------------------------------------------------
# Spanner store
# ---------------------------------------------------------------------------

variable "spanner_instance_name" {
  description = "ID of the Cloud Spanner instance that holds the fleet store."
  type        = string
  default     = "dagfleet"
}

variable "spanner_instance_config" {
  description = "Spanner instance configuration, e.g. \"regional-us-central1\" or \"nam3\". Empty: \"regional-<region>\", next to the environment."
  type        = string
  default     = ""
}

variable "spanner_processing_units" {
  description = "Compute capacity of the Spanner instance in processing units: 100 to 900 in steps of 100, or a multiple of 1000 (1000 = 1 node). The store is tiny and read once a night, so the 100 PU minimum is plenty."
  type        = number
  default     = 100

  validation {
    condition     = (var.spanner_processing_units >= 100 && var.spanner_processing_units < 1000 && var.spanner_processing_units % 100 == 0) || (var.spanner_processing_units >= 1000 && var.spanner_processing_units % 1000 == 0)
    error_message = "spanner_processing_units must be 100-900 in steps of 100, or a multiple of 1000."
  }
}

variable "spanner_database_name" {
  description = "ID of the Spanner database that holds the fleet tables (customers, integrations)."
  type        = string
  default     = "fleet"
}
