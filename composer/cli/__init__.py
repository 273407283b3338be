"""`fleet`, the command line: thin wrappers around the pipeline."""
