"""SQL expressions that turn text into lists of hashed n-grams, for DuckDB to compute in bulk.

Texts are normalized first (lower case, every run of non-alphanumerics one space). A text with
fewer than n units is one n-gram of itself, so short texts still compare.
"""

from __future__ import annotations


def normalized_sql(text_expr: str) -> str:
    # The store's normalized_text macro (sql/views/05_macros.sql): the view pair_flags reads it too.
    return f"normalized_text({text_expr})"


def word_ngram_hashes_sql(text_expr: str, n: int) -> str:
    words = f"string_split({normalized_sql(text_expr)}, ' ')"
    return (f"list_transform([{words}], lambda w: CASE WHEN len(w) <= {n} THEN [hash(array_to_string(w, ' '))] "
            f"ELSE list_transform(range(1, len(w) - {n} + 2), lambda i: hash(array_to_string(w[i:i + {n} - 1], ' '))) END)[1]")


def char_ngram_hashes_sql(text_expr: str, n: int) -> str:
    text = normalized_sql(text_expr)
    return (f"list_transform([{text}], lambda t: CASE WHEN length(t) <= {n} THEN [hash(t)] "
            f"ELSE list_transform(range(1, length(t) - {n} + 2), lambda i: hash(substr(t, i, {n}))) END)[1]")
