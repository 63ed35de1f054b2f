"""The curation funnel: Steps over one working table of labelled pairs in DuckDB (curate.py runs
them in order), each counted in and out."""
