"""Content hashes: every id in the store is derived from what it identifies."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """The form under which two prompts count as exact duplicates: NFKC, case-folded, spaces collapsed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def content_hash(*parts: object) -> str:
    """A stable 128-bit hex id of the given parts (strings, numbers, or JSON-able structures)."""
    digest = hashlib.sha256()
    for part in parts:
        encoded = part if isinstance(part, str) else json.dumps(part, sort_keys=True, default=str)
        digest.update(encoded.encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")  # unit separator: ("ab", "c") and ("a", "bc") differ
    return digest.hexdigest()[:32]


def prompt_id(text: str) -> str:
    return content_hash("prompt", normalize_text(text))


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
