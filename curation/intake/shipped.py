"""Data shipped inside the package (prefcurate/data/), for the embedded defaults, benchmarks and tests."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def embedded_prompts_path() -> Path:
    """The 32 prompts `make run` ingests by default."""
    return Path(str(resources.files("prefcurate").joinpath("data/prompts.jsonl")))


def hh_harmless_pairs_path() -> Path:
    """1,465 human preference pairs from Anthropic's HH-RLHF harmless-base test split (MIT; see the
    README and LICENSE beside the file), as HH transcripts that `import-pairs` reads as they are."""
    return Path(str(resources.files("prefcurate").joinpath("data/hh-rlhf-harmless/pairs.jsonl.gz")))


def read_text_lines(path: Path) -> list[str]:
    """A text file's lines (split at newlines only: JSON strings may hold U+2028), gunzipped when it
    ends in .gz. Bytes that are not UTF-8 stay as surrogate escapes, for the reader to reject with
    their line; a .gz that breaks off raises IngestError naming the file and where (a sample drawn
    from part of a file would not say so)."""
    from prefcurate.curation.intake.sources import whole_file

    text = whole_file(path).decode("utf-8-sig", "surrogateescape")
    return [line.rstrip("\r") for line in text.split("\n")]
