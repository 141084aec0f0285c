"""The dataset an ingest writes: WebDataset shards and manifests, the Parquet catalog and sources
table, and the data card."""
