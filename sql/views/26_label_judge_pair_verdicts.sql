-- judge_pair_verdicts (label layer): each judge's own verdict on each pair it judged, over all its
-- votes there (every principle, both shown orders): what a judge cascade reads.
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
        CASE
            WHEN margin > 0 THEN 'a'
            WHEN margin < 0 THEN 'b'
            WHEN margin = 0 THEN 'tie'
            ELSE strict_majority(votes_a, votes_b, votes_tie)
        END AS label
    FROM per_judge
)
SELECT
    judge,
    pair_id,
    n_votes,
    label,
    CASE
        WHEN margin IS NOT NULL THEN 1.0 / (1.0 + exp(-abs(margin)))
        ELSE coalesce(CASE label WHEN 'a' THEN confidence_a WHEN 'b' THEN confidence_b ELSE confidence_tie END, 1.0)
             * CASE label WHEN 'a' THEN votes_a WHEN 'b' THEN votes_b ELSE votes_tie END / n_votes
    END AS confidence
FROM labelled;
