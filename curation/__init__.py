"""The curation domain: store, ingest, generation, pairing, judging, curation and export.

Nothing here imports Prefect; flows/ wraps these functions.
"""
