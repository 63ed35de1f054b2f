"""The curation domain, installed as prefcurate.curation: one subpackage per concern.

intake/      prompts and existing preference datasets into the store (bad rows to `rejects`)
backends/    chat backends: OpenAI-compatible endpoints and local transformers models
generation/  candidate responses per prompt, and the pairs among them
judging/     the constitution, the judge prompt, reading verdicts, the judge stage, its estimate and report
annotation/  human labels in Argilla: the server, the dataset, push and pull
funnel/      the curation steps over labelled pairs, in DuckDB
export/      the curated Parquet splits, manifest and dataset card
orientation  shown order <-> pair orientation, shared by judging and annotation

It stands on prefcurate.core and never imports Prefect or anything above it.
"""
