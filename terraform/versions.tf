terraform {
  # 1.5+: import blocks, and the validation/function set used below.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.x is the first major line where everything used here is GA in the
      # plain `google` provider (Composer 3 images, `storage_config`, Spanner
      # `enable_drop_protection`); no google-beta needed.
      version = ">= 6.0, < 8.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
