"""The curated set as files: Parquet splits and manifest (parquet.py), and the dataset card (card.py)."""
