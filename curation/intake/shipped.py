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
    """A text file's lines, gunzipped when it ends in .gz."""
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()
