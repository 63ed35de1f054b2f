"""Instruction constraints a prompt declares (its `constraints` column, a JSON object), checked on a
response in plain Python: no model, no sandbox needed (nothing of the response is run).

    {"min_words": 50, "max_words": 120, "max_chars": 800,
     "must_include": ["Paris"], "must_not_include": ["As an AI"],
     "format": "json" | "bullets" | "numbered", "starts_with": "Dear", "ends_with": "?", "lowercase": true}
"""

from __future__ import annotations

import json
import re

KEYS = {"min_words": int, "max_words": int, "max_chars": int, "must_include": list, "must_not_include": list,
        "format": str, "starts_with": str, "ends_with": str, "lowercase": bool}
FORMATS = ("json", "bullets", "numbered")


def parse_constraints(value) -> dict:
    """The constraints as a dict, or ValueError naming what is wrong (for the ingest reject)."""
    data = json.loads(value) if isinstance(value, str) else value
    if not isinstance(data, dict) or not data:
        raise ValueError("expected a non-empty JSON object")
    for key, item in data.items():
        if key not in KEYS:
            raise ValueError(f"unknown constraint {key!r}; known: {', '.join(KEYS)}")
        if not isinstance(item, KEYS[key]) or (KEYS[key] is int and isinstance(item, bool)):
            raise ValueError(f"{key}: expected {KEYS[key].__name__}, got {type(item).__name__}")
        if KEYS[key] is list and not all(isinstance(word, str) for word in item):
            raise ValueError(f"{key}: expected a list of strings")
    if data.get("format") not in (None, *FORMATS):
        raise ValueError(f"format: one of {', '.join(FORMATS)}")
    return data


def violations(response: str, constraints: dict) -> list[str]:
    """What the response breaks; empty when it keeps every constraint."""
    found = []
    words = len(response.split())
    if "min_words" in constraints and words < constraints["min_words"]:
        found.append(f"{words} words, at least {constraints['min_words']} asked")
    if "max_words" in constraints and words > constraints["max_words"]:
        found.append(f"{words} words, at most {constraints['max_words']} asked")
    if "max_chars" in constraints and len(response) > constraints["max_chars"]:
        found.append(f"{len(response)} characters, at most {constraints['max_chars']} asked")
    lowered = response.lower()
    found += [f"does not include {word!r}" for word in constraints.get("must_include", []) if word.lower() not in lowered]
    found += [f"includes {word!r}" for word in constraints.get("must_not_include", []) if word.lower() in lowered]
    if "starts_with" in constraints and not response.lstrip().startswith(constraints["starts_with"]):
        found.append(f"does not start with {constraints['starts_with']!r}")
    if "ends_with" in constraints and not response.rstrip().endswith(constraints["ends_with"]):
        found.append(f"does not end with {constraints['ends_with']!r}")
    if constraints.get("lowercase") and response != response.lower():
        found.append("is not all lowercase")
    shape = constraints.get("format")
    if shape == "json":
        try:
            json.loads(_strip_fence(response))
        except ValueError as error:
            found.append(f"is not valid JSON ({error.msg} at character {error.pos})")
    elif shape in ("bullets", "numbered"):
        lines = [line.strip() for line in response.strip().splitlines() if line.strip()]
        pattern = r"^[-*\u2022]\s" if shape == "bullets" else r"^\d+[.)]\s"
        if not lines or not all(re.match(pattern, line) for line in lines):
            found.append(f"is not a {'bulleted' if shape == 'bullets' else 'numbered'} list on every line")
    return found


def _strip_fence(text: str) -> str:
    match = re.fullmatch(r"\s*```(?:json)?\s*\n(.*?)\n?```\s*", text, re.DOTALL)
    return match.group(1) if match else text
