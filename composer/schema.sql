-- The fleet's source of truth: the one schema file.
-- Cloud Spanner DDL (GoogleSQL dialect). The Spanner store and Terraform apply it as is;
-- the embedded SQLite store derives its tables from it (composer/store/sqlite.py).
-- Statements are separated by ';' and hold no ';' inside them.

CREATE TABLE customers (
  customer_id        STRING(64) NOT NULL,
  name               STRING(MAX) NOT NULL,
  timezone           STRING(64) NOT NULL,
  parent_customer_id STRING(64),
  active             BOOL NOT NULL,
  main_schedule      STRING(64),
  legacy_dag_file    STRING(MAX),
  params             JSON,
) PRIMARY KEY (customer_id);

CREATE TABLE integrations (
  customer_id    STRING(64) NOT NULL,
  integration_id STRING(64) NOT NULL,
  template       STRING(64) NOT NULL,
  schedule       STRING(64),
  params         JSON,
  task_overrides JSON,
  enabled        BOOL NOT NULL,
) PRIMARY KEY (customer_id, integration_id),
  INTERLEAVE IN PARENT customers ON DELETE CASCADE;

-- Added after the first release: DDL is append-only for managed databases (Terraform can
-- only append statements), so a new column is a new ALTER TABLE, never an edit above.
-- environment: pin the customer (and its org tree) to one Composer environment of
-- fleet.yaml's `environments:`; NULL = assigned by rendezvous hashing.
ALTER TABLE customers ADD COLUMN environment STRING(64);

-- template_version: pin the integration to one version of its template (a template file
-- may carry several, composer/versions.py); NULL = the file's default or the rollout's.
ALTER TABLE integrations ADD COLUMN template_version INT64;
