# The Spanner DDL comes from the ONE schema file that the Python store also
# reads (composer/schema.sql). It is never copied into Terraform.
#
# This file holds nothing but these locals, on purpose: tests/test_terraform.py
# evaluates it with the real `terraform console` (no provider needed) and
# compares the result with the Python store's reading of the same file.
#
# The pipeline, in order:
#   1. drop `--` comments up to the end of the line. This MUST happen before
#      the split: the schema file's header comment itself contains ';'.
#      replace() treats a "/.../" pattern as an RE2 regular expression.
#   2. split on ';' (the schema file promises no ';' inside a statement);
#   3. trimspace each piece and drop the empty ones (the text after the last
#      ';' and the blank runs left by removed comments).
#
# Spanner applies the list atomically when the database is created. Later,
# the provider can only *append* statements in place: editing or reordering an
# existing statement plans a replacement of the database, which
# deletion_protection refuses. Treat the schema file as append-only for
# environments managed here (see README, "Terraform").
locals {
  schema_file = "${path.module}/../composer/schema.sql"

  spanner_ddl = [
    for stmt in split(";", replace(file(local.schema_file), "/--[^\\n]*/", "")) :
    trimspace(stmt) if trimspace(stmt) != ""
  ]
}
