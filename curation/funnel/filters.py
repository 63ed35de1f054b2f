"""The predicate steps: label evidence, ties, agreement and confidence, position consistency,
response lengths and refusals; and, once refresh rounds exist, their held-out pairs and weighting."""

from __future__ import annotations

from prefcurate.core.config import CurateConfig
from prefcurate.curation.funnel.step import Step
from prefcurate.curation.labels import JUDGE_SOURCES


def _judged(predicate: str) -> str:
    # Judge filters judge judge labels; human and imported labels pass them.
    sources = ", ".join(f"'{source}'" for source in JUDGE_SOURCES)
    return f"(label_source NOT IN ({sources}) OR ({predicate}))"


def filter_steps(config: CurateConfig) -> list[Step]:
    steps = [
        # Evidence is a label from any source labelled_pairs knows (verifier, human, import, judges,
        # cascade, and whatever comes next), or votes that have not settled on one.
        Step("has_label_evidence", "label IS NOT NULL OR n_votes > 0 OR n_human_votes > 0"),
        Step("has_label", "label IS NOT NULL"),
    ]
    if config.ties == "drop":
        steps.append(Step("not_tie", "label <> 'tie'"))
    if config.min_human_agreement > 0:
        steps.append(Step(f"human_agreement>={config.min_human_agreement:g}",
                          f"n_human_votes = 0 OR human_agreement >= {config.min_human_agreement!r}"))
    if config.cut_verdicts == "drop":
        steps.append(Step("no_cut_verdicts", _judged("n_cut_votes = 0")))
    if config.require_position_consistency:
        steps.append(Step("position_consistent", _judged("position_consistent")))
    steps.append(Step(f"agreement>={config.min_agreement:g}", _judged(f"agreement >= {config.min_agreement!r}")))
    if config.min_confidence > 0:
        # A judge without logprobs or a stated confidence gives none; such pairs cannot pass the bar.
        steps.append(Step(f"confidence>={config.min_confidence:g}",
                          _judged(f"coalesce(confidence, 0) >= {config.min_confidence!r}")))
    # Equal but for case, punctuation and spacing is the same answer, unless a check passed one and
    # failed the other: `a + b` and `a - b` differ only in punctuation.
    steps.append(Step("responses_differ", "NOT identical_texts OR verifier_label IS NOT NULL"))
    length = config.length
    bounds = [f"least(chars_a, chars_b) >= {length.min_chars}"]
    if length.max_chars is not None:
        bounds.append(f"greatest(chars_a, chars_b) <= {length.max_chars}")
    label = f"response_chars>={length.min_chars}" + (f",<={length.max_chars}" if length.max_chars else "")
    steps.append(Step(label, " AND ".join(bounds)))
    if length.max_ratio is not None:
        steps.append(Step(f"length_ratio<={length.max_ratio:g}",
                          f"greatest(chars_a, chars_b) <= {length.max_ratio!r} * greatest(least(chars_a, chars_b), 1)"))
    if config.drop_refusals:
        steps.append(Step("no_refusal", "NOT has_refusal"))
    return steps


def refresh_steps(config: CurateConfig) -> list[Step]:
    """With refresh rounds in the store: on-policy held-out pairs never train, and older rounds'
    pairs are kept with probability older_round_weight ** (rounds ago), seeded per pair."""
    steps = [Step("not_on_policy_heldout", "NOT refresh_heldout")]
    if config.older_round_weight < 1.0:
        keep = (f"refresh_round IS NULL OR (hash(pair_id || '{config.seed}') % 1000000) / 1e6 < "
                f"pow({config.older_round_weight!r}, (SELECT max(round_index) FROM round_pairs) - refresh_round)")
        steps.append(Step(f"older_rounds_weighted_{config.older_round_weight:g}", keep))
    return steps
