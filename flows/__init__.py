"""Prefect flows that wire the pipeline stages: ingest (and the command line)."""
