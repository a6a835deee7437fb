"""The domain's data and types, importing nothing else of the project: the record a face travels as
(`record`), the AU vocabulary (`vocabulary`), train/test splits (`splits`) and where the packaged data files
are (`data`)."""
