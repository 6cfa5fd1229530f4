"""Contract versions as data: the declaration, converters, per-version schemas and the live gate."""
