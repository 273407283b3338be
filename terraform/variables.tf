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

variable "environments" {
  description = <<-EOT
    The Composer environments the fleet is spread over, one object each: name
    (lowercase letters, digits and hyphens), capacity (DAGs; what fleet.yaml's
    `environments:` says, Composer 3's XL preset holds about 3,000) and size
    (the environment size preset). Every environment gets its own bucket,
    service account and meta-DAG (FLEET_ENVIRONMENT = its name); all read the
    one Spanner store. Output fleet_environments is the matching fleet.yaml block.
  EOT
  type = list(object({
    name     = string
    capacity = optional(number, 3000)
    size     = optional(string, "ENVIRONMENT_SIZE_LARGE")
  }))
  default = [{ name = "dagfleet" }]

  validation {
    condition     = length(var.environments) > 0 && alltrue([for e in var.environments : can(regex("^[a-z][-a-z0-9]{0,62}$", e.name)) && !endswith(e.name, "-")])
    error_message = "environments must hold at least one environment; each name must start with a lowercase letter, hold only lowercase letters, digits and hyphens, not end with a hyphen, and be at most 63 characters."
  }

  validation {
    condition     = length(distinct([for e in var.environments : e.name])) == length(var.environments)
    error_message = "environment names must be unique."
  }

  validation {
    condition     = alltrue([for e in var.environments : contains(["ENVIRONMENT_SIZE_SMALL", "ENVIRONMENT_SIZE_MEDIUM", "ENVIRONMENT_SIZE_LARGE"], e.size) && e.capacity > 0])
    error_message = "each environment's size must be ENVIRONMENT_SIZE_SMALL, ENVIRONMENT_SIZE_MEDIUM or ENVIRONMENT_SIZE_LARGE, and its capacity a positive number of DAGs."
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

variable "bucket_prefix" {
  description = "Prefix of the environment buckets created here and handed to Composer through storage_config: \"<prefix>-<environment name>\". Empty: \"<project_id>\", so buckets are \"<project_id>-<environment name>-composer\". Bucket names are global, so set it when those names are taken."
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
