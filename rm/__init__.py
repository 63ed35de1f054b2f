"""Reward models, installed as prefcurate.rm: data loading, Bradley-Terry training, evaluation and
scoring. It stands on prefcurate.core, beside curation/ (neither imports the other); no Prefect."""
