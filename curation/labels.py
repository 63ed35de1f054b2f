"""A pair's label under one judge label rule, read by name from the labelled_pairs view.

The view (sql/views/21_label_labelled_pairs.sql) applies the precedence (label_precedence: by
default a verifier's, human annotations, a label imported with the dataset, the judges'), under every
rule at once; curation,
annotation and refresh rounds read one rule's columns through `labelled_pairs(rule)`, so the
derivation lives in one place and a data engineer can query the same thing.
"""

from __future__ import annotations

from prefcurate.core.config import LABEL_RULES

# The view's columns that come once per rule, as `<column>_by_<rule>`.
PER_RULE_COLUMNS = ("label", "label_source", "confidence", "judge_label", "judge_confidence")
# label_source values that mean "the judges' label" (verifier, human and import are the others).
JUDGE_SOURCES = (*LABEL_RULES, "cascade")


def labelled_pairs(rule: str) -> str:
    """SQL: every row of labelled_pairs with `rule`'s columns as label, label_source, confidence,
    judge_label and judge_confidence (the per-rule columns themselves left out)."""
    if rule not in LABEL_RULES:
        raise ValueError(f"unknown label rule {rule!r}; known: {', '.join(LABEL_RULES)}")
    per_rule = ", ".join(f"{column}_by_{name}" for name in LABEL_RULES for column in PER_RULE_COLUMNS)
    chosen = ", ".join(f"{column}_by_{rule} AS {column}" for column in PER_RULE_COLUMNS)
    return f"SELECT * EXCLUDE ({per_rule}), {chosen} FROM labelled_pairs"
