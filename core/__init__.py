"""The bottom layer, installed as prefcurate.core: configuration, the DuckDB store, content
hashes, progress reporting and local model loading. It imports nothing of prefcurate's above it;
curation/ and rm/ (the domain), the application in prefcurate/ and flows/ all stand on it."""
