"""What a prompt row declares about checking its answers: a math reference answer, code tests, or
instruction constraints (ingest.*_column). A bad value is a reject naming the row and field; the
prompt itself is kept."""

from __future__ import annotations

import json

from prefcurate.core.config import IngestConfig
from prefcurate.core.hashing import content_hash
from prefcurate.curation.intake.sources import MAX_DEPTH, is_blank
from prefcurate.curation.verifiers.constraints import parse_constraints


def read_checks(values: dict, prompt_key: str, config: IngestConfig) -> tuple[list[dict], list[tuple[str, str]]]:
    """(prompt_checks rows, [(field, reason)] for the values that cannot be used)."""
    checks, problems = [], []
    for domain, column in (("math", config.reference_answer_column), ("code", config.tests_column),
                           ("constraints", config.constraints_column)):
        value = values.get(column)
        if value is None or (isinstance(value, str) and is_blank(value)):
            continue
        if domain == "constraints":
            try:
                parsed = parse_constraints(value)
            except ValueError as error:  # json.JSONDecodeError is one
                problems.append((column, f"constraints: {error}"))
                continue
            except RecursionError:  # a JSON string nested past what json.loads can follow
                problems.append((column, f"constraints: nested deeper than {MAX_DEPTH} levels"))
                continue
            text = json.dumps(parsed, sort_keys=True)
        elif isinstance(value, (int, float)) and domain == "math" and not isinstance(value, bool):
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            problems.append((column, f"expected a string, got {type(value).__name__}"))
            continue
        checks.append({"prompt_id": prompt_key, "domain": domain,
                       "reference_answer": text if domain == "math" else None,
                       "tests": text if domain == "code" else None,
                       "constraints": text if domain == "constraints" else None,
                       "check_hash": content_hash("check", domain, text)[:32]})
    return checks, problems
