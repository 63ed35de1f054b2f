"""A pair's label as the curate config makes it: one judge label rule's columns of
labelled_pairs_by(<the config's label precedence>).

The table macro (sql/views/21_label_labelled_pairs.sql) applies the precedence (by default a
verifier's, human annotations, a label imported with the dataset, the judges') under every rule at
once; curation, annotation, suspicion checks and refresh rounds read one rule's columns through
`labelled_pairs(config)`, so the derivation lives in one place, and a data engineer queries the same
thing in the labelled_pairs view (under the latest curation run's precedence).
"""

from __future__ import annotations

from prefcurate.core.config import LABEL_RULES, LABEL_SOURCES, CurateConfig

# The view's columns that come once per rule, as `<column>_by_<rule>`.
PER_RULE_COLUMNS = ("label", "label_source", "confidence", "judge_label", "judge_confidence")
# label_source values that mean "the judges' label" (verifier, human and import are the others).
JUDGE_SOURCES = (*LABEL_RULES, "cascade")


def labelled_pairs(config: CurateConfig) -> str:
    """SQL: every row of labelled_pairs_by(config.label_precedence) with config.label_rule's columns as
    label, label_source, confidence, judge_label and judge_confidence (the per-rule columns left out)."""
    rule = config.label_rule
    if rule not in LABEL_RULES:
        raise ValueError(f"unknown label rule {rule!r}; known: {', '.join(LABEL_RULES)}")
    if sorted(config.label_precedence) != sorted(LABEL_SOURCES):
        raise ValueError(f"label_precedence: each of {', '.join(LABEL_SOURCES)} once")
    precedence = "[" + ", ".join(f"'{source}'" for source in config.label_precedence) + "]"
    per_rule = ", ".join(f"{column}_by_{name}" for name in LABEL_RULES for column in PER_RULE_COLUMNS)
    chosen = ", ".join(f"{column}_by_{rule} AS {column}" for column in PER_RULE_COLUMNS)
    return f"SELECT * EXCLUDE ({per_rule}), {chosen} FROM labelled_pairs_by({precedence})"
