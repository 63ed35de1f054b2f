-- Label layer: one row per judged pair with its vote counts, agreement, position consistency
-- and the majority label. A (judge, principle) "comparison" is position-consistent when it has a
-- valid verdict in both shown orders and the two verdicts name the same winner after mapping back.
CREATE OR REPLACE VIEW pair_labels AS
WITH comparisons AS (
    SELECT
        pair_id,
        judge,
        principle_id,
        count(*) FILTER (WHERE shown_order = 'ab') AS n_ab,
        count(*) FILTER (WHERE shown_order = 'ba') AS n_ba,
        count(DISTINCT winner) AS n_distinct_winners
    FROM judgment_votes
    GROUP BY ALL
),
consistency AS (
    SELECT
        pair_id,
        count(*) AS n_comparisons,
        count(*) FILTER (WHERE n_ab > 0 AND n_ba > 0 AND n_distinct_winners = 1) AS n_consistent
    FROM comparisons
    GROUP BY pair_id
),
calls AS (
    SELECT pair_id, count(*) AS n_calls, count(*) FILTER (WHERE NOT valid) AS n_invalid
    FROM judgments
    GROUP BY pair_id
),
votes AS (
    SELECT
        pair_id,
        count(*) AS n_votes,
        count(*) FILTER (WHERE winner = 'a') AS votes_a,
        count(*) FILTER (WHERE winner = 'b') AS votes_b,
        count(*) FILTER (WHERE winner = 'tie') AS votes_tie,
        avg(confidence) FILTER (WHERE winner = 'a') AS confidence_a,
        avg(confidence) FILTER (WHERE winner = 'b') AS confidence_b,
        avg(confidence) FILTER (WHERE winner = 'tie') AS confidence_tie
    FROM judgment_votes
    GROUP BY pair_id
),
labelled AS (
    SELECT
        v.*,
        CASE
            WHEN votes_a > votes_b AND votes_a > votes_tie THEN 'a'
            WHEN votes_b > votes_a AND votes_b > votes_tie THEN 'b'
            WHEN votes_tie > votes_a AND votes_tie > votes_b THEN 'tie'
            ELSE NULL  -- no strict majority
        END AS label
    FROM votes AS v
)
SELECT
    p.pair_id,
    p.prompt_id,
    p.candidate_a,
    p.candidate_b,
    c.n_calls,
    c.n_invalid,
    coalesce(l.n_votes, 0) AS n_votes,
    coalesce(l.votes_a, 0) AS votes_a,
    coalesce(l.votes_b, 0) AS votes_b,
    coalesce(l.votes_tie, 0) AS votes_tie,
    l.label,
    greatest(l.votes_a, l.votes_b, l.votes_tie) / l.n_votes AS agreement,
    CASE l.label
        WHEN 'a' THEN l.confidence_a
        WHEN 'b' THEN l.confidence_b
        WHEN 'tie' THEN l.confidence_tie
    END AS confidence,
    coalesce(k.n_comparisons, 0) AS n_comparisons,
    coalesce(k.n_consistent, 0) AS n_consistent,
    coalesce(k.n_comparisons > 0 AND k.n_consistent = k.n_comparisons, false) AS position_consistent,
    CASE l.label WHEN 'a' THEN p.candidate_a WHEN 'b' THEN p.candidate_b END AS chosen_candidate,
    CASE l.label WHEN 'a' THEN p.candidate_b WHEN 'b' THEN p.candidate_a END AS rejected_candidate
FROM pairs AS p
JOIN calls AS c USING (pair_id)
LEFT JOIN labelled AS l USING (pair_id)
LEFT JOIN consistency AS k USING (pair_id);
