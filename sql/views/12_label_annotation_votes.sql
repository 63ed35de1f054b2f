-- annotation_votes (label layer): one row per submitted human vote, in the pair's orientation
-- (Argilla answers are mapped back from the order they were shown in). An annotator who saw the
-- same pair twice (two datasets) counts once: their latest answer. An annotator's ratings or ranking
-- of a prompt's candidates (score_votes) vote on each pair of them, as strength-less votes.
-- Reads: annotations (filled by annotate pull); score_votes (annotate pull, rating and ranking).
--   annotation_id, pair_id, annotator       the answer, the pair, who gave it
--   winner                                  a, b or tie
--   strength                                1 slight, 2 clear, 3 strong (optional)
--   rationale                               the annotator's reason (optional)
--   source_record                           the Argilla record it came from
--   response_updated_at                     when the annotator last changed it
CREATE OR REPLACE VIEW annotation_votes AS
SELECT annotation_id, pair_id, annotator, winner, strength, rationale, source_record, response_updated_at
FROM (
    SELECT annotation_id, pair_id, annotator, winner, strength, rationale, source_record, response_updated_at
    FROM annotations
    WHERE status = 'submitted' AND winner IS NOT NULL
    UNION ALL
    SELECT vote_id, pair_id, rater, winner, NULL, NULL, NULL, NULL
    FROM score_votes
    WHERE rater_kind = 'human'
)
QUALIFY row_number() OVER (
    PARTITION BY pair_id, annotator ORDER BY response_updated_at DESC NULLS LAST, annotation_id
) = 1;
