-- annotation_pair_agreement (label layer): human agreement per annotated pair.
-- Reads: annotations (filled by annotate pull); annotation_votes (with annotators' ratings and rankings).
--   pair_id                            a pair with at least one answer (any status)
--   n_votes                            submitted votes (annotation_votes)
--   votes_a, votes_b, votes_tie        submitted votes by winner
--   majority_label                     the strict majority of the votes, NULL without one
--   agreement                          the most voted winner's share of the votes
--   mean_strength                      mean stated strength
--   n_discarded, n_draft               answers discarded, or left in draft
CREATE OR REPLACE VIEW annotation_pair_agreement AS
WITH votes AS (
    SELECT pair_id,
           count(*) AS n_votes,
           count(*) FILTER (WHERE winner = 'a') AS votes_a,
           count(*) FILTER (WHERE winner = 'b') AS votes_b,
           count(*) FILTER (WHERE winner = 'tie') AS votes_tie,
           avg(strength) AS mean_strength
    FROM annotation_votes
    GROUP BY pair_id
),
other AS (
    SELECT pair_id,
           count(*) FILTER (WHERE status = 'discarded') AS n_discarded,
           count(*) FILTER (WHERE status = 'draft') AS n_draft
    FROM (SELECT pair_id, status FROM annotations
          UNION ALL  -- pairs only annotators' ratings or rankings vote on
          SELECT pair_id, 'submitted' FROM annotation_votes)
    GROUP BY pair_id
)
SELECT
    o.pair_id,
    coalesce(v.n_votes, 0) AS n_votes,
    coalesce(v.votes_a, 0) AS votes_a,
    coalesce(v.votes_b, 0) AS votes_b,
    coalesce(v.votes_tie, 0) AS votes_tie,
    strict_majority(v.votes_a, v.votes_b, v.votes_tie) AS majority_label,
    greatest(v.votes_a, v.votes_b, v.votes_tie) / v.n_votes AS agreement,
    v.mean_strength,
    o.n_discarded,
    o.n_draft
FROM other AS o
LEFT JOIN votes AS v USING (pair_id);
