-- pair_labels (label layer): per pair, every label source's evidence. Pairs with no judge call yet are
-- listed too (n_calls = 0), so curation starts from all pairs.
-- Reads: pairs (filled by pairs; import-pairs; refresh rounds); reference_labels (filled by import-
--    pairs); score_votes (judge, import-ratings).
--   pair_id, prompt_id, candidate_a, candidate_b   the pair, in its orientation
--   n_calls, n_invalid                             judge calls, and those with no valid verdict
--   n_votes, votes_a, votes_b, votes_tie           valid verdicts, by winner
--   n_cut_votes                                    of them, read from answers cut at the token limit (cut_answer)
--   vote_label                                     the strict majority of verdicts (NULL without one)
--   agreement                                      the most common verdict's share of the votes
--   vote_confidence                                mean confidence of the votes for vote_label (1.0 where they
--                                                  state none) times their share of the votes: dissent lowers it
--   balanced_margin                                mean preference logit over the calls that have one; every
--                                                  comparison is asked in both orders, so a judge's constant
--                                                  preference for a position cancels (balanced position calibration)
--   balanced_label                                 the sign of balanced_margin: a, b, or tie at exactly 0
--   balanced_confidence                            P(label) under Bradley-Terry with the margin as the logit
--   n_comparisons, n_consistent                    (judge, principle) comparisons, and those position-consistent:
--                                                  a valid verdict in both shown orders naming the same winner
--                                                  (a rating judge's, which sees each response alone, counts
--                                                  as consistent; a ranking judge's two orders are checked)
--   position_consistent                            every comparison is position-consistent (false without any)
--   reference_label                                the label an imported dataset came with (a pair's, or the
--                                                  preference an imported rating gives); NULL when none, or
--                                                  when two imports disagree
--   n_reference_labels                             imported labels for the pair
--   n_human_votes, human_label, human_agreement    submitted human votes, their strict majority and its share
--                                                  (annotation_pair_agreement)
--   verifier_label, verifier_domains               a or b when checks (verifier_verdicts) pass exactly one
--                                                  response and agree; the domains that decided
CREATE OR REPLACE VIEW pair_labels AS
WITH comparisons AS (
    SELECT
        pair_id,
        judge,
        principle_id,
        count(*) FILTER (WHERE shown_order = 'ab') AS n_ab,
        count(*) FILTER (WHERE shown_order = 'ba') AS n_ba,
        count(*) FILTER (WHERE shown_order IS NULL) AS n_alone,
        count(DISTINCT winner) AS n_distinct_winners
    FROM judgment_votes
    GROUP BY ALL
),
consistency AS (
    SELECT
        pair_id,
        count(*) AS n_comparisons,
        -- a rating judge scores each response alone: there is no position to be swayed by
        count(*) FILTER (WHERE (n_ab > 0 AND n_ba > 0 OR n_alone > 0) AND n_distinct_winners = 1) AS n_consistent
    FROM comparisons
    GROUP BY pair_id
),
calls AS (
    SELECT pair_id, count(*) AS n_calls, count(*) FILTER (WHERE NOT valid) AS n_invalid
    FROM judge_calls
    GROUP BY pair_id
),
votes AS (
    SELECT
        pair_id,
        count(*) AS n_votes,
        count(*) FILTER (WHERE winner = 'a') AS votes_a,
        count(*) FILTER (WHERE winner = 'b') AS votes_b,
        count(*) FILTER (WHERE winner = 'tie') AS votes_tie,
        count(*) FILTER (WHERE cut_answer) AS n_cut_votes,
        avg(confidence) FILTER (WHERE winner = 'a') AS confidence_a,
        avg(confidence) FILTER (WHERE winner = 'b') AS confidence_b,
        avg(confidence) FILTER (WHERE winner = 'tie') AS confidence_tie,
        avg(preference_logit) AS balanced_margin
    FROM judgment_votes
    GROUP BY pair_id
),
reference AS (
    SELECT pair_id,
           count(*) AS n_reference_labels,
           CASE WHEN count(DISTINCT winner) = 1 THEN any_value(winner) END AS reference_label
    FROM (
        SELECT pair_id, winner FROM reference_labels
        UNION ALL  -- an imported rated dataset's scores (import-ratings): the preference they give
        SELECT pair_id, winner FROM score_votes WHERE rater_kind = 'import'
    )
    GROUP BY pair_id
),
labelled AS (
    SELECT
        v.*,
        strict_majority(votes_a, votes_b, votes_tie) AS vote_label,
        margin_label(balanced_margin) AS balanced_label
    FROM votes AS v
)
SELECT
    p.pair_id,
    p.prompt_id,
    p.candidate_a,
    p.candidate_b,
    coalesce(c.n_calls, 0) AS n_calls,
    coalesce(c.n_invalid, 0) AS n_invalid,
    coalesce(l.n_votes, 0) AS n_votes,
    coalesce(l.votes_a, 0) AS votes_a,
    coalesce(l.votes_b, 0) AS votes_b,
    coalesce(l.votes_tie, 0) AS votes_tie,
    coalesce(l.n_cut_votes, 0) AS n_cut_votes,
    l.vote_label,
    greatest(l.votes_a, l.votes_b, l.votes_tie) / l.n_votes AS agreement,
    vote_share_confidence(l.vote_label, l.votes_a, l.votes_b, l.votes_tie, l.confidence_a, l.confidence_b,
                          l.confidence_tie) AS vote_confidence,
    l.balanced_margin,
    l.balanced_label,
    margin_confidence(l.balanced_margin) AS balanced_confidence,
    coalesce(k.n_comparisons, 0) AS n_comparisons,
    coalesce(k.n_consistent, 0) AS n_consistent,
    coalesce(k.n_comparisons > 0 AND k.n_consistent = k.n_comparisons, false) AS position_consistent,
    r.reference_label,
    coalesce(r.n_reference_labels, 0) AS n_reference_labels,
    coalesce(h.n_votes, 0) AS n_human_votes,
    h.majority_label AS human_label,
    h.agreement AS human_agreement,
    vv.verifier_label,
    vv.verifier_domains
FROM pairs AS p
LEFT JOIN calls AS c USING (pair_id)
LEFT JOIN reference AS r USING (pair_id)
LEFT JOIN annotation_pair_agreement AS h USING (pair_id)
LEFT JOIN labelled AS l USING (pair_id)
LEFT JOIN consistency AS k USING (pair_id)
LEFT JOIN verifier_verdicts AS vv USING (pair_id);
