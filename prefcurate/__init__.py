"""prefcurate: preference-data curation and RLAIF pipeline."""

__version__ = "0.1.0"
