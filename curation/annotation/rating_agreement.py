"""How much annotators agree on ratings and rankings: Krippendorff's alpha at the ordinal level (a 4
against a 5 is a smaller disagreement than a 1 against a 5; the distance between two values counts
the scores that fall between them), per rating aspect and over rankings' places.

An item is one candidate on one aspect (rankings: its place, 1 = best); an annotator who scored it
in two records counts once, with the mean. Only items with two or more annotators carry
information on agreement; they are what n_items counts.
"""

from __future__ import annotations

import math

import krippendorff
import numpy as np

from prefcurate.core.store import Store


def ordinal_alpha(scores: dict[str, dict[str, float]]) -> float | None:
    """Krippendorff's ordinal alpha of {item: {annotator: value}}; None when it is undefined (no item
    with two annotators, or a single value throughout: nothing to agree or disagree on)."""
    annotators = sorted({annotator for by_annotator in scores.values() for annotator in by_annotator})
    matrix = np.array([[scores[item].get(annotator, np.nan) for item in sorted(scores)] for annotator in annotators],
                      dtype=float)
    try:
        alpha = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal")
    except ValueError:  # the package refuses the undefined cases named above
        return None
    return float(alpha) if math.isfinite(alpha) else None


def human_score_agreement(store: Store) -> dict[str, dict]:
    """{"rating:<aspect>" | "ranking": {"krippendorff_alpha", "n_items", "n_annotators", "n_scores"}}
    over every annotator's score in candidate_scores."""
    rows = store.con.execute("""
        SELECT CASE mode WHEN 'rating' THEN 'rating:' || aspect ELSE 'ranking' END AS question,
               candidate_id, rater, avg(stated_score)  -- rating: the rating; ranking: the place
        FROM candidate_scores WHERE rater_kind = 'human'
        GROUP BY ALL ORDER BY ALL""").fetchall()
    by_question: dict[str, dict[str, dict[str, float]]] = {}
    for question, candidate_id, annotator, value in rows:
        by_question.setdefault(question, {}).setdefault(candidate_id, {})[annotator] = value
    return {question: {
        "krippendorff_alpha": ordinal_alpha(items),
        "n_items": sum(len(by_annotator) >= 2 for by_annotator in items.values()),
        "n_annotators": len({annotator for by_annotator in items.values() for annotator in by_annotator}),
        "n_scores": sum(len(by_annotator) for by_annotator in items.values()),
    } for question, items in by_question.items()}
