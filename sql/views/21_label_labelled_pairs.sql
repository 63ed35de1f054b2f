-- labelled_pairs_by(precedence): labelled_pairs under a given label precedence (a list of verifier,
-- human, import and judges, first to last); its columns are the view's, documented below.
CREATE OR REPLACE MACRO labelled_pairs_by(precedence) AS TABLE
WITH judge_rules AS (
    -- under a judge cascade (cascade_decisions), the judges' label is the accepting level's, and none
    -- for a pair no level accepted (it waits for humans)
    SELECT
        pair_labels.*,
        cascaded(cd.decision, cd.label, vote_label) AS judge_label_by_vote,
        cascaded(cd.decision, cd.confidence, vote_confidence) AS judge_confidence_by_vote,
        cascaded(cd.decision, cd.label, coalesce(balanced_label, vote_label)) AS judge_label_by_balanced,
        cascaded(cd.decision, cd.confidence,
                 CASE WHEN balanced_label IS NOT NULL THEN balanced_confidence ELSE vote_confidence END)
            AS judge_confidence_by_balanced,
        cascaded(cd.decision, cd.label, lm.label) AS judge_label_by_dawid_skene,
        cascaded(cd.decision, cd.confidence, lm.confidence) AS judge_confidence_by_dawid_skene,
        CASE WHEN cd.decision IS NOT NULL THEN 'cascade' ELSE 'vote' END AS _judge_source_by_vote,
        CASE WHEN cd.decision IS NOT NULL THEN 'cascade' WHEN balanced_label IS NOT NULL THEN 'balanced'
             ELSE 'vote' END AS _judge_source_by_balanced,
        CASE WHEN cd.decision IS NOT NULL THEN 'cascade' ELSE 'dawid_skene' END AS _judge_source_by_dawid_skene
    FROM pair_labels
    LEFT JOIN label_model_labels AS lm USING (pair_id)
    LEFT JOIN cascade_decisions AS cd USING (pair_id)
),
sources AS (
    -- the labels that are the same under either judge rule, with their place in the precedence
    SELECT
        *,
        [{'rank': list_position(precedence, 'verifier'), 'source': 'verifier', 'label': verifier_label,
          'confidence': 1.0::DOUBLE},
         {'rank': list_position(precedence, 'human'), 'source': 'human', 'label': human_label,
          'confidence': human_agreement::DOUBLE},
         {'rank': list_position(precedence, 'import'), 'source': 'import', 'label': reference_label,
          'confidence': NULL::DOUBLE}] AS _others
    FROM judge_rules
),
ranked AS (
    SELECT
        *,
        first_label(list_append(_others, {'rank': list_position(precedence, 'judges'), 'source': _judge_source_by_vote,
            'label': judge_label_by_vote, 'confidence': judge_confidence_by_vote::DOUBLE})) AS _by_vote,
        first_label(list_append(_others, {'rank': list_position(precedence, 'judges'), 'source': _judge_source_by_balanced,
            'label': judge_label_by_balanced, 'confidence': judge_confidence_by_balanced::DOUBLE})) AS _by_balanced,
        first_label(list_append(_others, {'rank': list_position(precedence, 'judges'), 'source': _judge_source_by_dawid_skene,
            'label': judge_label_by_dawid_skene, 'confidence': judge_confidence_by_dawid_skene::DOUBLE}))
            AS _by_dawid_skene
    FROM sources
)
SELECT
    * EXCLUDE (_judge_source_by_vote, _judge_source_by_balanced, _judge_source_by_dawid_skene, _others, _by_vote,
               _by_balanced, _by_dawid_skene),
    _by_vote.label AS label_by_vote,
    coalesce(_by_vote.source, _judge_source_by_vote) AS label_source_by_vote,
    _by_vote.confidence AS confidence_by_vote,
    _by_balanced.label AS label_by_balanced,
    coalesce(_by_balanced.source, _judge_source_by_balanced) AS label_source_by_balanced,
    _by_balanced.confidence AS confidence_by_balanced,
    _by_dawid_skene.label AS label_by_dawid_skene,
    coalesce(_by_dawid_skene.source, _judge_source_by_dawid_skene) AS label_source_by_dawid_skene,
    _by_dawid_skene.confidence AS confidence_by_dawid_skene
FROM ranked;

-- labelled_pairs (label layer): the label prefcurate uses for each pair, under each judge label rule
-- (curate.label_rule). The first source that has a label wins, in the order of the label precedence
-- (curate.label_precedence; default: verifier, human, import, judges). The label is a function of that
-- setting: prefcurate reads labelled_pairs_by(<its configured precedence>) (curation/labels.py), and this
-- view answers with the precedence of the latest curation run (recorded_label_precedence()).
-- Reads pair_labels (the judge, import, annotate and verifier stages' rows), label_model_labels
-- (curate, under label_rule dawid_skene) and cascade_decisions (judge, under judge.cascade).
--   * pair_labels                                           every column of pair_labels
--   judge_label_by_vote, judge_confidence_by_vote           the judges' label under `vote`: vote_label, vote_confidence
--   judge_label_by_balanced, judge_confidence_by_balanced   under `balanced`: balanced_label and balanced_confidence,
--                                                           else (no log-probabilities) vote_label and vote_confidence
--   judge_label_by_dawid_skene, judge_confidence_by_dawid_skene   under `dawid_skene`: the label model's label and
--                                                           posterior (label_model_labels; every judge and annotator
--                                                           weighted by its estimated reliability)
--   label_by_vote, label_by_balanced, label_by_dawid_skene  the label: the first of verifier_label, human_label,
--                                                           reference_label and the judges' in label_precedence order
--   label_source_by_vote, label_source_by_balanced,
--   label_source_by_dawid_skene                             where it came from: verifier, human, import, balanced,
--                                                           vote, dawid_skene, or cascade (a judge cascade's
--                                                           accepted label); the rule's name (or cascade) too
--                                                           for a pair nobody has labelled yet
--   confidence_by_vote, confidence_by_balanced,
--   confidence_by_dawid_skene                               1.0 for a verifier's, human_agreement for human labels,
--                                                           NULL for imported ones, the judges' confidence for theirs
CREATE OR REPLACE VIEW labelled_pairs AS
SELECT * FROM labelled_pairs_by(recorded_label_precedence());
