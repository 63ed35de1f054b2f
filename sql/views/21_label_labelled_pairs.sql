-- labelled_pairs (label layer): the label prefcurate uses for each pair, under each judge label rule
-- (curate.label_rule). Precedence: human annotations, then a label imported with the dataset, then
-- the judges'. prefcurate reads one rule's columns as label, label_source, confidence, judge_label
-- and judge_confidence (curation/labels.py).
--   * pair_labels                                           every column of pair_labels
--   judge_label_by_vote, judge_confidence_by_vote           the judges' label under `vote`: vote_label, vote_confidence
--   judge_label_by_balanced, judge_confidence_by_balanced   under `balanced`: balanced_label and balanced_confidence,
--                                                           else (no log-probabilities) vote_label and vote_confidence
--   label_by_vote, label_by_balanced                        the label: human_label, else reference_label, else the judges'
--   label_source_by_vote, label_source_by_balanced          where it came from: human, import, balanced or vote
--                                                           (vote too for a pair nobody has labelled yet)
--   confidence_by_vote, confidence_by_balanced              human_agreement for human labels, NULL for imported ones,
--                                                           the judges' confidence for theirs
CREATE OR REPLACE VIEW labelled_pairs AS
WITH judge_rules AS (
    SELECT
        *,
        vote_label AS judge_label_by_vote,
        vote_confidence AS judge_confidence_by_vote,
        coalesce(balanced_label, vote_label) AS judge_label_by_balanced,
        CASE WHEN balanced_label IS NOT NULL THEN balanced_confidence ELSE vote_confidence END
            AS judge_confidence_by_balanced,
        CASE WHEN balanced_label IS NOT NULL THEN 'balanced' ELSE 'vote' END AS _judge_rule_by_balanced
    FROM pair_labels
)
SELECT
    * EXCLUDE (_judge_rule_by_balanced),
    coalesce(human_label, reference_label, judge_label_by_vote) AS label_by_vote,
    CASE WHEN human_label IS NOT NULL THEN 'human'
         WHEN reference_label IS NOT NULL THEN 'import'
         ELSE 'vote' END AS label_source_by_vote,
    CASE WHEN human_label IS NOT NULL THEN human_agreement
         WHEN reference_label IS NOT NULL THEN NULL
         ELSE judge_confidence_by_vote END AS confidence_by_vote,
    coalesce(human_label, reference_label, judge_label_by_balanced) AS label_by_balanced,
    CASE WHEN human_label IS NOT NULL THEN 'human'
         WHEN reference_label IS NOT NULL THEN 'import'
         ELSE _judge_rule_by_balanced END AS label_source_by_balanced,
    CASE WHEN human_label IS NOT NULL THEN human_agreement
         WHEN reference_label IS NOT NULL THEN NULL
         ELSE judge_confidence_by_balanced END AS confidence_by_balanced
FROM judge_rules;
