-- judge_pair_verdicts (label layer): each judge's own verdict on each pair it judged, over all its
-- votes there (every principle, both shown orders): what a judge cascade reads.
-- Reads views only (no table directly).
--   judge, pair_id       the judge and the pair
--   n_votes              its valid votes on the pair
--   label                a, b or tie: the sign of its mean preference logit where it gave verdict
--                        probabilities, else the strict majority of its votes (NULL without one)
--   confidence           P(label): from the mean logit under Bradley-Terry, else the mean stated
--                        confidence of the votes for the label times their share of the votes
CREATE OR REPLACE VIEW judge_pair_verdicts AS
WITH per_judge AS (
    SELECT
        judge,
        pair_id,
        count(*) AS n_votes,
        count(*) FILTER (WHERE winner = 'a') AS votes_a,
        count(*) FILTER (WHERE winner = 'b') AS votes_b,
        count(*) FILTER (WHERE winner = 'tie') AS votes_tie,
        avg(preference_logit) AS margin,
        avg(confidence) FILTER (WHERE winner = 'a') AS confidence_a,
        avg(confidence) FILTER (WHERE winner = 'b') AS confidence_b,
        avg(confidence) FILTER (WHERE winner = 'tie') AS confidence_tie
    FROM judgment_votes
    GROUP BY judge, pair_id
),
labelled AS (
    SELECT
        *,
        coalesce(margin_label(margin), strict_majority(votes_a, votes_b, votes_tie)) AS label
    FROM per_judge
)
SELECT
    judge,
    pair_id,
    n_votes,
    label,
    CASE
        WHEN margin IS NOT NULL THEN margin_confidence(margin)
        ELSE vote_share_confidence(label, votes_a, votes_b, votes_tie, confidence_a, confidence_b, confidence_tie)
    END AS confidence
FROM labelled;
