"""Output side of a build: schemas, rows, Parquet, rejects, manifest."""
